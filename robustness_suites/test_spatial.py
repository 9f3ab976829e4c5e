"""Spatial suite: rotations and translations, on ART's grid and searched by Hypothesis.

On one grid (ART's ``SpatialTransformation`` grid: translations of up to 10 % of the side in
3 steps per axis, rotations of up to 30 degrees in 7 steps, 63 points) the *universal* worst
transform (one for the whole set, chosen as ART chooses it: the most predictions changed) and
the *per-image* worst case (Engstrom et al. 2019's worst-of-k: an image counts only if every
grid point keeps it correct; never above the universal). Then the same kind of change
searched, not gridded: Hypothesis draws rotations and shifts, and a failure shrinks to the
mildest one that breaks the floor; its counterexamples are kept on the registered model and
replayed first against the next version.

Floors are measured on the built-in MNIST (seed 0, default training, 1,000 test images) and
set below them with a margin: see SPATIAL_FLOORS and PROPERTY_FLOORS.
"""

import pytest
from hypothesis import given, settings

from pytest_robustness import strategies

SPATIAL_IMAGES = 200  # the first test images (an explicit --samples wins): 63 grid points each
GRID = dict(max_translation=10.0, num_translations=3, max_rotation=30.0, num_rotations=7)

# Measured (seed 0, default training, 1,000 images): see the README's "Spatial and natural robustness".
SPATIAL_FLOORS = {
    "le_net": dict(clean_accuracy=0.9, universal_accuracy=0.0, per_image_accuracy=0.0),
    "shallow_net": dict(clean_accuracy=0.8, universal_accuracy=0.0, per_image_accuracy=0.0),
}
DEFAULT_FLOORS = dict(clean_accuracy=0.2)
# Accuracy under any rotation of up to 15 degrees with a shift of up to 2 pixels.
PROPERTY_FLOORS = {"le_net": 0.0, "shallow_net": 0.0}
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
