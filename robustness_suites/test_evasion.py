"""Evasion suite beyond FGM: PGD (L-inf, L2, random restarts), DeepFool, Carlini-Wagner L2 and the
query-based Square attack, every architecture; PGD must be at least as strong as FGM at the same eps.

Square uses only predictions: a defense that stops the gradient attacks but not Square masks
gradients rather than being robust. CW-L2 is slow on CPU (ART's numpy loop): marked ``slow``.
Floors are measured on the built-in MNIST (seed 0, default training) and set below them with a margin.
"""

import pytest

from pytest_robustness import attack_cases

# PGD at FGM's budgets (test_fgm.py), 10 iterations of a quarter of eps (L-inf) or a third (L2).
PGD_CASES = [dict(norm="inf", eps=0.1, eps_step=0.025), dict(norm="inf", eps=0.3, eps_step=0.075),
             dict(norm="inf", eps=0.3, eps_step=0.075, num_random_init=1),
             dict(norm="2", eps=1.5, eps_step=0.5), dict(norm="2", eps=3.0, eps_step=1.0)]
FGM_EPS_STEP = {"inf": 0.1, "2": 0.5}  # as in test_fgm.py: the same FGM examples, from the memo or cache

# Floors on adversarial accuracy by (norm, eps, restarts): seed 0, default training, 1,000 test images:
# le_net 0.744 / 0.015 / 0.013 (L-inf 0.1, 0.3, 0.3 with a restart), 0.604 / 0.055 (L2 1.5, 3.0) against
# FGM's 0.837 / 0.097 / 0.806 / 0.408; shallow_net 0.425 / 0.038 / 0.037, 0.479 / 0.099 against FGM's
# 0.451 / 0.063 / 0.615 / 0.250; less a margin for other seeds.
PGD_FLOORS = {
    "le_net": {("inf", 0.1, 0): 0.6, ("inf", 0.3, 0): 0.0, ("inf", 0.3, 1): 0.0, ("2", 1.5, 0): 0.5, ("2", 3.0, 0): 0.02},
    "shallow_net": {("inf", 0.1, 0): 0.3, ("inf", 0.3, 0): 0.01, ("inf", 0.3, 1): 0.01, ("2", 1.5, 0): 0.35,
                    ("2", 3.0, 0): 0.05},
}
# DeepFool flips nearly every image (adversarial accuracy le_net 0.018, shallow_net 0.088); the median L2
# it needs, linearising the logits, is le_net 2.04, shallow_net 1.16 (on softmax outputs, before attacks used
# logits, a saturated softmax made it overshoot to 15.3 for le_net). Floors: those less a margin.
DEEPFOOL_L2_FLOORS = {"le_net": 1.5, "shallow_net": 0.8}
# Square, 50 query iterations, L-inf: le_net 0.947 / 0.612 (eps 0.1 / 0.3), shallow_net 0.785 / 0.286.
SQUARE_FLOORS = {"le_net": {0.1: 0.85, 0.3: 0.5}, "shallow_net": {0.1: 0.65, 0.3: 0.18}}
# CW-L2 (2 searches x 10 steps) runs ART's eager loop (the whole test set takes tens of minutes on CPU): the
# first CW_L2_IMAGES test images only, unless --samples says otherwise. On the logits it leaves le_net 0.03 and
# shallow_net 0.16 (le_net 71 s); floors below those by about three standard errors of 100 images.
CW_L2_IMAGES = 100
CW_L2_FLOORS = {"le_net": 0.0, "shallow_net": 0.05}
CLEAN_FLOORS = {"le_net": 0.9, "shallow_net": 0.8}
DEFAULT_CLEAN_FLOOR = 0.2


@pytest.mark.evasion
@attack_cases("pgd", PGD_CASES)
def test_pgd(robustness, architecture, params):
    result = robustness.attack("pgd", **params)
    fgm = robustness.measure("fgm", norm=params["norm"], eps=params["eps"], eps_step=FGM_EPS_STEP[params["norm"]])
    robustness.log_metrics({"fgm_adversarial_accuracy": fgm.metrics["adversarial_accuracy"]})
    robustness.check(result, clean_accuracy=CLEAN_FLOORS.get(architecture, DEFAULT_CLEAN_FLOOR),
                     adversarial_accuracy=PGD_FLOORS.get(architecture, {}).get(
                         (params["norm"], params["eps"], params.get("num_random_init", 0)), 0.0))
    assert result.metrics["adversarial_accuracy"] <= fgm.metrics["adversarial_accuracy"], (
        f"PGD {params} is weaker than FGM at the same eps: adversarial accuracy "
        f"{result.metrics['adversarial_accuracy']:.4f} > FGM's {fgm.metrics['adversarial_accuracy']:.4f}")


@pytest.mark.evasion
@attack_cases("deepfool", [dict(max_iter=10)])
def test_deepfool(robustness, architecture, params):
    """A minimal-perturbation attack: nearly every image flips; robustness is the L2 distance it needs."""
    result = robustness.attack("deepfool", **params)
    robustness.check(result, clean_accuracy=CLEAN_FLOORS.get(architecture, DEFAULT_CLEAN_FLOOR),
                     l_2_norm_median=DEEPFOOL_L2_FLOORS.get(architecture, 0.0))


@pytest.mark.evasion
@attack_cases("square", [dict(norm="inf", eps=0.1, max_iter=50), dict(norm="inf", eps=0.3, max_iter=50)])
def test_square(robustness, architecture, params):
    result = robustness.attack("square", **params)
    robustness.check(result, clean_accuracy=CLEAN_FLOORS.get(architecture, DEFAULT_CLEAN_FLOOR),
                     adversarial_accuracy=SQUARE_FLOORS.get(architecture, {}).get(params["eps"], 0.0))


@pytest.mark.slow
@pytest.mark.evasion
@attack_cases("cw_l2", [dict(binary_search_steps=2, max_iter=10, learning_rate=0.05, initial_const=10.0)])
def test_cw_l2(robustness, architecture, params):
    result = robustness.attack("cw_l2", max_samples=CW_L2_IMAGES, **params)
    robustness.check(result, clean_accuracy=CLEAN_FLOORS.get(architecture, DEFAULT_CLEAN_FLOOR),
                     adversarial_accuracy=CW_L2_FLOORS.get(architecture, 0.0))
