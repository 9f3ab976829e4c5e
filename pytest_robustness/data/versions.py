"""The library versions a cached entry depends on, read from package metadata (no import of TensorFlow).

Cache keys carry them, so an upgrade of ART, TensorFlow, Keras or numpy turns
every cached example, prediction and score into a miss instead of serving what
the old versions computed; a warm run still never imports TensorFlow.
"""

from __future__ import annotations

import functools
import importlib.metadata

# Each library under the distribution names it ships as (TensorFlow has several builds).
DISTRIBUTIONS = {
    "art": ("adversarial-robustness-toolbox",),
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-macos", "tensorflow-intel",
                   "tf-nightly", "tf-nightly-cpu"),
    "keras": ("keras",),
    "numpy": ("numpy",),
}


def distribution_version(*names: str) -> str:
    """The installed version of the first of ``names`` that is installed, else ``"absent"``."""
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "absent"


@functools.cache
def library_versions() -> dict[str, str]:
    """``{"art": ..., "tensorflow": ..., "keras": ..., "numpy": ...}`` of this environment."""
    return {library: distribution_version(*names) for library, names in DISTRIBUTIONS.items()}
