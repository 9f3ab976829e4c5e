"""The shipped patch suite's verdict on a user's two-class model.

On two classes a targeted patch cannot bring accuracy below 0.5 (it only moves
images of the other class to its target) while a noise patch damages both
classes, so "accuracy below the control's" is no test of "the patch is an
attack" there. The shipped suite asserts targeted success over the control's
instead; this runs the shipped file itself (with a smaller optimisation
budget, and the masking probes off: FGM at eps 1 on this global-max-pooling CNN is
not monotone, which is the probes' business, not this test's) on a CNN trained here on two classes of scikit-learn's digits, registered
with ``mlflow.keras.log_model`` and given as ``--model-uri cnn=models:/...``.
"""

from __future__ import annotations

from pathlib import Path

import keras
import mlflow
import mlflow.keras
import numpy as np
import pytest

from helpers import Store, session_run_id

ROOT = Path(__file__).resolve().parents[1]
PIP = ["tensorflow-cpu", "keras"]
SIZE = 16  # digits upscaled 2x: a patch at scale 0.5 covers 8x8 pixels


def two_class_digits(path: Path) -> Path:
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = digits.target < 2
    x = np.round(digits.images[keep] * (255 / 16)).astype(np.uint8)
    x = np.kron(x, np.ones((1, 2, 2), dtype=np.uint8))[..., None]
    y = digits.target[keep]
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    n = int(len(x) * 0.7)
    np.savez(path, x_train=x[:n], y_train=y[:n], x_test=x[n:], y_test=y[n:])
    return path


@pytest.fixture(scope="module")
def two_classes(tmp_path_factory):
    root = tmp_path_factory.mktemp("two_classes")
    npz = two_class_digits(root / "digits2.npz")
    data = np.load(npz)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((SIZE, SIZE, 1)), keras.layers.Rescaling(1 / 255.0),
                              keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.Conv2D(16, 3, activation="relu"),
                              keras.layers.GlobalMaxPooling2D(), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data["x_train"].astype(np.float32), data["y_train"], epochs=10, batch_size=32, verbose=0)
    store = Store(root / "mlflow" / "mlflow.db")
    mlflow.set_tracking_uri(store.uri)
    try:
        experiment = mlflow.create_experiment("user_training", artifact_location=(root / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):  # the model's files under tmp, not the working directory
            mlflow.keras.log_model(model, name="model", registered_model_name="two_digits", pip_requirements=PIP)
    finally:
        mlflow.set_tracking_uri(None)
    return store, npz


def test_a_working_targeted_patch_on_two_classes_passes_the_shipped_patch_suite(pytester, two_classes):
    store, npz = two_classes
    shipped = (ROOT / "robustness_suites" / "test_patch.py").read_text()
    assert "max_iter=500" in shipped
    pytester.makepyfile(test_patch=shipped.replace("max_iter=500", "max_iter=300"))
    result = pytester.runpytest(
        "--dataset", str(npz), "--model-uri", "cnn=models:/two_digits/1", "--input-range", "0,255",
        "--mlflow-uri", store.uri, "--attack-backend", "compiled", "--samples", "100", "--gradient-masking", "off",
        "-k", "0.5 and corrupt and not rate", "-p", "no:cacheprovider",
        "-W", "ignore::pytest.PytestAssertRewriteWarning")
    result.assert_outcomes(passed=1)
    [run] = store.children(session_run_id(result), experiment=Path(npz).stem)
    metrics = run.data.metrics
    # The patch is an attack: it moves images to its target far more often than noise does ...
    assert metrics["targeted_success_over_control"] == pytest.approx(
        metrics["targeted_success_rate"] - metrics["control_targeted_success_rate"])
    assert metrics["targeted_success_rate"] > 0.9 and metrics["targeted_success_over_control"] > 0.5
    # ... and yet on two classes it cannot bring accuracy much below 0.5 (it only moves the other class), so
    # a noise patch that damages both classes could have beaten it at "accuracy below the control's".
    assert metrics["adversarial_accuracy"] >= 0.45
    assert metrics["accuracy_below_control"] == pytest.approx(metrics["control_accuracy"] - metrics["adversarial_accuracy"])
