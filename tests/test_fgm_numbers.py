"""The ``robustness`` fixture's FGM numbers are ART's numbers on the same registered model and samples."""

from __future__ import annotations

import importlib.util
import re

import keras
import mlflow
import numpy as np
import pytest
from art.attacks.evasion import FastGradientMethod
from art.estimators.classification import TensorFlowV2Classifier

from helpers import FAILING_SUITE, FGM_SUITE, MODEL_NAME, run_robustness, session_run_id
from pytest_robustness.data.adversarial_sets import read_examples

HAS_COMPILED = importlib.util.find_spec("pytest_robustness.attacks.compiled") is not None
BACKENDS = [
    pytest.param("art"),
    pytest.param("compiled", marks=pytest.mark.skipif(
        not HAS_COMPILED, reason="pytest_robustness/attacks/compiled/__init__.py is not on this branch yet")),
]
NORMS = {"inf": np.inf, "1": 1, "2": 2}


def logits_of(model):
    """The model without its final softmax: a linear copy of its last Dense layer on the same input."""
    last = model.layers[-1]
    linear = keras.layers.Dense(last.units)
    outputs = linear(last.input)
    linear.set_weights(last.get_weights())
    return keras.Model(model.inputs, outputs)


def art_reference(store, run, tmp_path):
    """Recompute the cell with ART from what MLflow holds: the registered model and the logged samples."""
    params = run.data.params
    mlflow.set_tracking_uri(store.uri)
    model = mlflow.tensorflow.load_model(params["model_uri"])
    examples = read_examples(store.download(run.info.run_id, "adversarial_examples.npz", tmp_path / run.info.run_id))
    x_clean, x_adv_logged, y_true = examples["x_clean"], examples["x_adv"], examples["y_true"]
    classifier = TensorFlowV2Classifier(logits_of(model), nb_classes=10, input_shape=(28, 28, 1),
                                        loss_object=keras.losses.CategoricalCrossentropy(from_logits=True),
                                        clip_values=(0.0, 1.0))
    attack = FastGradientMethod(classifier, norm=NORMS[params["fgm.norm"]], eps=float(params["fgm.eps"]),
                                eps_step=float(params["fgm.eps_step"]), minimal=params["fgm.minimal"] == "true",
                                batch_size=int(params["fgm.batch_size"]))
    x_adv = attack.generate(x=x_clean)

    def accuracy(x):
        return float(np.mean(classifier.predict(x).argmax(axis=1) == y_true))

    return dict(x_clean=x_clean, y_true=y_true, x_adv_logged=x_adv_logged, x_adv=x_adv,
                clean_accuracy=accuracy(x_clean), adversarial_accuracy=accuracy(x_adv),
                logged_adversarial_accuracy=accuracy(x_adv_logged))


@pytest.mark.parametrize("backend", BACKENDS)
def test_logged_accuracy_equals_arts_fgm_on_the_registered_model(pytester, trained_store, tmp_path, backend):
    pytester.makepyfile(test_suite=FGM_SUITE)
    result = run_robustness(pytester, "--robustness-cache", "off", "--attack-backend", backend, store=trained_store)
    result.assert_outcomes(passed=2)
    runs = trained_store.children(session_run_id(result))
    assert sorted(r.data.params["fgm.norm"] for r in runs) == ["2", "inf"]
    for run in runs:
        assert run.data.params["model_uri"] == f"models:/{MODEL_NAME}/1"
        assert run.data.params["attack_backend"] == backend
        ref = art_reference(trained_store, run, tmp_path)
        metrics = run.data.metrics
        assert len(ref["x_clean"]) == 100 and ref["x_clean"].shape[1:] == (28, 28, 1)
        assert metrics["clean_accuracy"] == ref["clean_accuracy"]
        # The logged metric is the accuracy on the logged adversarial examples, whatever the backend...
        assert metrics["adversarial_accuracy"] == ref["logged_adversarial_accuracy"]
        # ... and those are ART's: identical for the ART backend, within float noise for compiled kernels.
        if backend == "art":
            np.testing.assert_allclose(ref["x_adv_logged"], ref["x_adv"], atol=1e-6)
            assert metrics["adversarial_accuracy"] == ref["adversarial_accuracy"]
        else:
            assert np.mean(np.abs(ref["x_adv_logged"] - ref["x_adv"]) > 1e-4) < 0.01
            assert metrics["adversarial_accuracy"] == pytest.approx(ref["adversarial_accuracy"], abs=0.02)
        assert metrics["adversarial_accuracy"] < metrics["clean_accuracy"]  # the attack did something
        if run.data.params["fgm.norm"] == "inf" and run.data.params["fgm.minimal"] == "false":
            assert metrics["l_inf_norm_max"] == pytest.approx(0.1, abs=1e-6)


def test_same_seed_same_numbers(pytester, trained_store, tmp_path):
    pytester.makepyfile(test_suite=FGM_SUITE)
    runs = []
    for _ in range(2):
        result = run_robustness(pytester, "--robustness-cache", "off", store=trained_store)
        result.assert_outcomes(passed=2)
        runs.append({r.data.params["fgm.norm"]: r for r in trained_store.children(session_run_id(result))})
    for norm in ("inf", "2"):
        first, second = runs[0][norm], runs[1][norm]
        assert first.data.metrics == second.data.metrics
        a = read_examples(trained_store.download(first.info.run_id, "adversarial_examples.npz", tmp_path / "a"))
        b = read_examples(trained_store.download(second.info.run_id, "adversarial_examples.npz", tmp_path / "b"))
        np.testing.assert_array_equal(a["x_adv"], b["x_adv"])


def test_threshold_failure_names_metric_value_threshold_and_test(pytester, trained_store):
    pytester.makepyfile(test_floor=FAILING_SUITE)
    result = run_robustness(pytester, store=trained_store)
    result.assert_outcomes(failed=1)
    (run,) = trained_store.children(session_run_id(result))
    value = run.data.metrics["adversarial_accuracy"]
    expected = (f"test_fgm_floor[shallow_net]: adversarial_accuracy {value:.4f} < 0.9900 (suite default)")
    assert expected in result.stdout.lines
    assert re.search(r"FAILED test_floor.py::test_fgm_floor\[shallow_net\]", result.stdout.str())
    assert run.info.status == "FAILED"
