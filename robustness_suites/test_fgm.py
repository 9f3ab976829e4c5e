"""FGM evasion suite: every architecture x norm x eps x minimal, as Dioptra's ``fgm`` entry point.

eps is on each norm's own scale (an L2 ball of 0.3 barely moves a 28x28 image),
so the grid pairs each norm with two budgets. Floors are the suite's defaults;
configuration overrides them.
"""

import pytest

from pytest_robustness import attack_cases

FGM_CASES = [
    dict(norm=norm, eps=eps, eps_step=eps_step, minimal=minimal)
    for norm, budgets, eps_step in (("inf", (0.1, 0.3), 0.1), ("2", (1.5, 3.0), 0.5), ("1", (15.0, 30.0), 5.0))
    for eps in budgets
    for minimal in (False, True)
]

# Floors on adversarial accuracy by architecture and (norm, eps): what the default
# training budget reaches on the built-in MNIST (seed 0: le_net 0.84/0.10, 0.81/0.41,
# 0.96; shallow_net 0.45/0.06, 0.62/0.25, 0.84), less a margin for other seeds.
# L1 FGM puts its whole budget on a few pixels, which clipping caps: weak on MNIST.
ADVERSARIAL_FLOORS = {
    "le_net": {("inf", 0.1): 0.7, ("inf", 0.3): 0.05, ("2", 1.5): 0.65, ("2", 3.0): 0.3,
               ("1", 15.0): 0.9, ("1", 30.0): 0.9},
    "shallow_net": {("inf", 0.1): 0.3, ("inf", 0.3): 0.02, ("2", 1.5): 0.45, ("2", 3.0): 0.15,
                    ("1", 15.0): 0.75, ("1", 30.0): 0.75},
}
CLEAN_FLOORS = {"le_net": 0.9, "shallow_net": 0.8}
# The large architectures train on a CPU budget (512 images, 1 epoch): above chance only.
DEFAULT_CLEAN_FLOOR = 0.2


@pytest.mark.fgm
@attack_cases("fgm", FGM_CASES)
def test_fgm(robustness, architecture, params):
    result = robustness.attack("fgm", **params)
    robustness.check(
        result,
        clean_accuracy=CLEAN_FLOORS.get(architecture, DEFAULT_CLEAN_FLOOR),
        adversarial_accuracy=ADVERSARIAL_FLOORS.get(architecture, {}).get((params["norm"], params["eps"]), 0.0),
    )
