"""Per-class verdicts on a user's model (``--model-uri``, keras flavor, logits): an average can hide one class
that collapses, and a worst-class threshold catches it; a targeted cell is reported both ways (the same
session). Real sqlite MLflow store, real Keras models."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from test_user_models import digits_logits_cnn, register_keras

from helpers import session_run_id
from pytest_robustness.data.example_files import read_examples
from pytest_robustness.models.classifiers import make_classifier

SUITE = '''
from pytest_robustness import attack_cases


@attack_cases("fgm", [dict(norm="inf", eps=0.05)])
def test_fgm(robustness, architecture, params):
    robustness.check(robustness.attack("fgm", **params))


@attack_cases("apgd", [dict(norm="inf", eps=0.15, eps_step=0.1, max_iter=5, nb_random_init=1, targeted=True)])
def test_apgd_targeted(robustness, architecture, params):
    robustness.attack("apgd", **params)
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
    store, npz, model = digits_logits_cnn(tmp_path_factory.mktemp("per_class"))
    register_keras(store, model, "healthy")
    last = model.layers[-1]
    bias = last.bias.numpy()
    bias[COLLAPSED] -= 100.0
    last.bias.assign(bias)
    register_keras(store, model, "collapsed")
    return store, npz


def run(pytester, store, npz, name):
    pytester.makepyfile(test_cells=SUITE)
    pytester.makefile(".toml", thresholds=THRESHOLDS)
    result = pytester.runpytest("--attack-backend", "compiled", "-p", "no:cacheprovider", "-W",
                                "ignore::pytest.PytestAssertRewriteWarning", "--samples", "200", "--dataset", str(npz),
                                "--mlflow-uri", store.uri, "--thresholds", "thresholds.toml",
                                "--model-uri", f"cnn=models:/{name}/1", "--robustness-cache", "off")
    cells = {r.info.run_name: r for r in store.runs("digits") if r.data.tags.get("robustness.kind") == "test"
             and r.data.tags.get("mlflow.parentRunId") == session_run_id(result)}
    return result, cells["test_fgm[cnn-linf-eps0.05]"].data.metrics, cells


def test_a_worst_class_threshold_fails_a_model_whose_one_class_collapses(pytester, models, tmp_path):
    store, npz = models
    result, healthy, cells = run(pytester, store, npz, "healthy")
    result.assert_outcomes(passed=2)
    check_targeted_cell(store, cells, tmp_path)
    result, collapsed, _ = run(pytester, store, npz, "collapsed")
    result.assert_outcomes(passed=1, failed=1)
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


def check_targeted_cell(store, cells, tmp_path):
    """A targeted cell reports the defender's view and the attacker's, each as ART's numbers recomputed."""
    cell = cells["test_apgd_targeted[cnn-linf-eps0.15-iter5-restarts1-targeted]"]
    metrics = cell.data.metrics
    examples = read_examples(store.download(cell.info.run_id, "adversarial_examples.npz", tmp_path))
    mlflow.set_tracking_uri(store.uri)
    classifier = make_classifier(mlflow.keras.load_model("models:/healthy/1"), 10, (8, 8, 1))
    targets = np.argsort(classifier.predict(examples["x_clean"]), axis=1, kind="stable")[:, -2]  # 2nd likeliest
    adv = classifier.predict(examples["x_adv"]).argmax(1)
    y = examples["y_true"]
    assert metrics["adversarial_accuracy"] == pytest.approx(np.mean(adv == y))  # the defender's view
    assert metrics["targeted_success_rate"] == pytest.approx(np.mean(adv[y != targets] == targets[y != targets]))
    assert 0 < metrics["targeted_success_rate"] < 1
    assert metrics["targeted_success_rate_ci_low"] <= metrics["targeted_success_rate"]
