"""The AutoAttack cell on a user's model (``--model-uri cnn=models:/...``, keras flavor, logits): its
``robust_accuracy`` is ART's ``AutoAttack`` run with the same attacks on the same model, images and seed,
never above PGD's or Square's accuracy in the same session, and it goes into JUnit, MLflow, the summary
and the per-image attribution. Real sqlite MLflow store, real Keras model, ART 1.20's classes; no mocks.
"""

from __future__ import annotations

import csv
import sys
import types
import xml.etree.ElementTree as ET

import keras
import mlflow
import numpy as np
import pytest
import tensorflow as tf
from art.attacks.evasion import AutoAttack
from test_user_models import PIP, digits_logits_cnn, register_keras

from pytest_robustness.attacks.autoattack import AUTOATTACK, art_stages, stage_names
from pytest_robustness.data.example_files import read_examples
from pytest_robustness.models.classifiers import make_classifier

SAMPLES = 40
AA_ATTACKS = "apgd-ce,apgd-t,deepfool,square"
AA = dict(norm="inf", eps=0.15, max_iter=10, n_target_classes=3, square_queries=30)
SUITE = f'''
from pytest_robustness import attack_cases

AA = {AA!r}


@attack_cases("autoattack", [AA])
def test_aa(robustness, architecture, params):
    result = robustness.attack("autoattack", **params)
    pgd = robustness.measure("pgd", norm="inf", eps=AA["eps"], eps_step=0.05, max_iter=10)
    square = robustness.measure("square", norm="inf", eps=AA["eps"], max_iter=30)
    robustness.log_metrics({{"pgd_adversarial_accuracy": pgd.metrics["adversarial_accuracy"],
                            "square_adversarial_accuracy": square.metrics["adversarial_accuracy"]}})
    robustness.check(result, robust_accuracy=0.0)
'''


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    store, npz, model = digits_logits_cnn(tmp_path_factory.mktemp("aa_user"))
    register_keras(store, model, "user_logits")
    return store, npz


def art_autoattack(store, run, tmp_path):
    """ART's AutoAttack with the ensemble's attacks (ART's classes) on what MLflow holds, seeded as the harness."""
    sys.modules.setdefault("multiprocess", types.ModuleType("multiprocess"))  # imported for ART's parallel mode only
    mlflow.set_tracking_uri(store.uri)
    model = mlflow.keras.load_model(run.data.params["model_uri"])
    examples = read_examples(store.download(run.info.run_id, "adversarial_examples.npz", tmp_path / run.info.run_id))
    classifier = make_classifier(model, 10, (8, 8, 1))
    params = AUTOATTACK.resolve(AA)
    table = art_stages(classifier, classifier.model, params)
    keras.utils.set_random_seed(0)  # --robustness-seed 0
    attack = AutoAttack(classifier, norm=np.inf, eps=AA["eps"], eps_step=2 * AA["eps"], batch_size=32,
                        attacks=[table[name]() for name in stage_names(params["attacks"])])
    x_adv = attack.generate(examples["x_clean"])
    y = examples["y_true"]
    robust = (classifier.predict(examples["x_clean"]).argmax(1) == y) & (classifier.predict(x_adv).argmax(1) == y)
    return examples, x_adv, float(robust.mean()), attack.best_attacks


def test_robust_accuracy_is_arts_autoattack_on_a_users_model(pytester, user, tmp_path):
    store, npz = user
    pytester.makepyfile(test_aa=SUITE)
    result = pytester.runpytest("--attack-backend", "compiled", "-p", "no:cacheprovider", "-W",
                                "ignore::pytest.PytestAssertRewriteWarning", "--samples", str(SAMPLES),
                                "--dataset", str(npz), "--mlflow-uri", store.uri, "--junitxml", "aa.xml",
                                "--model-uri", "cnn=models:/user_logits/1", "--robustness-cache", "off")
    result.assert_outcomes(passed=1)
    runs = [r for r in store.runs("digits") if r.data.tags.get("robustness.kind") == "test"]
    run = max(runs, key=lambda r: r.info.start_time)
    metrics = run.data.metrics
    examples, x_adv, reference, best = art_autoattack(store, run, tmp_path)
    assert metrics["robust_accuracy"] == pytest.approx(reference, abs=1e-9)
    np.testing.assert_allclose(examples["x_adv"], x_adv, atol=1e-4)
    # the per-image worst case can only be lower than any one attack's accuracy
    assert metrics["robust_accuracy"] <= metrics["pgd_adversarial_accuracy"]
    assert metrics["robust_accuracy"] <= metrics["square_adversarial_accuracy"]
    assert metrics["robust_accuracy"] < metrics["clean_accuracy"]  # it attacked
    assert metrics["randomised"] == 0.0 and run.data.params["autoattack.stages"] == ",".join(stage_names(AA_ATTACKS))
    stages = stage_names(AUTOATTACK.resolve(AA)["attacks"])
    assert metrics[f"robust_accuracy/after_{stages[-1]}"] == pytest.approx(metrics["robust_accuracy"])
    assert metrics["robust_accuracy_ci_low"] <= metrics["robust_accuracy"] <= metrics["robust_accuracy_ci_high"]
    # which attack broke each image: ART's bookkeeping, image by image
    rows = list(csv.DictReader(open(store.download(run.info.run_id, "autoattack_broken_by.csv", tmp_path / "csv"))))
    assert len(rows) == SAMPLES
    clean_ok = np.array([r["true"] == r["clean_prediction"] for r in rows])
    ours = [r["broken_by"] for r in rows]
    theirs = [("misclassified" if not ok else stages[b] if b >= 0 else "robust") for ok, b in zip(clean_ok, best)]
    assert ours == theirs
    for stage in stages:
        assert metrics[f"broken_by/{stage}"] == pytest.approx(ours.count(stage) / SAMPLES)
    summary = open(store.download(run.info.run_id, "autoattack_summary.md", tmp_path / "md")).read()
    assert f"| **robust_accuracy** | {ours.count('robust')} robust | {metrics['robust_accuracy']:.4f} |" in summary
    # JUnit and the gate's summary row carry robust_accuracy
    props = {p.get("name"): p.get("value") for p in ET.parse(pytester.path / "aa.xml").getroot().iter("property")}
    assert float(props["robust_accuracy"]) == pytest.approx(metrics["robust_accuracy"], abs=1e-6)
    assert float(props["robustness.value"]) == pytest.approx(metrics["robust_accuracy"], abs=1e-6)


def test_a_robust_accuracy_threshold_fails_the_cell_and_the_baseline_is_compared_image_by_image(pytester, user):
    store, npz = user
    pytester.makepyfile(test_aa=SUITE.replace("AA = {", 'AA = {"attacks": "apgd-ce", ').replace("max_iter=30", "max_iter=3"))
    pytester.makefile(".toml", thresholds='[[thresholds]]\nattack = "autoattack"\nrobust_accuracy = 0.99\n')
    result = pytester.runpytest("--attack-backend", "compiled", "-p", "no:cacheprovider", "-W",
                                "ignore::pytest.PytestAssertRewriteWarning", "--samples", str(SAMPLES),
                                "--dataset", str(npz), "--mlflow-uri", store.uri, "--thresholds", "thresholds.toml",
                                "--model-uri", "cnn=models:/user_logits/1", "--baseline-uri", "cnn=models:/user_logits/1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*robust_accuracy*0.99*"])
    run = max([r for r in store.runs("digits") if r.data.tags.get("robustness.kind") == "test"],
              key=lambda r: r.info.start_time)
    # the baseline (here the same model) on the same images: McNemar on robust_accuracy, image by image
    assert run.data.metrics["robust_accuracy_paired_difference"] == 0.0
    assert run.data.metrics["robust_accuracy_paired_p_value"] == 1.0
    assert run.data.metrics["baseline_robust_accuracy"] == run.data.metrics["robust_accuracy"]


@keras.saving.register_keras_serializable(package="robustness_tests")
class AlwaysNoise(keras.layers.Layer):
    """Gaussian noise at inference too (keras.layers.GaussianNoise is off outside training): a user's
    model with randomness inside, no defense declared."""

    def __init__(self, stddev=0.3, **kwargs):
        super().__init__(**kwargs)
        self.stddev = stddev

    def call(self, x, training=None):
        return x + tf.random.normal(tf.shape(x), stddev=self.stddev)

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev}


def test_a_model_with_noise_at_inference_is_flagged_and_judged_on_every_draw(pytester, user, tmp_path):
    store, npz = user
    mlflow.set_tracking_uri(store.uri)
    try:
        logits = mlflow.keras.load_model("models:/user_logits/1")
        noisy = keras.Sequential([keras.Input((8, 8, 1)), AlwaysNoise(0.3), logits])
        with mlflow.start_run():
            mlflow.keras.log_model(noisy, name="model", registered_model_name="user_noisy", pip_requirements=PIP)
    finally:
        mlflow.set_tracking_uri(None)
    pytester.makepyfile(test_aa=SUITE.replace("AA = {", 'AA = {"eot_draws": 4, '))
    result = pytester.runpytest("--attack-backend", "compiled", "-p", "no:cacheprovider", "-W",
                                "ignore::pytest.PytestAssertRewriteWarning", "--samples", str(SAMPLES),
                                "--dataset", str(npz), "--mlflow-uri", store.uri,
                                "--model-uri", "cnn=models:/user_noisy/1", "--robustness-cache", "off")
    result.assert_outcomes(passed=1)
    run = max([r for r in store.runs("digits") if r.data.tags.get("robustness.kind") == "test"],
              key=lambda r: r.info.start_time)
    params, metrics = run.data.params, run.data.metrics
    assert params["autoattack.randomised"] == "true" and metrics["randomised"] == 1.0
    assert params["autoattack.stages"] == "apgd-ce,apgd-dlr"  # the rand version, with EoT gradients
    assert params["autoattack.eot_draws"] == "4"
    # the worst case over draws: never above one draw's accuracy
    assert metrics["robust_accuracy"] <= metrics["adversarial_accuracy"]
    assert metrics["robust_accuracy"] <= metrics["robust_accuracy/after_apgd-dlr"]
    rows = list(csv.DictReader(open(store.download(run.info.run_id, "autoattack_broken_by.csv", tmp_path / "csv"))))
    assert [r["broken_by"] for r in rows].count("robust") == round(metrics["robust_accuracy"] * SAMPLES)
    summary = open(store.download(run.info.run_id, "autoattack_summary.md", tmp_path / "md")).read()
    assert "randomised model: the rand version (EoT over 4 draws" in summary
