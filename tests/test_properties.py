"""Property cells end to end: a Hypothesis-searched rotation property and ART's spatial grid on users' models.

Two small CNNs trained here on the built-in MNIST and registered with ``mlflow.keras.log_model`` (as a
user would): one on the plain images, one with rotation augmentation. The plain one fails
``rotation(25)`` at a 0.7 accuracy floor and the report names a counterexample milder than the first
failing rotation Hypothesis drew; the augmented one passes and logs the worst rotation it was tried on;
a new version of the plain model replays the stored counterexample as its very first example. The
universal spatial cell picks ART's ``SpatialTransformation`` grid point, with ART's fooling rate.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import keras
import mlflow
import mlflow.keras
import numpy as np
import pytest

from helpers import Store

PIP = ["tensorflow-cpu", "keras"]
ARGS = ("--samples", "200", "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")
FLOOR = 0.7

SUITE = f'''
import pytest
from hypothesis import given, settings

from pytest_robustness import strategies
from pytest_robustness.transforms.transform import Rotation


@settings(max_examples=30)
@given(t=strategies.rotation(25))
def test_rotation(robustness, t):
    robustness.invariant(t, {FLOOR})


def test_labels_survive_a_quarter_turn(robustness):
    robustness.invariant(Rotation(90.0), per_image=True)


def test_grid(robustness):
    values = robustness.spatial_grid(max_translation=10.0, num_translations=3, max_rotation=30.0, num_rotations=3)
    robustness.check(values, clean_accuracy=0.5)
'''


def _cnn(x, y, epochs: int = 3):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.MaxPooling2D(2), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def _log(model, name: str) -> None:
    with mlflow.start_run():
        mlflow.keras.log_model(model, name="model", registered_model_name=name, pip_requirements=PIP)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A store with ``plain/1`` (no augmentation) and ``augmented/1`` (two copies rotated by up to 30 degrees)."""
    import scipy.ndimage

    from pytest_robustness.data.datasets import load_builtin_mnist

    data = load_builtin_mnist(0)  # the session's data at seed 0: the same train/test split
    x, y = data.x_train, data.y_train
    rng = np.random.default_rng(0)
    rotated = [np.stack([scipy.ndimage.rotate(image, angle, axes=(0, 1), reshape=False, order=1)
                         for image, angle in zip(x, rng.uniform(-30, 30, len(x)))]).clip(0, 1) for _ in range(2)]
    plain, augmented = _cnn(x, y), _cnn(np.concatenate([x, *rotated]), np.concatenate([y, y, y]))
    store = Store(tmp_path_factory.mktemp("properties") / "mlflow.db")
    mlflow.set_tracking_uri(store.uri)
    try:
        _log(plain, "plain")
        _log(augmented, "augmented")
    finally:
        mlflow.set_tracking_uri(None)
    return store, plain, data


def cells(xml: Path) -> dict[str, dict[str, str]]:
    return {case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
            for case in ET.parse(xml).getroot().iter("testcase")}


def degrees(description: str) -> float:
    found = re.fullmatch(r"rotation (-?[\d.]+) deg", description)
    assert found, description
    return float(found.group(1))


def run(pytester, store: Store, uri: str, xml: str, *args: str):
    pytester.makepyfile(test_properties_suite=SUITE)
    result = pytester.runpytest(*ARGS, "--mlflow-uri", store.uri, "--model-uri", f"cnn={uri}", "--junitxml", xml,
                                *args)
    return result, cells(pytester.path / xml)


def test_a_rotation_property_shrinks_its_counterexample_remembers_it_and_the_grid_is_arts(pytester, models):
    store, plain, data = models
    result, found = run(pytester, store, "models:/plain/1", "plain.xml")
    result.assert_outcomes(failed=2, passed=1)
    result.stdout.fnmatch_lines(["*test_labels_survive_a_quarter_turn?cnn?: rotation 90 deg: label invariance 0.* < 1.00*"])
    rotation = found["test_rotation[cnn]"]
    counterexample, first = degrees(rotation["property.counterexample"]), degrees(rotation["property.first_failure"])
    assert abs(counterexample) < abs(first)  # shrunk toward no rotation
    assert int(float(rotation["property.first_failure_index"])) > 1  # the search drew passing rotations first
    assert float(rotation["property.transformed_accuracy"]) < FLOOR <= float(rotation["property.clean_accuracy"])
    result.stdout.fnmatch_lines([f"*rotation {counterexample:g} deg: transformed accuracy 0.* < {FLOOR:.2f}*"])
    # One MLflow run for the item (not one per example), with the counterexample and its picture.
    runs = [r for r in store.runs() if r.info.run_name == "test_rotation[cnn]"]
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    assert runs[0].data.params["property.counterexample"] == rotation["property.counterexample"]
    tried = runs[0].data.metrics["property.examples_tried"]
    assert tried == float(rotation["property.examples_tried"]) > float(rotation["property.first_failure_index"])
    assert "samples.png" in [a.path for a in store.client.list_artifacts(runs[0].info.run_id)]
    tags = store.client.get_registered_model("plain").tags
    assert any(k.startswith("robustness.hypothesis.") and v == "test_properties_suite.py::test_rotation[cnn]"
               for k, v in tags.items())

    # The universal grid point and its fooling rate are ART's; worst-of-k never above it.
    grid = found["test_grid[cnn]"]
    from art.attacks.evasion import SpatialTransformation
    from art.estimators.classification import TensorFlowV2Classifier

    classifier = TensorFlowV2Classifier(plain, nb_classes=10, input_shape=(28, 28, 1), clip_values=(0.0, 1.0),
                                        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    art = SpatialTransformation(classifier, max_translation=10.0, num_translations=3, max_rotation=30.0,
                                num_rotations=3)
    x, y = data.x_test[:200], data.y_test[:200]
    x_adv = art.generate(x)
    assert (int(grid["spatial.rows"]), int(grid["spatial.cols"]), float(grid["spatial.degrees"])) == \
        (art.attack_trans_x, art.attack_trans_y, art.attack_rot)
    assert float(grid["universal_fooling_rate"]) == pytest.approx(art.fooling_rate)
    art_accuracy = float((classifier.predict(x_adv).argmax(1) == y).mean())
    assert float(grid["universal_accuracy"]) == pytest.approx(art_accuracy)
    assert float(grid["per_image_accuracy"]) <= float(grid["universal_accuracy"])

    # The same model trained with rotations passes, and says what it was tried on; a configured threshold
    # selects the grid cell by its kind and replaces the suite's floor.
    pytester.path.joinpath("thresholds.toml").write_text(
        '[[thresholds]]\nattack = "spatial_grid"\narchitecture = "cnn"\nuniversal_accuracy = 0.99\n')
    result, found = run(pytester, store, "models:/augmented/1", "augmented.xml", "--thresholds", "thresholds.toml")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*test_grid?cnn?: universal_accuracy 0.* < 0.9900 (thresholds.toml entry 1)*"])
    rotation = found["test_rotation[cnn]"]
    assert "property.counterexample" not in rotation and float(rotation["property.examples_tried"]) == 30
    assert float(rotation["property.worst_value"]) >= FLOOR and degrees(rotation["property.worst_transform"]) != 0

    # A new version of the plain model: the stored counterexample is the first example tried; against the
    # augmented model as the baseline, the same rotation is also a regression.
    mlflow.set_tracking_uri(store.uri)
    try:
        _log(plain, "plain")
    finally:
        mlflow.set_tracking_uri(None)
    result, found = run(pytester, store, "models:/plain/2", "plain2.xml", "--baseline-uri", "models:/augmented/1")
    result.assert_outcomes(failed=2, passed=1)
    rotation = found["test_rotation[cnn]"]
    baseline = float(rotation["property.baseline_transformed_accuracy"])
    assert baseline > float(rotation["property.transformed_accuracy"]) + 0.05
    result.stdout.fnmatch_lines([f"*test_rotation?cnn?: rotation {counterexample:g} deg: transformed accuracy 0.* < "
                                 f"{FLOOR:.2f}; transformed accuracy 0.* < baseline models:/augmented/1 "
                                 f"{baseline:.2f} - max_regression *"])
    assert int(float(rotation["property.first_failure_index"])) == 1
    assert degrees(rotation["property.first_failure"]) == counterexample
    assert degrees(rotation["property.counterexample"]) == counterexample
