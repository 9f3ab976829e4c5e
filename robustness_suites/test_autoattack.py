"""AutoAttack (Croce & Hein 2020): the per-image worst case over APGD-CE, APGD-T (DLR, 9 targets), DeepFool in
FAB-T's place (ART's substitute) and Square, every architecture, at L-inf 0.3 and L2 1.5 on MNIST.

An image is robust only if every attack fails on it, so ``robust_accuracy`` can only be at most what any one
attack leaves: each cell asserts it is not above PGD's or Square's accuracy (``test_evasion.py``'s settings) on
the same images in the session.

The default cells run the standard version's attacks on a quick budget (``QUICK``) on ``AA_IMAGES`` images; the
``slow`` cells run AutoAttack's standard budget (100 APGD iterations, 9 targets, Square's 5,000 queries). Floors measured on the
built-in MNIST (seed 0, default training), set below them with a margin.
"""

import pytest

from pytest_robustness import attack_cases

# AutoAttack's 100 APGD iterations per image (and 9 targets for what survives APGD-CE) take about a second
# per image on this 2-core CPU for le_net: the default cells attack the first AA_IMAGES test images, the
# standard-budget ones STANDARD_IMAGES, unless --samples says otherwise.
AA_IMAGES = 50
STANDARD_IMAGES = 100
# The default cells: no DeepFool (it broke no image DeepFool-only in any measured cell, and an image it cannot
# flip keeps its batch stepping 100 times), 50 APGD iterations, APGD-T's 3 most likely targets, 100 Square queries.
QUICK = dict(attacks="apgd-ce,apgd-t,square", max_iter=50, n_target_classes=3, square_queries=100)
AA_CASES = [dict(norm="inf", eps=0.3, **QUICK), dict(norm="2", eps=1.5, **QUICK)]
SLOW_CASES = [dict(norm="inf", eps=0.3), dict(norm="2", eps=1.5)]
# The single attacks robust_accuracy is compared with, on the same images: PGD and Square as test_evasion.py sets them.
PGD = {"inf": dict(norm="inf", eps=0.3, eps_step=0.075), "2": dict(norm="2", eps=1.5, eps_step=0.5)}
SQUARE = {"inf": dict(norm="inf", eps=0.3, max_iter=50), "2": dict(norm="2", eps=1.5, max_iter=50)}
# Floors on robust_accuracy by (norm, eps), measured (seed 0, default training, the first 100 test images, both
# budgets gave the same numbers): le_net 0.00 / 0.50 (L-inf 0.3 / L2 1.5) against PGD's 0.02 / 0.57 and Square's
# 0.67 / 0.86; shallow_net 0.00 / 0.33 against PGD's 0.04 / 0.48 and Square's 0.40 / 0.84. Less a margin.
ROBUST_FLOORS = {"le_net": {("inf", 0.3): 0.0, ("2", 1.5): 0.35}, "shallow_net": {("inf", 0.3): 0.0, ("2", 1.5): 0.2}}
CLEAN_FLOORS = {"le_net": 0.9, "shallow_net": 0.8}
DEFAULT_CLEAN_FLOOR = 0.2


def check_worst_case(robustness, architecture, params, images):
    result = robustness.attack("autoattack", max_samples=images, **params)
    singles = {"pgd": robustness.measure("pgd", max_samples=images, **PGD[params["norm"]]),
               "square": robustness.measure("square", max_samples=images, **SQUARE[params["norm"]])}
    robustness.log_metrics({f"{name}_adversarial_accuracy": single.metrics["adversarial_accuracy"]
                            for name, single in singles.items()})
    robustness.check(result, clean_accuracy=CLEAN_FLOORS.get(architecture, DEFAULT_CLEAN_FLOOR),
                     robust_accuracy=ROBUST_FLOORS.get(architecture, {}).get((params["norm"], params["eps"]), 0.0))
    for name, single in singles.items():
        assert result.metrics["robust_accuracy"] <= single.metrics["adversarial_accuracy"], (
            f"AutoAttack's robust accuracy {result.metrics['robust_accuracy']:.4f} is above {name}'s "
            f"{single.metrics['adversarial_accuracy']:.4f} at the same eps: the worst case can only be lower")
    return result


@pytest.mark.autoattack
@attack_cases("autoattack", AA_CASES)
def test_autoattack(robustness, architecture, params):
    check_worst_case(robustness, architecture, params, AA_IMAGES)


@pytest.mark.slow
@pytest.mark.autoattack
@attack_cases("autoattack", SLOW_CASES)
def test_autoattack_standard(robustness, architecture, params):
    """AutoAttack's standard budget: Square with 5,000 queries on what APGD and DeepFool left."""
    check_worst_case(robustness, architecture, params, STANDARD_IMAGES)
