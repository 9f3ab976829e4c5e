"""Patch deployment semantics (Dioptra's deploy_patch), without a model: counts, rate, range, seeding."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_robustness.attacks.patch_deployment import circular_mask, deploy_patches, paste


def params(method="corrupt", rate=1.0, scale=0.4, rotation=22.5):
    return dict(patch_deployment_method=method, patch_application_rate=rate, patch_scale=scale, rotation_max=rotation)


def images(n, channels=1, seed=0):
    return np.random.default_rng(seed).random((n, 12, 12, channels), dtype=np.float32)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 25), rate=st.floats(0, 1), scale=st.floats(0.05, 1), rotation=st.floats(0, 180),
       method=st.sampled_from(["corrupt", "augment"]), seed=st.integers(0, 2**16))
def test_counts_rate_and_originals(n, rate, scale, rotation, method, seed):
    x = images(n)
    patch = np.ones((1, 6, 6, 1), dtype=np.float32)
    out = deploy_patches(patch, x, params(method, rate, scale, rotation), seed)
    patched = int(math.floor(rate * n + 0.5))
    assert out.modified.sum() == patched
    if method == "corrupt":
        assert len(out.x) == n and np.array_equal(out.source_index, np.arange(n))
        assert np.array_equal(out.x[~out.modified], x[~out.modified])  # the rest stay clean
    else:
        assert len(out.x) == n + patched
        assert np.array_equal(out.x[:n], x) and not out.modified[:n].any()  # originals kept, in order
        assert out.modified[n:].all()
    assert len(np.unique(out.source_index[out.modified])) == patched  # each image patched at most once
    assert out.x.dtype == x.dtype and ((out.x >= 0.0) & (out.x <= 1.0)).all()


@settings(max_examples=30, deadline=None)
@given(low=st.floats(-5, 0.5), high=st.floats(0.5, 5), seed=st.integers(0, 1000))
def test_pixels_stay_in_unit_range_whatever_the_patch(low, high, seed):
    x = images(6, channels=3, seed=seed)
    patch = np.random.default_rng(seed).uniform(low, high, (2, 8, 8, 3)).astype(np.float32)
    out = deploy_patches(patch, x, params(scale=1.0, rotation=180), seed)
    assert out.x.min() >= 0.0 and out.x.max() <= 1.0


def test_same_seed_same_images_other_seed_other_placement():
    x, patch = images(10), np.ones((1, 8, 8, 1), dtype=np.float32)
    a, b = (deploy_patches(patch, x, params(rate=0.5), 3) for _ in range(2))
    assert np.array_equal(a.x, b.x) and np.array_equal(a.source_index, b.source_index)
    assert not np.array_equal(a.x, deploy_patches(patch, x, params(rate=0.5), 4).x)


def test_patch_covers_its_scaled_circle():
    """A white patch at scale s on a black image covers about the circle inscribed in s * edge."""
    x = np.zeros((1, 40, 40, 1), dtype=np.float32)
    patch = np.ones((20, 20, 1), dtype=np.float32)
    for scale in (0.25, 0.5, 1.0):
        out = paste(x[0], patch, scale, 0.0, (20.0, 20.0))
        # ART's mask is the circle through the centres of the patch's edge pixels: diameter (20 - 1) / 20
        expected = math.pi / 4 * (scale * 40 * 19 / 20) ** 2
        assert abs(out.sum() - expected) / expected < 0.08
    assert paste(x[0], patch, 0.5, 45.0, (20.0, 20.0)).sum() > 0


def test_grey_patch_on_colour_images_and_mask_shape():
    x = images(4, channels=3)
    out = deploy_patches(np.zeros((1, 5, 5, 1), np.float32), x, params(scale=0.8), 0)
    assert out.x.shape == x.shape
    mask = circular_mask(9)
    assert mask[4, 4] == 1.0 and mask[0, 0] == 0.0


def test_patches_of_the_wrong_channel_count_are_a_usage_error():
    import pytest

    from pytest_robustness.errors import RobustnessUsageError

    patches = np.zeros((1, 4, 4, 2), dtype=np.float32)
    with pytest.raises(RobustnessUsageError, match="patches with 2 channels cannot go on 3-channel images"):
        deploy_patches(patches, images(4, channels=3), params(), seed=0)
