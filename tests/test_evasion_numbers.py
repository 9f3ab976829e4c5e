"""PGD, Carlini-Wagner L2, DeepFool and Square numbers are ART's own on the registered model and logged samples."""

from __future__ import annotations

import keras
import mlflow
import numpy as np
import pytest
from art.attacks.evasion import CarliniL2Method, DeepFool, ProjectedGradientDescent, SquareAttack
from art.estimators.classification import TensorFlowV2Classifier

from helpers import run_robustness, session_run_id
from pytest_robustness.attacks import get_attack
from pytest_robustness.attacks.base import norm_value
from pytest_robustness.data.adversarial_sets import read_examples
from pytest_robustness.models.classifiers import make_classifier

SUITE = '''
from pytest_robustness import attack_cases


@attack_cases("pgd", [dict(norm="inf", eps=0.1, eps_step=0.03, max_iter=5),
                      dict(norm="2", eps=1.5, eps_step=0.5, max_iter=5, num_random_init=1)])
def test_pgd(robustness, architecture, params):
    robustness.attack("pgd", **params)


@attack_cases("cw_l2", [dict(binary_search_steps=2, max_iter=10, learning_rate=0.05, initial_const=10.0)])
def test_cw(robustness, architecture, params):
    robustness.attack("cw_l2", **params)


@attack_cases("deepfool", [dict(max_iter=5)])
def test_deepfool(robustness, architecture, params):
    robustness.attack("deepfool", **params)


@attack_cases("square", [dict(eps=0.2, max_iter=20)])
def test_square(robustness, architecture, params):
    robustness.attack("square", **params)
'''

ART_CLASSES = {"pgd": ProjectedGradientDescent, "cw_l2": CarliniL2Method, "deepfool": DeepFool, "square": SquareAttack}
FIXED = {"cw_l2": {"targeted": False}}
SAMPLES = 30


def art_reference(store, run, tmp_path):
    """The cell recomputed with ART's class from what MLflow holds, seeded as the harness seeds an attack."""
    params = run.data.params
    attack = params["attack"]
    kwargs = {name: type(p.default)(params[f"{attack}.{name}"]) for name, p in get_attack(attack).params.items()}
    if "norm" in kwargs:
        kwargs["norm"] = norm_value(kwargs["norm"])
    mlflow.set_tracking_uri(store.uri)
    model = mlflow.tensorflow.load_model(params["model_uri"])
    examples = read_examples(store.download(run.info.run_id, "adversarial_examples.npz", tmp_path / run.info.run_id))
    # ART's own classifier class on the harness's logits wrapper (the harness's subclass computes CW's class
    # gradients in one pass: the reference must not share that code)
    classifier = TensorFlowV2Classifier(model=make_classifier(model, 10, (28, 28, 1)).model, nb_classes=10,
                                        input_shape=(28, 28, 1), clip_values=(0.0, 1.0),
                                        loss_object=keras.losses.CategoricalCrossentropy(from_logits=True))
    keras.utils.set_random_seed(0)  # --robustness-seed 0
    x_adv = ART_CLASSES[attack](classifier, **kwargs, **FIXED.get(attack, {}), verbose=False).generate(x=examples["x_clean"])
    accuracy = float(np.mean(classifier.predict(x_adv).argmax(axis=1) == examples["y_true"]))
    return examples, x_adv, accuracy


def cells(store, result):
    return {r.info.run_name: r for r in store.children(session_run_id(result))}


def test_evasion_attacks_equal_arts_classes(pytester, trained_store, tmp_path):
    pytester.makepyfile(test_evasion=SUITE)
    result = run_robustness(pytester, "--samples", str(SAMPLES), "--robustness-cache", "off", store=trained_store)
    result.assert_outcomes(passed=5)
    runs = cells(trained_store, result)
    assert sorted(r.data.params["attack"] for r in runs.values()) == ["cw_l2", "deepfool", "pgd", "pgd", "square"]
    for name, run in runs.items():
        examples, x_adv, accuracy = art_reference(trained_store, run, tmp_path)
        assert len(examples["x_clean"]) == SAMPLES
        np.testing.assert_allclose(examples["x_adv"], x_adv, atol=1e-5, err_msg=name)
        assert run.data.metrics["adversarial_accuracy"] == pytest.approx(accuracy, abs=1e-9), name
        assert run.data.metrics["attack_success_rate"] > 0, name  # it attacked
    assert runs["test_pgd[shallow_net-linf-eps0.1-iter5]"].data.metrics["l_inf_norm_max"] == pytest.approx(0.1, abs=1e-6)
    assert runs["test_pgd[shallow_net-l2-eps1.5-iter5-restarts1]"].data.metrics["l_2_norm_max"] <= 1.5 + 1e-4


def test_compiled_pgd_and_deepfool_agree_with_arts(pytester, trained_store, tmp_path):
    pytester.makepyfile(test_evasion=SUITE)
    result = run_robustness(pytester, "--samples", str(SAMPLES), "--robustness-cache", "off", "--attack-backend",
                            "compiled", "-k", "pgd or deepfool", store=trained_store)
    result.assert_outcomes(passed=3)
    for name, run in cells(trained_store, result).items():
        assert run.data.params["attack_backend"] == "compiled"
        examples, x_adv, accuracy = art_reference(trained_store, run, tmp_path)
        if run.data.params["attack"] == "deepfool":  # ART's arithmetic: the same examples, the same numbers
            np.testing.assert_allclose(examples["x_adv"], x_adv, atol=1e-5, err_msg=name)
            assert run.data.metrics["adversarial_accuracy"] == pytest.approx(accuracy, abs=1e-9), name
        elif run.data.params["pgd.num_random_init"] == "0":  # same start: ART's arithmetic within float rounding
            assert np.mean(np.abs(examples["x_adv"] - x_adv) > 1e-4) < 0.01, name
            assert run.data.metrics["adversarial_accuracy"] == pytest.approx(accuracy, abs=1 / SAMPLES), name
        else:  # random starts drawn by TensorFlow, not numpy: the same strength, not the same draws
            assert run.data.metrics["adversarial_accuracy"] == pytest.approx(accuracy, abs=0.1), name
