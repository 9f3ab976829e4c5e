"""Training-time defenses train and register their own model: apply_fit (defended data) and patch training."""

from __future__ import annotations

from helpers import run_robustness, session_run_id

SUITE = '''
from pytest_robustness import attack_cases, defense_cases

AUGMENTED = ("gaussian_augmentation", dict(sigma=0.1, augmentation=True, apply_fit=True, apply_predict=False))
PATCH_TRAINING = ("patch_training", dict(max_iter=2, num_patch=1, epochs=1))


@defense_cases([AUGMENTED], ["oblivious"])
@attack_cases("fgm", [dict(norm="inf", eps=0.1)])
def test_augmented(robustness, architecture, params, defense):
    result = robustness.attack("fgm", **params)
    robustness.defend(result, defense.name, defense.threat_model, **defense)


@defense_cases([PATCH_TRAINING])
@attack_cases("patch", [dict(max_iter=2, patch_scale=0.5, patch_deployment_method="corrupt")])
def test_patch_trained(robustness, architecture, params, defense):
    result = robustness.attack("patch", **params)
    robustness.defend(result, defense.name, defense.threat_model, **defense)
'''


def test_training_defenses_register_their_own_models(pytester, trained_store):
    pytester.makepyfile(test_training=SUITE)
    result = run_robustness(pytester, "-m", "slow", store=trained_store)  # training defenses are marked slow
    result.assert_outcomes(passed=3)
    names = {m.name for m in trained_store.client.search_registered_models()}
    augmented = [n for n in names if n.startswith("mnist_gaussian_augmentation-fit-")]
    patched = [n for n in names if n.startswith("mnist_patch_training-")]
    assert len(augmented) == 1 and augmented[0].endswith("_shallow_net")
    assert len(patched) == 1 and patched[0].endswith("_shallow_net")
    training = {r.info.run_name: r for r in trained_store.training_runs()}
    # 600 training images, each with a noisy copy (Gaussian augmentation) or a patched copy (augment).
    assert training[f"train {augmented[0]}"].data.metrics["defended_training_images"] == 1200
    assert training[f"train {patched[0]}"].data.metrics["patched_training_images"] == 600
    runs = {r.info.run_name: r for r in trained_store.children(session_run_id(result))}
    adaptive = runs["test_patch_trained[shallow_net-scale0.5-corrupt-patch_training-adaptive]"]
    assert adaptive.data.params["defense"] == "patch_training"
    assert adaptive.data.params["defended_model_uri"] == f"models:/{patched[0]}/1"
    assert "defended_accuracy" in adaptive.data.metrics
