"""Common-corruptions suite: Hendrycks & Dietterich's 15 corruptions x severities 1-5, each a cell, and
the mean corruption accuracy per model; with ``--baseline-uri`` the corruption error relative to the
baseline (the paper's mCE with the baseline in AlexNet's place) and its relative mCE.

The corruptions are ``pytest_robustness.transforms.corruptions`` (CIFAR-10-C's constants, the scale of MNIST's
28 x 28; four are approximations, see its docstring). Each cell corrupts the first CORRUPTION_IMAGES
test images (an explicit ``--samples`` wins), and the mean cell reuses the corrupted sets. Severity 3
cells and the mean run by default; the other severities are marked ``slow``.

Floors are measured on the built-in MNIST (seed 0, default training) and set below them with a margin.
"""

import pytest

from pytest_robustness.transforms.corruptions import CORRUPTIONS
from pytest_robustness.transforms.transform import Corruption

CORRUPTION_IMAGES = 200
DEFAULT_SEVERITY = 3

# Mean corruption accuracy (all 75 sets, seed 0, default training, 200 images): le_net 0.951 (clean 0.97),
# shallow_net 0.792 (clean 0.84). CIFAR-10-C's severities are mild for a CNN on digits.
MEAN_FLOORS = {"le_net": 0.9, "shallow_net": 0.72}
# Per cell, the lowest of the 75: le_net 0.775 (glass blur 5), shallow_net 0.425 (fog 5).
CELL_FLOORS = {"le_net": 0.65, "shallow_net": 0.3}
DEFAULT_CELL_FLOOR = 0.15  # other architectures and users' models: better than chance

CASES = [pytest.param(name, severity, id=f"{name}-s{severity}",
                      marks=() if severity == DEFAULT_SEVERITY else pytest.mark.slow)
         for name in CORRUPTIONS for severity in range(1, 6)]


@pytest.mark.corruption
@pytest.mark.parametrize("name,severity", CASES)
def test_corruption(robustness, architecture, name, severity):
    robustness.invariant(Corruption(name, severity, robustness.seed), CELL_FLOORS.get(architecture, DEFAULT_CELL_FLOOR),
                         max_samples=CORRUPTION_IMAGES)


@pytest.mark.corruption
def test_mean_corruption_accuracy(robustness, architecture):
    values = robustness.corruption_errors(max_samples=CORRUPTION_IMAGES)
    robustness.check(values, mean_corruption_accuracy=MEAN_FLOORS.get(architecture, 0.2))
