"""Adversarial patch suite: Dioptra's gen_patch + deploy_patch, every architecture x deployment.

The patch is generated once per model (and generation parameters) and shared
by every cell here and in test_defenses.py; deployment is per cell. Each cell
logs the patch (patch.png), a grid of clean/patched samples with their
predictions (samples.png), the distance table and ``targeted_success_rate``.
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

# Floors on adversarial accuracy (over the whole deployed set) by patch scale: measured
# on the built-in MNIST, seed 0 (le_net 0.925 at scale 0.3, 0.72 at 0.5; shallow_net
# 0.81 / 0.64; augment and a rate of 0.5 keep clean images, so they score higher), less
# a margin for other seeds. A 50-step patch mostly occludes: targeted success is ~2-7%.
ADVERSARIAL_FLOORS = {"le_net": {0.3: 0.8, 0.5: 0.6}, "shallow_net": {0.3: 0.65, 0.5: 0.5}}
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
    )
