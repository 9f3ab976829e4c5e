"""Per-class verdicts on a user's model (``--model-uri``, keras flavor, logits): an average can hide one class
that collapses, and a worst-class threshold catches it. Real sqlite MLflow store, real Keras models."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from helpers import Store
from test_user_models import PIP, _logits_cnn, digits_npz

SUITE = '''
from pytest_robustness import attack_cases


@attack_cases("fgm", [dict(norm="inf", eps=0.05)])
def test_fgm(robustness, architecture, params):
    robustness.check(robustness.attack("fgm", **params))
'''
THRESHOLDS = '''[[thresholds]]
attack = "fgm"
adversarial_accuracy = 0.3
worst_class_adversarial_accuracy = 0.2
'''
COLLAPSED = 3


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The user's logits CNN, and the same CNN with class 3 never predicted (its logit pushed down)."""
    root = tmp_path_factory.mktemp("per_class")
    npz = digits_npz(root / "digits.npz")
    data = np.load(npz)
    model = _logits_cnn(data["x_train"].astype(np.float32) / 255.0, data["y_train"])
    store = Store(root / "mlflow" / "mlflow.db")
    mlflow.set_tracking_uri(store.uri)
    try:
        with mlflow.start_run():
            mlflow.keras.log_model(model, name="model", registered_model_name="healthy", pip_requirements=PIP)
        last = model.layers[-1]
        bias = last.bias.numpy()
        bias[COLLAPSED] -= 100.0
        last.bias.assign(bias)
        with mlflow.start_run():
            mlflow.keras.log_model(model, name="model", registered_model_name="collapsed", pip_requirements=PIP)
    finally:
        mlflow.set_tracking_uri(None)
    return store, npz


def run(pytester, store, npz, name):
    pytester.makepyfile(test_cells=SUITE)
    pytester.makefile(".toml", thresholds=THRESHOLDS)
    result = pytester.runpytest("--attack-backend", "compiled", "-p", "no:cacheprovider", "-W",
                                "ignore::pytest.PytestAssertRewriteWarning", "--samples", "200", "--dataset", str(npz),
                                "--mlflow-uri", store.uri, "--thresholds", "thresholds.toml",
                                "--model-uri", f"cnn=models:/{name}/1", "--robustness-cache", "off")
    cell = max([r for r in store.runs("digits") if r.data.tags.get("robustness.kind") == "test"],
               key=lambda r: r.info.start_time)
    return result, cell.data.metrics


def test_a_worst_class_threshold_fails_a_model_whose_one_class_collapses(pytester, models):
    store, npz = models
    result, healthy = run(pytester, store, npz, "healthy")
    result.assert_outcomes(passed=1)
    result, collapsed = run(pytester, store, npz, "collapsed")
    result.assert_outcomes(failed=1)
    # the average passes its floor; the one class that collapsed fails the worst-class floor
    assert collapsed["adversarial_accuracy"] >= 0.3
    assert collapsed[f"adversarial_accuracy/class/{COLLAPSED}"] == 0.0
    assert collapsed[f"clean_accuracy/class/{COLLAPSED}"] == 0.0
    assert collapsed["worst_class_adversarial_accuracy"] == 0.0
    assert collapsed["worst_class_adversarial_accuracy_ci_high"] > 0.0  # Wilson over that class's images
    result.stdout.fnmatch_lines(["*worst_class_adversarial_accuracy 0.0000 < 0.2000*"])
    result.stdout.no_fnmatch_line("*; adversarial_accuracy 0.* < 0.3000*")
    # per class, every class present, and the worst is the minimum of them
    per_class = {k: v for k, v in healthy.items() if k.startswith("adversarial_accuracy/class/")}
    assert len(per_class) == 10
    assert healthy["worst_class_adversarial_accuracy"] == pytest.approx(min(per_class.values()))
    assert healthy["worst_class_adversarial_accuracy"] >= 0.2
