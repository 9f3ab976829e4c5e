"""Users' own models, registered the way users register them, gated with the shipped machinery.

A small CNN is trained in this process on scikit-learn's 8x8 digits (the user's
data, as an .npz) and ends in logits (``Dense(10)``, ``from_logits=True``, as the
Keras guides write it). The same weights are registered the ways users do:
logits with ``mlflow.keras.log_model``; a ``Softmax`` appended, with
``mlflow.tensorflow.log_model``; ``Dense(activation="softmax")`` as an ``.h5``
with ``mlflow.tensorflow.log_model``; and behind a ``Rescaling(1/255)`` for
[0, 255] pixels. All in a real sqlite MLflow store, run by in-process pytest.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import keras
import mlflow
import mlflow.keras
import mlflow.sklearn
import mlflow.tensorflow
import numpy as np
import pytest

from helpers import FGM_SUITE, Store

PIP = ["tensorflow-cpu", "keras"]  # given, so MLflow does not load the model to infer requirements
USER_ARGS = ("--attack-backend", "compiled", "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning",
             "--samples", "64")
MARKER = "lambda_ran.txt"


def digits_npz(path: Path, classes: int = 10) -> Path:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]
    y = digits.target
    keep = y < classes
    x, y = x[keep], y[keep]
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    n = int(len(x) * 0.8)
    np.savez(path, x_train=x[:n], y_train=y[:n], x_test=x[n:], y_test=y[n:])
    return path


def _logits_cnn(x, y):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(10)], name="user_cnn")
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    return model


def digits_logits_cnn(root: Path):
    """A user's logits CNN trained on scikit-learn's digits, the digits as an ``.npz`` and a fresh store, under ``root``."""
    npz = digits_npz(root / "digits.npz")
    data = np.load(npz)
    return Store(root / "mlflow" / "mlflow.db"), npz, _logits_cnn(data["x_train"].astype(np.float32) / 255.0,
                                                                   data["y_train"])


def register_keras(store: Store, model, name: str) -> None:
    """Register ``model`` in ``store`` with ``mlflow.keras.log_model``, as a user's training job does."""
    mlflow.set_tracking_uri(store.uri)
    try:
        _log(mlflow.keras, model, name)
    finally:
        mlflow.set_tracking_uri(None)


def _dense_softmax_copy(model):
    """The same layers and weights, the last Dense with activation='softmax'."""
    copy = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                             keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    copy.set_weights(model.get_weights())
    return copy


def _log(flavor, model, name, **kwargs):
    with mlflow.start_run():
        return flavor.log_model(model, name="model", registered_model_name=name, pip_requirements=PIP, **kwargs)


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """A store holding the user's models (versions 1), and the user's data."""
    root = tmp_path_factory.mktemp("user")
    npz = digits_npz(root / "digits.npz")
    data = np.load(npz)
    x, y = data["x_train"].astype(np.float32) / 255.0, data["y_train"]
    logits = _logits_cnn(x, y)
    store = Store(root / "mlflow" / "mlflow.db")
    mlflow.set_tracking_uri(store.uri)
    try:
        _log(mlflow.keras, logits, "user_logits")
        _log(mlflow.tensorflow, keras.Sequential([logits, keras.layers.Softmax()]), "user_softmax")
        _log(mlflow.tensorflow, _dense_softmax_copy(logits), "user_h5", keras_model_kwargs={"save_format": "h5"})
        _log(mlflow.keras, keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255.0), logits]),
             "user_255")
        from sklearn.linear_model import LogisticRegression

        _log(mlflow.sklearn, LogisticRegression(max_iter=50).fit(x.reshape(len(x), -1)[:200], y[:200]), "user_sklearn")
    finally:
        mlflow.set_tracking_uri(None)
    return store, npz, logits


def cells(xml: Path) -> dict[str, dict[str, str]]:
    """JUnit test case name -> its properties."""
    return {case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
            for case in ET.parse(xml).getroot().iter("testcase")}


def by_cell(found: dict[str, dict[str, str]], arch: str) -> dict[str, dict[str, str]]:
    return {name.replace(f"[{arch}-", "["): props for name, props in found.items() if f"[{arch}-" in name}


def run_user(pytester, store, npz, *args):
    pytester.makepyfile(test_suite=FGM_SUITE)
    return pytester.runpytest(*USER_ARGS, "--dataset", str(npz), "--mlflow-uri", store.uri, *args)


def test_logits_softmax_and_h5_agree_cell_by_cell_and_each_candidate_is_gated_and_promoted(pytester, user):
    store, npz, _ = user
    result = run_user(pytester, store, npz, "--junitxml", "report.xml",
                      "--model-uri", "logits=models:/user_logits/1", "--model-uri", "softmax=models:/user_softmax/1",
                      "--model-uri", "h5=models:/user_h5/1",
                      "--baseline-uri", "logits=models:/user_softmax/1", "--baseline-uri", "softmax=models:/user_logits/1",
                      "--baseline-uri", "h5=models:/user_logits/1", "--promote", "champion")
    result.assert_outcomes(passed=6)
    found = cells(pytester.path / "report.xml")
    logits, softmax, h5 = (by_cell(found, arch) for arch in ("logits", "softmax", "h5"))
    assert sorted(logits) == sorted(softmax) == sorted(h5) and len(logits) == 2
    for cell in logits:
        for metric in ("clean_accuracy", "adversarial_accuracy", "robustness.baseline_value"):
            assert logits[cell][metric] == softmax[cell][metric] == h5[cell][metric], (cell, metric)
        assert float(logits[cell]["clean_accuracy"]) > 0.5  # the user's model, really tested
        assert float(logits[cell]["adversarial_accuracy"]) < float(logits[cell]["clean_accuracy"])
    runs = [r for r in store.runs("digits") if r.data.tags.get("robustness.kind") == "test"]
    outputs = {r.data.tags["robustness.architecture"]: r.data.params["model_output"] for r in runs}
    assert outputs == {"logits": "logits", "softmax": "probabilities", "h5": "probabilities"}
    assert {r.data.params["input_range"] for r in runs} == {"0,1"}
    for name in ("user_logits", "user_softmax", "user_h5"):
        (version,) = store.versions(name)
        assert str(store.client.get_model_version_by_alias(name, "champion").version) == str(version.version) == "1"
        assert version.tags["robustness.verdict"] == "passed"


def test_a_0_255_model_gates_with_input_range(pytester, user, tmp_path):
    store, npz, _ = user
    result = run_user(pytester, store, npz, "--junitxml", "logits.xml", "--model-uri", "cnn=models:/user_logits/1")
    result.assert_outcomes(passed=2)
    result = run_user(pytester, store, npz, "--junitxml", "255.xml", "--model-uri", "cnn=models:/user_255/1",
                      "--input-range", "0,255")
    result.assert_outcomes(passed=2)
    expected, found = cells(pytester.path / "logits.xml"), cells(pytester.path / "255.xml")
    assert sorted(expected) == sorted(found)
    for cell in expected:  # eps keeps meaning a fraction of the pixel range: the same attack, the same numbers
        for metric in ("clean_accuracy", "adversarial_accuracy"):
            assert abs(float(expected[cell][metric]) - float(found[cell][metric])) <= 1 / 64, (cell, metric)
    runs = [r for r in store.runs("digits") if r.data.params.get("model_uri") == "models:/user_255/1"]
    assert runs and {r.data.params["input_range"] for r in runs} == {"0,255"}


def assert_start_up_error(result, message: str) -> None:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert errors == [f"ERROR: {message}"], result.errlines
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_another_flavor_fails_at_start_up_naming_its_flavors(pytester, user):
    store, npz, _ = user
    runs_before = len(store.runs("digits"))
    result = run_user(pytester, store, npz, "--model-uri", "lr=models:/user_sklearn/1")
    assert_start_up_error(result, "--model-uri models:/user_sklearn/1: flavors python_function, sklearn; supported: "
                                  "a Keras model logged with mlflow.keras or mlflow.tensorflow (keras, tensorflow)")
    assert len(store.runs("digits")) == runs_before


def test_shape_and_class_mismatches_fail_at_start_up(pytester, user, tmp_path):
    store, npz, _ = user
    result = run_user(pytester, store, "mnist", "--model-uri", "cnn=models:/user_softmax/1")
    assert_start_up_error(result, "--model-uri models:/user_softmax/1: the model takes inputs of shape (8, 8, 1), "
                                  "the data's images are (28, 28, 1)")
    five = digits_npz(tmp_path / "five.npz", classes=5)
    result = run_user(pytester, store, five, "--model-uri", "cnn=models:/user_logits/1")
    assert_start_up_error(result, "--model-uri models:/user_logits/1: the model has 10 outputs, the data has 5 classes")
    result = run_user(pytester, store, npz, "--model-uri", "cnn=models:/user_h5/1", "--model-output", "logits")
    assert_start_up_error(result, "--model-uri models:/user_h5/1: --model-output logits, but the model ends in a "
                                  "softmax; use --model-output probabilities or auto")


def _lambda_model(marker: Path):
    """A model whose Lambda writes a file when Keras deserialises or runs it."""
    inputs = keras.Input((8, 8, 1))
    planted = eval(f"lambda t: (open({str(marker)!r}, 'w').write('ran'), t)[1]")  # no closure: its code is saved
    x = keras.layers.Lambda(planted)(inputs)
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(x))
    marker.unlink(missing_ok=True)
    return keras.Model(inputs, outputs)


def test_model_code_is_refused_unless_trusted(pytester, user, tmp_path):
    store, npz, _ = user
    marker = tmp_path / MARKER
    path = tmp_path / "planted.keras"
    _lambda_model(marker).save(path)
    marker.unlink(missing_ok=True)
    db = tmp_path / "fresh" / "mlflow.db"
    pytester.makepyfile(test_suite=FGM_SUITE)
    result = pytester.runpytest(*USER_ARGS, "--dataset", str(npz), "--mlflow-uri", f"sqlite:///{db}",
                                "--model-file", str(path), "--architecture", "planted")
    hint = ("refused to load: it contains Python code (a Lambda layer or a custom object with code), which Keras' "
            "safe mode does not run; if you trust this model's code, allow it with --trust-model-code "
            "(ini: robustness_trust_model_code = true)")
    assert_start_up_error(result, f"--model-file {path}: {hint}")
    assert not marker.exists() and not db.exists()

    mlflow.set_tracking_uri(store.uri)
    try:
        _log(mlflow.keras, _lambda_model(marker), "user_planted")
    finally:
        mlflow.set_tracking_uri(None)
    marker.unlink(missing_ok=True)
    result = run_user(pytester, store, npz, "--model-uri", "planted=models:/user_planted/1")
    assert_start_up_error(result, f"--model-uri models:/user_planted/1: {hint}")
    assert not marker.exists()
    result = run_user(pytester, store, npz, "--model-uri", "planted=models:/user_planted/1", "--trust-model-code")
    outcomes = result.parseoutcomes()  # an untrained model: tested, and failing its accuracy floor
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 2 and result.ret != pytest.ExitCode.USAGE_ERROR
    assert marker.exists()  # trusted: its code ran


def test_a_model_file_is_registered_once_and_tested(pytester, user, tmp_path):
    store, npz, logits = user
    first, second = tmp_path / "cnn.keras", tmp_path / "copy_of_cnn.h5"
    logits.save(first)
    logits.save(second)
    result = run_user(pytester, store, npz, "--model-file", str(first), "--architecture", "cnn", "--model-tag", "pre")
    result.assert_outcomes(passed=2)
    (version,) = store.versions("digits_pre_cnn")
    result = run_user(pytester, store, npz, "--model-file", str(second), "--architecture", "cnn", "--model-tag", "pre")
    result.assert_outcomes(passed=2)
    assert [v.version for v in store.versions("digits_pre_cnn")] == [version.version]  # same weights: reused
    models = {r.data.params.get("model_uri") for r in store.runs("digits") if r.data.tags.get("robustness.kind") == "test"}
    assert f"models:/digits_pre_cnn/{version.version}" in models


def test_a_pretrained_base_loads_from_a_local_weights_file_and_is_frozen(tmp_path):
    """Dioptra's resnet50/vgg16 start from ImageNet weights: a local file (--base-weights) gives them, frozen."""
    from pytest_robustness.models.architectures import ARCHITECTURES

    keras.utils.set_random_seed(1)
    pretrained = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16_notop.weights.h5"
    pretrained.save_weights(path)
    model = ARCHITECTURES["vgg16"].build((28, 28, 1), 10, str(path))
    (base,) = [layer for layer in model.layers if layer.name.startswith("vgg16")]
    assert not base.trainable
    for ours, theirs in zip(base.get_weights(), pretrained.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    assert len(model.trainable_weights) == 4  # the head only: Dense(1024) and the classifier


def test_promote_gives_the_alias_to_each_candidate_that_passed(pytester, user):
    store, npz, _ = user
    pytester.path.joinpath("strict.toml").write_text(
        '[[thresholds]]\nattack = "fgm"\narchitecture = "strict"\nadversarial_accuracy = 0.999\n')
    result = run_user(pytester, store, npz, "--thresholds", "strict.toml", "--promote", "release",
                      "--model-uri", "lenient=models:/user_logits/1", "--model-uri", "strict=models:/user_h5/1")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["promoted models:/user_logits/1 -> @release; not promoted (failed cells): "
                                 "models:/user_h5/1"])
    assert str(store.client.get_model_version_by_alias("user_logits", "release").version) == "1"
    assert "release" not in store.client.get_registered_model("user_h5").aliases
    assert store.client.get_model_version("user_h5", "1").tags["robustness.verdict"] == "failed"


@pytest.mark.parametrize("ending", ["dense_softmax", "softmax_layer", "activation", "nested"])
def test_the_wrapper_outputs_the_models_logits_on_its_weights(ending):
    """Every way a model ends in a softmax gives logits whose softmax is the model's output."""
    from pytest_robustness.models.adapter import adapt
    from pytest_robustness.models.classifiers import softmax

    keras.utils.set_random_seed(0)
    body = [keras.Input((8, 8, 1)), keras.layers.Flatten()]
    model = {
        "dense_softmax": lambda: keras.Sequential([*body, keras.layers.Dense(10, activation="softmax")]),
        "softmax_layer": lambda: keras.Sequential([*body, keras.layers.Dense(10), keras.layers.Softmax()]),
        "activation": lambda: keras.Sequential([*body, keras.layers.Dense(10), keras.layers.Activation("softmax")]),
        "nested": lambda: keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Rescaling(1.0),
                                            keras.Sequential([*body, keras.layers.Dense(10, activation="softmax")])]),
    }[ending]()
    adapted = adapt(model)
    assert adapted.output == "probabilities" and adapted.peeled == (ending != "nested")
    x = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32) * 10
    np.testing.assert_allclose(softmax(adapted.model(x).numpy()), model(x).numpy(), atol=1e-5)
