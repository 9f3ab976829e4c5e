"""pytest-robustness: adversarial-robustness evaluation of image classifiers as pytest tests."""

from .grid import attack_cases, attack_grid, defense_cases

__version__ = "0.1.0"

__all__ = ["__version__", "attack_cases", "attack_grid", "defense_cases"]
