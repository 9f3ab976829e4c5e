"""Adversarial patch suite: Dioptra's gen_patch + deploy_patch, every architecture x deployment.

The patch is generated once per model (and generation parameters) and shared
by every cell here and in test_defenses.py; deployment is per cell. Each cell
logs the patch (patch.png), a grid of clean/patched samples with their
predictions (samples.png), the distance table and ``targeted_success_rate``, and deploys a
random-noise control patch the same way (``control_accuracy``): the cell asserts that the
adversarial patch beats its control at what it is optimised for, bringing images to its target
class (``targeted_success_over_control``), not only that it occludes. Accuracy below the
control's stays a logged metric (``accuracy_below_control``) but is no verdict: on two classes a
targeted patch cannot bring accuracy below 0.5 while a noise patch damages both classes.
"""

import pytest

from pytest_robustness import attack_cases

# Dioptra's budget: 500 optimisation steps at learning rate 5 on 10 generation images.
GENERATION = dict(max_iter=500, learning_rate=5.0)

DEPLOYMENTS = [
    dict(GENERATION, patch_scale=scale, patch_deployment_method=method)
    for scale in (0.3, 0.5)
    for method in ("corrupt", "augment")
] + [dict(GENERATION, patch_scale=0.5, patch_deployment_method="corrupt", patch_application_rate=0.5)]

# Floors on adversarial accuracy (over the whole deployed set) by patch scale: measured on the
# built-in MNIST, seed 0, with Dioptra's budget (corrupt, rate 1: le_net 0.893 at scale 0.3, 0.624
# at 0.5; shallow_net 0.777 / 0.562; augment and a rate of 0.5 keep clean images, so they score
# higher), less a margin for other seeds. Generating one patch takes 8 s (shallow_net) to 20 s
# (le_net) on the compiled backend on a loaded 2-core CPU. Dioptra's demo reports 0.364 accuracy
# on LeNet; this harness's patch does not reach it: targeted success is 0.027 (scale 0.3) and 0.070
# (scale 0.5) on le_net, 0.020 / 0.076 on shallow_net (more generation images or a generation scale
# range matching the deployment measured no better).
ADVERSARIAL_FLOORS = {"le_net": {0.3: 0.8, 0.5: 0.5}, "shallow_net": {0.3: 0.65, 0.5: 0.45}}
# The adversarial patch must beat its control (uniform noise, same size and placement) at bringing
# the patched images to the target class, on every number of classes: targeted success is over the
# patched images whose label is not the target, for both patches. Measured (corrupt, rate 1, 1,000
# test images) le_net 0.027 - 0.008 = 0.019 at scale 0.3 and 0.070 - 0.017 = 0.053 at 0.5;
# shallow_net 0.020 - 0.024 = -0.004 and 0.076 - 0.034 = 0.042, less a margin (standard error
# of a difference about 0.01, 0.013 at a rate of 0.5): at scale 0.3 the patch does not beat noise on
# shallow_net, so its floor only asks that it is not clearly worse. Any other architecture (a user's model) must at least match its control.
CONTROL_MARGINS = {"le_net": {0.3: 0.0, 0.5: 0.02}, "shallow_net": {0.3: -0.02, 0.5: 0.015}}
CLEAN_FLOORS = {"le_net": 0.9, "shallow_net": 0.8}
# The large architectures train on a CPU budget (512 images, 1 epoch): above chance only.
DEFAULT_CLEAN_FLOOR = 0.2


@pytest.mark.patch
@attack_cases("patch", DEPLOYMENTS)
def test_patch(robustness, architecture, params):
    result = robustness.attack("patch", **params)
    robustness.check(
        result,
        clean_accuracy=CLEAN_FLOORS.get(architecture, DEFAULT_CLEAN_FLOOR),
        adversarial_accuracy=ADVERSARIAL_FLOORS.get(architecture, {}).get(params["patch_scale"], 0.0),
        targeted_success_over_control=CONTROL_MARGINS.get(architecture, {}).get(params["patch_scale"], 0.0),
    )
