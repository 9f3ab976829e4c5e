"""Verdicts that can be trusted: gradient masking caught, patches beat their control, EoT, statistics.

Masked models are built the way a user would get them: a trained model (the shared
store's shallow_net) copied with its logits multiplied by 100 before the softmax,
or behind an input quantiser whose gradient is zero, each registered with
``mlflow.tensorflow.log_model`` and tested with ``--model-uri``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import MODEL_NAME, TINY_TRAIN, run_robustness, session_run_id
from pytest_robustness.errors import RobustnessUsageError
from pytest_robustness.metrics import statistics
from pytest_robustness.options.thresholds import Bound, check_bounds, load_table

ROOT = Path(__file__).resolve().parents[1]

# --- statistics on arrays -------------------------------------------------------------------------


def test_wilson_interval_matches_the_closed_form():
    low, high = statistics.wilson_interval(0.5, 100)
    assert (round(low, 4), round(high, 4)) == (0.4038, 0.5962)
    low, high = statistics.wilson_interval(0.0, 50)
    assert low == 0.0 and 0.07 < high < 0.072  # Wilson never collapses to a point at 0
    assert all(np.isnan(v) for v in statistics.wilson_interval(0.5, 0))


def test_identical_candidate_never_fails_the_paired_test():
    rng = np.random.default_rng(0)
    for n in (10, 100, 1000):
        correct = rng.random(n) < 0.7
        comparison = statistics.mcnemar(correct, correct)
        assert comparison.p_value == 1.0 and comparison.difference == 0.0
        assert not statistics.regression(comparison, 0.0, 0.05)


def test_worse_by_five_points_on_1000_images_fails_and_noise_does_not():
    rng = np.random.default_rng(1)
    baseline = rng.random(1000) < 0.8
    worse = baseline.copy()
    worse[np.flatnonzero(baseline)[:50]] = False  # 50 of 1,000 images newly wrong
    comparison = statistics.mcnemar(worse, baseline)
    assert comparison.difference == pytest.approx(-0.05) and comparison.p_value < 1e-10
    assert statistics.regression(comparison, 0.02, 0.05)
    # Worse by 0.03 on 100 images (3 vs 0 discordant): beyond the tolerance but not significant.
    small_base = baseline[:100]
    small = small_base.copy()
    small[np.flatnonzero(small_base)[:3]] = False
    noisy = statistics.mcnemar(small, small_base)
    assert noisy.difference < -0.02 and noisy.p_value > 0.05 and not statistics.regression(noisy, 0.02, 0.05)


def test_sample_size_to_resolve_a_tolerance():
    needed = statistics.images_to_resolve(0.02, 0.04, 0.05)
    assert 700 < needed < 900  # Connor 1987: (1.96 * 0.2 + 0.84 * 0.199)^2 / 0.0004
    assert "needs about" in statistics.resolution_note(100, 0.02, 0.04, 0.05)
    assert statistics.resolution_note(needed, 0.02, 0.04, 0.05) == ""
    bits = statistics.pack(np.array([True, False, True]))
    assert statistics.unpack(bits, 3).tolist() == [True, False, True]


def test_confidence_floors_use_the_lower_bound(tmp_path):
    path = tmp_path / "thresholds.toml"
    path.write_text('[[thresholds]]\nattack = "fgm"\nconfidence = 0.95\nadversarial_accuracy = 0.5\n')
    (entry,) = load_table(path, tmp_path, 0.02).entries
    assert entry.confidence == 0.95
    bound = Bound("adversarial_accuracy", ">=", 0.5, "thresholds.toml entry 1", 0.95)
    assert check_bounds({"adversarial_accuracy": 0.56}, [bound], {"adversarial_accuracy": 1000}) == []
    (failure,) = check_bounds({"adversarial_accuracy": 0.56}, [bound], {"adversarial_accuracy": 100})
    assert failure.startswith("adversarial_accuracy 0.95 lower confidence bound 0.4623 (observed 0.5600 on 100 "
                              "images) < 0.5000")
    for bad, said in (("1.5", "confidence = 1.5; expected a level strictly between 0 and 1"),
                      ('"high"', "confidence = 'high'; expected a level"),
                      ("0.9\nl_inf_norm = 0.1", "confidence applies to proportions of images")):
        path.write_text(f'[[thresholds]]\nattack = "fgm"\nconfidence = {bad}\n')
        with pytest.raises(RobustnessUsageError, match=said):
            load_table(path, tmp_path, 0.02)


# --- gradient masking, end to end --------------------------------------------------------------

MASKING_SUITE = '''
import pytest


@pytest.mark.fgm
def test_fgm_robust(robustness):
    result = robustness.attack("fgm", eps=0.3)
    robustness.check(result, clean_accuracy=0.2, adversarial_accuracy=0.25)
'''


@keras.saving.register_keras_serializable(package="test_trust")
class QuantiseInput(keras.layers.Layer):
    """Rounds pixels to 8-bit levels (MNIST's own: the same predictions); its gradient is exactly zero,
    a classic masking defence."""

    def call(self, inputs):
        levels = 255.0
        return tf.stop_gradient(tf.round(inputs * levels) / levels) + 0.0 * inputs


def _register(store, name: str, model) -> str:
    import mlflow

    mlflow.set_tracking_uri(store.uri)
    with mlflow.start_run(experiment_id=store.client.get_experiment_by_name("mnist").experiment_id):
        mlflow.tensorflow.log_model(model, name="model", registered_model_name=name)
    return f"models:/{name}/1"


def _trained(store):
    import mlflow

    mlflow.set_tracking_uri(store.uri)
    return mlflow.tensorflow.load_model(f"models:/{MODEL_NAME}/1")


def saturated_copy(model):
    """The same model with its logits multiplied by 100 before the softmax: identical labels."""
    last = model.layers[-1]
    logits = keras.layers.Dense(last.units, name="logits")(model.layers[-2].output)
    outputs = keras.layers.Softmax()(keras.layers.Rescaling(100.0)(logits))
    copy = keras.Model(model.inputs, outputs)
    copy.get_layer("logits").set_weights(last.get_weights())
    return copy


def quantised_copy(model):
    inputs = keras.Input(model.input_shape[1:])
    return keras.Model(inputs, model(QuantiseInput()(inputs)))


def test_saturated_softmax_is_not_passed_as_robust(pytester, trained_store):
    uri = _register(trained_store, "saturated_shallow_net", saturated_copy(_trained(trained_store)))
    pytester.makepyfile(test_masking=MASKING_SUITE)
    result = run_robustness(pytester, "--model-uri", uri, "--robustness-cache", "off", store=trained_store)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    # Caught by the probe while attacks differentiate the softmax; once they use the logits, by the floor.
    assert "suspected gradient masking: zero_gradient" in out or "adversarial_accuracy 0." in out


def test_zero_gradient_quantiser_fails_with_suspected_gradient_masking(pytester, trained_store):
    uri = _register(trained_store, "quantised_shallow_net", quantised_copy(_trained(trained_store)))
    pytester.makepyfile(test_masking=MASKING_SUITE)
    result = run_robustness(pytester, "--model-uri", uri, store=trained_store)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*suspected gradient masking: zero_gradient: the input gradient is exactly zero "
                                 "on 1.000 of 100 images*unbounded: PGD with an unbounded budget*"])
    (run,) = trained_store.children(session_run_id(result))
    assert run.data.metrics["masking_zero_gradient_fraction"] == 1.0
    assert "zero_gradient" in run.data.tags["robustness.gradient_masking"]
    assert run.info.status == "FAILED"

    warned = run_robustness(pytester, "--model-uri", uri, "--gradient-masking", "warn", "-W",
                            "default::pytest_robustness.cells.masking.GradientMaskingWarning", store=trained_store)
    warned.assert_outcomes(passed=1, warnings=1)
    warned.stdout.fnmatch_lines(["*GradientMaskingWarning: suspected gradient masking: zero_gradient*"])


def test_honest_model_is_not_flagged(pytester, trained_store):
    pytester.makepyfile(test_masking=MASKING_SUITE.replace("adversarial_accuracy=0.25", "adversarial_accuracy=0.0"))
    result = run_robustness(pytester, store=trained_store)
    result.assert_outcomes(passed=1)
    (run,) = trained_store.children(session_run_id(result))
    assert run.data.tags["robustness.gradient_masking"] == "none suspected"
    assert run.data.metrics["masking_zero_gradient_fraction"] == 0.0
    assert run.data.metrics["masking_unbounded_accuracy"] <= 0.1


# --- the patch and its control -------------------------------------------------------------------

def _suite_module(name: str):
    spec = importlib.util.spec_from_file_location(f"shipped_{name}", ROOT / "robustness_suites" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_adversarial_patch_beats_its_control_on_the_shipped_cells(pytester, trained_store):
    shipped = _suite_module("test_patch")
    # The shipped corrupt cells at scale 0.5 (at 0.3 the patch covers 8x8 pixels: its margin over noise is
    # small on the fully trained models and within noise on this tiny one).
    cells = [params for params in shipped.DEPLOYMENTS
             if params["patch_deployment_method"] == "corrupt" and params["patch_scale"] == 0.5]
    pytester.makepyfile(test_patch_control=f'''
import pytest
from pytest_robustness import attack_cases

@pytest.mark.patch
@attack_cases("patch", {cells!r})
def test_patch(robustness, architecture, params):
    result = robustness.attack("patch", **params)
    robustness.check(result, accuracy_below_control=0.0)
''')
    result = run_robustness(pytester, "--attack-backend", "compiled", store=trained_store)
    result.assert_outcomes(passed=len(cells))
    for run in trained_store.children(session_run_id(result)):
        metrics = run.data.metrics
        assert {"control_accuracy", "control_targeted_success_rate"} <= set(metrics)
        # What the shipped cells assert (this tiny model's targeted success is too noisy to compare).
        assert metrics["accuracy_below_control"] == pytest.approx(
            metrics["control_accuracy"] - metrics["adversarial_accuracy"]) and metrics["accuracy_below_control"] > 0
        assert "targeted_success_over_control" in metrics
        assert metrics["targeted_success_rate_ci_low"] <= metrics["targeted_success_rate"]


# --- Expectation over Transformation ------------------------------------------------------------

EOT_SUITE = '''
import pytest
from pytest_robustness import attack_cases, defense_cases

@pytest.mark.fgm
@defense_cases([("gaussian_augmentation", dict(sigma=0.3, eot_samples=1)),
                ("gaussian_augmentation", dict(sigma=0.3, eot_samples=8))], threat_models=["adaptive"])
@attack_cases("fgm", [dict(norm="inf", eps=0.1)])
def test_eot(robustness, architecture, params, defense):
    result = robustness.attack("fgm", **params)
    defended = robustness.defend(result, defense.name, defense.threat_model, **defense)
    robustness.check(defended)  # no floors: it runs the gradient-masking probe on the defended model
'''


@pytest.mark.parametrize("backend", ["art", "compiled"])  # ART's EoT classifier; the kernels' averaged gradient
def test_eot_makes_the_adaptive_attack_on_gaussian_noise_at_least_as_strong(pytester, trained_store, backend):
    pytester.makepyfile(test_eot=EOT_SUITE)
    result = run_robustness(pytester, "--samples", "200", "--attack-backend", backend, store=trained_store)
    result.assert_outcomes(passed=2)
    runs = {r.data.params["gaussian_augmentation.eot_samples"]: r.data.metrics
            for r in trained_store.children(session_run_id(result))}
    single, eot = runs["1"], runs["8"]
    assert "defended_accuracy_std" in eot and eot["defended_accuracy_std"] > 0
    # At least as strong: never above the single draw's 95% interval (on 200 images the two often tie)
    assert eot["defended_accuracy"] <= single["defended_accuracy_ci_high"]
    # the probe attacked the defended model the cell's attack did (ART's BPDA and EoT, or the compiled form)
    for metrics in runs.values():
        assert metrics["masking_fgm_accuracy_eps0.1"] < metrics["masking_clean_accuracy"]


# --- the paired baseline test, end to end ---------------------------------------------------------

def test_candidate_identical_to_the_baseline_passes_the_paired_test(pytester, trained_store):
    pytester.makepyfile(test_masking=MASKING_SUITE.replace("adversarial_accuracy=0.25", "adversarial_accuracy=0.0"))
    uri = f"models:/{MODEL_NAME}/1"
    result = run_robustness(pytester, "--model-uri", uri, "--baseline-uri", uri,
                            "--max-regression", "0.01", store=trained_store)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*fgm linf-eps0.3 *[[]0.*, 0.*[]] (+0.000)*",
                                 "too few images: *adversarial_accuracy: 100 images cannot resolve max_regression "
                                 "0.01 at significance 0.05*it needs about *"])
    runs = trained_store.children(session_run_id(result))
    assert runs[0].data.metrics["adversarial_accuracy_paired_p_value"] == 1.0
    assert runs[0].data.tags["robustness.correctness"] == "correctness.npz"


def test_significance_option_is_validated(pytester):
    pytester.makepyfile(test_masking=MASKING_SUITE)
    result = pytester.runpytest("--significance", "1.5", *TINY_TRAIN)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--significance 1.5: expected a significance level strictly between 0 and 1*"])


def test_the_probe_attacks_fewer_images_only_when_they_are_larger_than_cifar():
    from pytest_robustness.cells.masking import probe_size

    assert probe_size(1000, 28 * 28) == 200 and probe_size(1000, 32 * 32 * 3) == 200
    assert probe_size(1000, 100 * 100 * 3) == 32 and probe_size(1000, 224 * 224 * 3) == 32
    assert probe_size(1000, 64 * 64 * 3) == 50
    assert probe_size(20, 224 * 224 * 3) == 20  # never more than the set
