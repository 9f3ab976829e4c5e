"""pytest-robustness: adversarial-robustness evaluation of image classifiers as pytest tests."""

import importlib.metadata

from . import old_paths
from .cells.grid import attack_cases, attack_grid, defense_cases

old_paths.install()

__version__ = importlib.metadata.version("pytest-robustness")

__all__ = ["__version__", "attack_cases", "attack_grid", "defense_cases"]
