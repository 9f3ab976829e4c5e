"""Patch adversarial training, as Dioptra's patch demos do it: a training recipe registered as its own model.

Patches are generated on the plainly trained model of the same architecture (the
very patches the patch suite makes with the same generation parameters: shared
memo and cache), deployed with ``augment`` onto the training images (each
original kept, a patched copy added beside it, labelled with the true class), and
the plain model is fine-tuned on that set. The result is registered as
``{experiment}_patch_training_{architecture}`` and attacked by both threat models:
``oblivious`` scores the undefended model's patches on it, ``adaptive`` learns new
patches against it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from ..models.recipes import register_recipe
from ..models.slot import ModelSlot
from ..models.training import fit, training_subset
from ..params import numeric
from .defense import Defense

PARAMS = {
    "max_iter": numeric(50, 1, integer=True, doc="optimisation steps of each training patch"),
    "num_patch": numeric(3, 1, integer=True, doc="patches to train against (each on its own sample draw)"),
    "patch_scale": numeric(0.4, 0, 1, low_open=True, doc="size of the deployed training patches"),
    "epochs": numeric(2, 1, integer=True, doc="fine-tuning epochs on the augmented training set"),
}
DEFAULTS = {name: p.default for name, p in PARAMS.items()}


def patch_training(session, model, architecture: str, training, *, params: Mapping[str, Any]) -> dict[str, float]:
    """Fine-tune the plain model on originals + patched copies (Dioptra's ``augment`` deployment)."""
    data = session.dataset
    model.set_weights(session.model(architecture).model.get_weights())
    generation = {"max_iter": params["max_iter"], "num_patch": params["num_patch"]}
    run = session.attack_run(ModelSlot(architecture), "patch", generation, data.x_train)
    x, y = training_subset(data.x_train, data.y_train, training.samples)
    deployed = session.deployment(run, x, {**generation, "patch_scale": params["patch_scale"],
                                           "patch_deployment_method": "augment"})
    x_aug, y_aug = np.asarray(deployed.x), y[deployed.source_index]
    order = np.random.default_rng([session.settings.seed, 29]).permutation(len(x_aug))  # mix the validation split
    metrics = fit(model, x_aug[order], y_aug[order],
                  dataclasses.replace(training, epochs=params["epochs"], samples=0), data.n_classes,
                  session.settings.seed)
    return {**metrics, "patched_training_images": float(deployed.modified.sum())}


def patch_training_recipe(resolved: Mapping[str, Any]) -> str:
    return register_recipe("patch_training", patch_training, resolved, DEFAULTS)


PATCH_TRAINING = Defense("patch_training", PARAMS, recipe=patch_training_recipe,
                         doc="adversarial training on patched copies of the training set, registered as its own model")
