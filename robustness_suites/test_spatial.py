"""Spatial suite: rotations and translations, on ART's grid and searched by Hypothesis.

On one grid (ART's ``SpatialTransformation`` grid: translations of up to 10 % of the side in
3 steps per axis, rotations of up to 30 degrees in 7 steps, 63 points) the *universal* worst
transform (one for the whole set, chosen as ART chooses it: the most predictions changed) and
the *per-image* worst case (Engstrom et al. 2019's worst-of-k: an image counts only if every
grid point keeps it correct; never above the universal). Then the same kind of change
searched, not gridded: Hypothesis draws rotations and shifts, and a failure shrinks to the
mildest one that breaks the floor; its counterexamples are kept on the registered model and
replayed first against the next version.

Floors are measured on the built-in MNIST (seed 0, default training, the first SPATIAL_IMAGES test
images) and set below them with a margin: see SPATIAL_FLOORS and PROPERTY_FLOORS.
"""

import pytest
from hypothesis import given, settings

from pytest_robustness import strategies

SPATIAL_IMAGES = 200  # the first test images (an explicit --samples wins): 63 grid points each
GRID = dict(max_translation=10.0, num_translations=3, max_rotation=30.0, num_rotations=7)

# Measured (seed 0, default training, the first 200 test images): clean / universal / per-image accuracy
# le_net 0.97 / 0.105 (shift (3, 3), rotation -20 deg) / 0.0, shallow_net 0.84 / 0.055 / 0.0. Every image
# has a grid point that breaks it (Engstrom et al. report the same of standard MNIST CNNs), so the per-image
# floor is 0: reported, not gated.
SPATIAL_FLOORS = {
    "le_net": dict(clean_accuracy=0.9, universal_accuracy=0.05, per_image_accuracy=0.0),
    "shallow_net": dict(clean_accuracy=0.75, universal_accuracy=0.02, per_image_accuracy=0.0),
}
DEFAULT_FLOORS = dict(clean_accuracy=0.2)
# Accuracy under any rotation of up to 15 degrees with a shift of up to 2 pixels. The true minimum over
# that range (a dense grid: 2.5 degrees x every shift) is le_net 0.425 (rotation -15, shift (2, 2)),
# shallow_net 0.19; the search (20 examples, seed 0) finds le_net 0.475, shallow_net 0.225.
PROPERTY_FLOORS = {"le_net": 0.35, "shallow_net": 0.15}
DEFAULT_PROPERTY_FLOOR = 0.1


@pytest.mark.spatial
def test_spatial_grid(robustness, architecture):
    values = robustness.spatial_grid(**GRID, max_samples=SPATIAL_IMAGES)
    robustness.check(values, **SPATIAL_FLOORS.get(architecture, DEFAULT_FLOORS))


@pytest.mark.spatial
@settings(max_examples=20)
@given(t=strategies.rotation(15) & strategies.shift(2))
def test_rotation_shift_property(robustness, architecture, t):
    robustness.invariant(t, PROPERTY_FLOORS.get(architecture, DEFAULT_PROPERTY_FLOOR), max_samples=SPATIAL_IMAGES)
