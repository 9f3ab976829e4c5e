"""Transforms and their strategies: shrink targets, composition, ART's spatial arithmetic, the corruptions.

No model and no session: real digits (the built-in MNIST's first test images), scipy's own functions
as references, and Hypothesis's ``find`` for what a failing search shrinks to.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
from hypothesis import HealthCheck, find, given, settings

from pytest_robustness import strategies
from pytest_robustness.tracking.example_database import RegisteredModelExampleDatabase
from pytest_robustness.transforms.corruptions import CORRUPTIONS, corrupt
from pytest_robustness.transforms.spatial_grid import GridSearch, art_grid
from pytest_robustness.transforms.transform import Compose, Corruption, Occlusion, Rotation, Shift, SpatialGridPoint

QUICK = settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def digits():
    from pytest_robustness.data.datasets import load_builtin_mnist

    return load_builtin_mnist(0).x_test[:40]


STRATEGIES = [strategies.rotation(30), strategies.shift(3), strategies.scale(0.2), strategies.brightness(0.3),
              strategies.contrast(0.5), strategies.blur(1.5), strategies.noise(0.3), strategies.occlusion(8),
              strategies.corruption(min_severity=0)]


@pytest.mark.parametrize("strategy", STRATEGIES, ids=repr)
def test_every_strategy_shrinks_to_no_change(strategy, digits):
    simplest = find(strategy, lambda t: True, settings=QUICK)
    assert simplest.is_identity
    assert np.array_equal(simplest.apply(digits), digits)


def test_a_failure_shrinks_to_the_mildest_transform_that_still_fails():
    # "fails" from 7.5 degrees on, whatever the shift: the shrunk example is 7.5 degrees and no shift
    found = find(strategies.rotation(30) & strategies.shift(3), lambda t: abs(t.parts[0].degrees) >= 7.5,
                 settings=QUICK)
    assert found == Compose((Rotation(7.5), Shift(0, 0)))
    assert repr(found) == found.describe() == "rotation 7.5 deg"
    assert (Rotation(7.5) & Shift(2, -1)).describe() == "rotation 7.5 deg, shift (2, -1)"


@QUICK
@given(t=strategies.rotation(30) & strategies.shift(3) & (strategies.brightness(0.3) | strategies.blur(1.0)))
def test_composed_transforms_keep_shape_and_range(t):
    x = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    out = t.apply(x)
    assert out.shape == x.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    assert len(t.parts) == 3 and isinstance(t.parts[0], Rotation) and isinstance(t.parts[1], Shift)
    assert np.array_equal(t.apply(x), out)  # a transform is a pure function of its parameters


def test_only_transform_strategies_compose():
    with pytest.raises(TypeError, match="combines transform strategies"):
        strategies.rotation(10) & 3
    with pytest.raises(ValueError, match="unknown name"):
        strategies.corruption("rain")


def test_spatial_points_are_arts_scipy_arithmetic(digits):
    for rows, cols, angle in [(0, 0, 0.0), (3, -2, -20.0), (-3, 3, 15.0), (2, 0, 30.0)]:
        reference = scipy.ndimage.rotate(scipy.ndimage.shift(digits, [0, rows, cols, 0]), angle=angle, axes=(1, 2),
                                         reshape=False).clip(0, 1)
        np.testing.assert_allclose(SpatialGridPoint(rows, cols, angle).apply(digits), reference, atol=1e-6)
        np.testing.assert_allclose(Shift(rows, cols).apply(digits),
                                   scipy.ndimage.shift(digits, [0, rows, cols, 0]).clip(0, 1), atol=1e-6)


def test_the_grid_is_arts_and_its_universal_point_the_first_with_the_most_changed():
    grid = art_grid((28, 28, 1), max_translation=10.0, num_translations=3, max_rotation=30.0, num_rotations=3)
    assert [(p.rows, p.cols, p.degrees) for p in grid[:4]] == [(-3, -3, -30.0), (-3, -3, 0.0), (-3, -3, 30.0),
                                                                 (-3, 0, -30.0)]
    assert len(grid) == 27
    y = np.array([0, 1, 2, 0])
    predictions = np.tile(y, (27, 1))  # clean predictions all correct
    predictions[5] = [9, 1, 2, 0]  # one changed
    predictions[7] = [9, 9, 2, 0]  # two changed: ART's choice
    predictions[8] = [0, 9, 9, 0]  # two changed, later: not chosen
    found = GridSearch(grid, y.copy(), predictions, y)
    assert found.universal == grid[7]
    values = found.metrics()
    assert values["universal_fooling_rate"] == 0.5 and values["universal_accuracy"] == 0.5
    assert values["per_image_accuracy"] == 0.25 < values["universal_accuracy"]  # only image 3 survives all


def test_occlusion_stays_inside_the_image(digits):
    out = Occlusion(size=8, row=27, col=27, value=1.0).apply(digits)
    assert (out[:, 20:, 20:] == 1.0).all() and np.array_equal(out[:, :20], digits[:, :20])


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corruptions_are_seeded_and_grow_with_severity(name, digits):
    x = digits[:16]
    assert np.array_equal(corrupt(x, name, 0), x)
    outs = [corrupt(x, name, s, seed=1) for s in range(1, 6)]
    assert all(o.shape == x.shape and o.dtype == np.float32 and o.min() >= 0 and o.max() <= 1 for o in outs)
    assert np.array_equal(corrupt(x, name, 3, seed=1), outs[2])
    change = [float(np.abs(o - x).mean()) for o in outs]
    # CIFAR-10-C's elastic severity 1 is a large affine move with no elastic part: not the smallest change
    assert change[0] > 0 and (change[4] > change[0] or name == "elastic_transform"), change
    assert Corruption(name, 5).describe() == f"{name.replace('_', ' ')} severity 5"


def test_corruptions_follow_the_papers_definitions(digits):
    x = digits[:16]
    noise = corrupt(np.full((200, 28, 28, 1), 0.5, np.float32), "gaussian_noise", 5) - 0.5
    assert noise.std() == pytest.approx(0.10, rel=0.05)  # CIFAR-10-C severity 5
    means = x.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(corrupt(x, "contrast", 2), ((x - means) * 0.5 + means).clip(0, 1), atol=1e-6)
    np.testing.assert_allclose(corrupt(x, "brightness", 1), (x + 0.05).clip(0, 1), atol=1e-6)  # gray: V + c
    rgb = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    out = corrupt(rgb, "brightness", 5)
    assert out.max(axis=-1) == pytest.approx(np.clip(rgb.max(axis=-1) + 0.3, 0, 1), abs=1e-5)
    with pytest.raises(ValueError, match="severity 6"):
        corrupt(x, "fog", 6)


def test_the_database_keeps_examples_per_model_and_cell(tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_registered_model("m")
    one, other = RegisteredModelExampleDatabase(client, "m", "a.py::t[x]"), RegisteredModelExampleDatabase(
        client, "m", "a.py::u[x]")
    one.save(b"k", b"\x00\x01")
    one.save(b"k", b"\x02")
    one.save(b"k.secondary", b"\x03")
    assert sorted(one.fetch(b"k")) == [b"\x00\x01", b"\x02"] and list(one.fetch(b"k.secondary")) == [b"\x03"]
    assert list(other.fetch(b"k")) == []
    one.delete(b"k", b"\x02")
    one.delete(b"k", b"\x02")  # already gone: nothing happens
    assert list(RegisteredModelExampleDatabase(client, "m", "a.py::t[x]").fetch(b"k")) == [b"\x00\x01"]
    assert "a.py::t[x]" in client.get_registered_model("m").tags.values()


def test_thresholds_select_property_cells_by_kind(tmp_path):
    from pytest_robustness.errors import RobustnessUsageError
    from pytest_robustness.options.thresholds import Cell, load_table

    path = tmp_path / "t.toml"
    path.write_text('[[thresholds]]\nattack = "invariant"\ntransformed_accuracy = 0.5\n'
                    '[[thresholds]]\nattack = "corruption_errors"\nmean_corruption_accuracy = 0.9\n')
    table = load_table(path, tmp_path, 0.02)
    [bound] = table.bounds_for(Cell("invariant", {}, "le_net"), {}, {"transformed_accuracy": 0.8})
    assert (bound.value, bound.source) == (0.5, "t.toml entry 1")
    [bound] = table.bounds_for(Cell("corruption_errors", {}, "le_net"), {}, {"mean_corruption_accuracy": 0.7})
    assert bound.value == 0.9
    path.write_text('[[thresholds]]\nattack = "spatial_grid"\nparams = { eps = 0.1 }\nuniversal_accuracy = 0.5\n')
    with pytest.raises(RobustnessUsageError, match="params need an attack"):
        load_table(path, tmp_path, 0.02)
