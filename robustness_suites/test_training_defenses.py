"""Training-time defenses: patch adversarial training and a model trained on Gaussian-augmented data,
each registered as its own model and attacked by both threat models (slow: each trains a model).

``patch_training`` fine-tunes the plain model on the training set plus patched copies (patches of
the plain model deployed with ``augment``, as Dioptra's patch demos do). ``oblivious`` scores the
undefended model's patch (test_patch.py's, from the memo or cache) on it; ``adaptive`` learns a new
patch against it.
"""

import pytest

from pytest_robustness import attack_cases, defense_cases

PATCH = [dict(max_iter=50, patch_scale=scale, patch_deployment_method="corrupt") for scale in (0.3, 0.5)]
# Accuracy on the patched test set, undefended -> patch-trained, built-in MNIST, seed 0, 1,000 images:
#   le_net      scale 0.3: 0.928 -> 0.957 oblivious, 0.953 adaptive; scale 0.5: 0.676 -> 0.773, 0.728
#   shallow_net scale 0.3: 0.791 -> 0.839 oblivious, 0.793 adaptive; scale 0.5: 0.563 -> 0.613, 0.442
# Floors on the gain, less a margin: against the shipped patch (oblivious) both models are measurably
# more robust. A patch learnt against the patch-trained shallow_net (32 sigmoid units) at scale 0.5
# beats it by more than the original patch beat the original model: asserted only within 0.2.
PATCH_TRAINING_GAIN = {
    ("le_net", 0.3, "oblivious"): 0.01, ("le_net", 0.3, "adaptive"): 0.01,
    ("le_net", 0.5, "oblivious"): 0.05, ("le_net", 0.5, "adaptive"): 0.02,
    ("shallow_net", 0.3, "oblivious"): 0.02, ("shallow_net", 0.3, "adaptive"): -0.05,
    ("shallow_net", 0.5, "oblivious"): 0.02, ("shallow_net", 0.5, "adaptive"): -0.2,
}
CLEAN_FLOORS = {"le_net": 0.9, "shallow_net": 0.75}
DEFAULT_CLEAN_FLOOR = 0.2

# Dioptra's data augmentation: noisy copies added to the training set, nothing at predict time.
# FGM L-inf 0.1, undefended -> trained on augmented data: le_net 0.837 -> 0.898 oblivious, 0.847 adaptive;
# shallow_net 0.451 -> 0.514, 0.421 (clean 0.969 -> 0.972, 0.848 -> 0.890). Only clean accuracy is gated.
AUGMENTED = ("gaussian_augmentation", dict(sigma=0.1, augmentation=True, apply_fit=True, apply_predict=False))


@pytest.mark.patch
@defense_cases(["patch_training"])
@attack_cases("patch", PATCH)
def test_patch_training(robustness, architecture, params, defense):
    result = robustness.attack("patch", **params)
    defended = robustness.defend(result, defense.name, defense.threat_model, **defense)
    robustness.check(defended, clean_accuracy=CLEAN_FLOORS.get(architecture, DEFAULT_CLEAN_FLOOR),
                     accuracy_gain=PATCH_TRAINING_GAIN.get((architecture, params["patch_scale"], defense.threat_model), 0.0))


@pytest.mark.fgm
@defense_cases([AUGMENTED])
@attack_cases("fgm", [dict(norm="inf", eps=0.1)])
def test_augmented_training_fgm(robustness, architecture, params, defense):
    result = robustness.attack("fgm", **params)
    defended = robustness.defend(result, defense.name, defense.threat_model, **defense)
    robustness.check(defended, clean_accuracy=CLEAN_FLOORS.get(architecture, DEFAULT_CLEAN_FLOOR))
