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
# Gain in accuracy on patched images over the undefended model, measured on the built-in MNIST, seed 0.
PATCH_TRAINING_GAIN = {}
CLEAN_FLOORS = {"le_net": 0.9, "shallow_net": 0.75}
DEFAULT_CLEAN_FLOOR = 0.2

# Dioptra's data augmentation: noisy copies added to the training set, nothing at predict time.
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
