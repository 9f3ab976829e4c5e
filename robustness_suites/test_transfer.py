"""Transfer suite: Dioptra's first demo (FGM crafted on one model, ``infer`` on another), as a matrix.

For every ordered pair of selected architectures (source, target), a model with itself
included, the FGM L-inf sweep of test_defenses.py (eps 0.1 and 0.3 are test_fgm.py's) and
test_patch.py's patch settings are crafted on the source and judged on the target. The
examples are the very ones test_fgm.py/test_patch.py/test_defenses.py craft (same memo and
cache keys), so the matrix costs predictions only. Each cell logs the target's
``clean_accuracy``, its ``adversarial_accuracy`` on the transferred examples and
``transfer_rate`` (of the examples that fool the source, the fraction that also fool the
target); the session run gets one heatmap and CSV per setting (``transfer_matrix/``).

With ``--baseline-uri``, ``test_*_from_baseline`` judge the candidate on the examples crafted
on the baseline (read back from the baseline's gated runs when they exist): last release's
adversarial set as a fixed regression set. Without it they are skipped.
"""

import pytest

from pytest_robustness import attack_cases

# The same settings as the white-box suites: the same examples.
FGM_SWEEP = [dict(norm="inf", eps=eps) for eps in (0.1, 0.2, 0.3)]
PATCH_GENERATION = dict(max_iter=50)
PATCH_DEPLOYMENTS = [
    dict(PATCH_GENERATION, patch_scale=scale, patch_deployment_method=method)
    for scale in (0.3, 0.5)
    for method in ("corrupt", "augment")
] + [dict(PATCH_GENERATION, patch_scale=0.5, patch_deployment_method="corrupt", patch_application_rate=0.5)]

# The target's clean accuracy does not depend on the source: test_fgm.py's floors.
CLEAN_FLOORS = {"le_net": 0.9, "shallow_net": 0.8}
DEFAULT_CLEAN_FLOOR = 0.2  # large architectures on a CPU budget: above chance only

# Floors on the target's adversarial accuracy by (source, target) and eps. Measured on the
# built-in MNIST, seed 0, default training (`pytest robustness_suites -m transfer`, README):
#                                eps 0.1  eps 0.2  eps 0.3
#   le_net -> le_net (white-box)   0.837    0.431    0.097
#   le_net -> shallow_net          0.758    0.566    0.317
#   shallow_net -> le_net          0.952    0.869    0.556
#   shallow_net -> shallow_net     0.451    0.128    0.063   (white-box)
# Every transferred cell is above its target's white-box cell: examples crafted on the
# 32-unit shallow_net barely fool le_net at small eps (transfer rate 0.08 at eps 0.1, 0.47 at
# 0.3), le_net's fool shallow_net more often (0.67-0.74). Floors: the measured value less a
# margin for other seeds (white-box at eps 0.1 and 0.3: test_fgm.py's floors). Clean accuracy:
# le_net 0.969, shallow_net 0.848 (whatever the source).
FGM_FLOORS = {
    ("le_net", "le_net"): {0.1: 0.7, 0.2: 0.3, 0.3: 0.05},
    ("le_net", "shallow_net"): {0.1: 0.6, 0.2: 0.4, 0.3: 0.2},
    ("shallow_net", "le_net"): {0.1: 0.85, 0.2: 0.7, 0.3: 0.4},
    ("shallow_net", "shallow_net"): {0.1: 0.3, 0.2: 0.05, 0.3: 0.02},
}
# Patches by target and scale, test_patch.py's floors: a 50-step patch mostly occludes, so it
# hurts a target about as much whichever model learnt it (measured: scale 0.3 0.907-0.949 on
# le_net, 0.791-0.825 on shallow_net; scale 0.5 0.676-0.826 and 0.563-0.721, the lowest with
# corrupt at rate 1; augment and a rate of 0.5 keep clean images and score higher).
PATCH_FLOORS = {"le_net": {0.3: 0.8, 0.5: 0.6}, "shallow_net": {0.3: 0.65, 0.5: 0.5}}


@pytest.mark.transfer
@pytest.mark.fgm
@attack_cases("fgm", FGM_SWEEP)
def test_fgm_transfer(robustness, source_architecture, architecture, params):
    result = robustness.transfer("fgm", source_architecture, **params)
    robustness.check(
        result,
        clean_accuracy=CLEAN_FLOORS.get(architecture, DEFAULT_CLEAN_FLOOR),
        adversarial_accuracy=FGM_FLOORS.get((source_architecture, architecture), {}).get(params["eps"], 0.0),
    )


@pytest.mark.transfer
@pytest.mark.patch
@attack_cases("patch", PATCH_DEPLOYMENTS)
def test_patch_transfer(robustness, source_architecture, architecture, params):
    result = robustness.transfer("patch", source_architecture, **params)
    robustness.check(
        result,
        clean_accuracy=CLEAN_FLOORS.get(architecture, DEFAULT_CLEAN_FLOOR),
        adversarial_accuracy=PATCH_FLOORS.get(architecture, {}).get(params["patch_scale"], 0.0),
    )


# Examples crafted on the baseline, judged on the candidate. A candidate that is the
# baseline sees its own white-box examples; another model sees transferred ones, which
# fooled every target above less than its own did: the white-box floors bound both.
BASELINE_FGM_FLOORS = {name: FGM_FLOORS[(name, name)] for name in ("le_net", "shallow_net")}


@pytest.mark.transfer
@pytest.mark.fgm
@attack_cases("fgm", FGM_SWEEP)
def test_fgm_from_baseline(robustness, architecture, params):
    result = robustness.transfer_from_baseline("fgm", **params)
    robustness.check(
        result,
        clean_accuracy=CLEAN_FLOORS.get(architecture, DEFAULT_CLEAN_FLOOR),
        adversarial_accuracy=BASELINE_FGM_FLOORS.get(architecture, {}).get(params["eps"], 0.0),
    )


@pytest.mark.transfer
@pytest.mark.patch
@attack_cases("patch", PATCH_DEPLOYMENTS)
def test_patch_from_baseline(robustness, architecture, params):
    result = robustness.transfer_from_baseline("patch", **params)
    robustness.check(
        result,
        clean_accuracy=CLEAN_FLOORS.get(architecture, DEFAULT_CLEAN_FLOOR),
        adversarial_accuracy=PATCH_FLOORS.get(architecture, {}).get(params["patch_scale"], 0.0),
    )
