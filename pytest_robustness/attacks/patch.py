"""Adversarial patch: Dioptra's ``gen_patch`` (generation) and ``deploy_patch`` (deployment).

Generation is the expensive part and runs once per model and generation
parameters (memoised and disk-cached by ``RobustnessSession.attack_run``): a
universal, targeted patch is learnt on ``num_patch_gen_samples`` training images
with ART's ``AdversarialPatch`` (its TensorFlow v2 implementation for our
classifiers). Deployment (:mod:`pytest_robustness.attacks.patch_deployment`) is cheap and
seeded and runs per cell on the unseen evaluation images.

``patch_target=-1`` draws the target class from the session seed (Dioptra draws
it unseeded); the drawn class is logged as the ``patch.patch_target`` param.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Mapping

import numpy as np

from ..errors import RobustnessUsageError
from ..params import Param, numeric
from .base import AttackOutput
from .define import define_attack
from .patch_deployment import DEPLOY_PARAMS, deploy_patches


def _patch_shape_ok(value: Any) -> bool:
    if value is None:
        return True
    shape = tuple(value)
    return (len(shape) == 3 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)
            and shape[0] == shape[1])


PARAMS = {
    "learning_rate": numeric(5.0, 0, low_open=True, doc="step size of the patch optimisation"),
    # Dioptra's default is 500; suites pass a CPU-sized max_iter.
    "max_iter": numeric(500, 1, integer=True, doc="patch optimisation steps"),
    "patch_target": numeric(-1, -1, integer=True, id_prefix="target",
                            doc="target class; -1 draws one from the seed"),
    "num_patch": numeric(1, 1, integer=True, doc="patches to generate (each on its own sample draw)"),
    "num_patch_gen_samples": numeric(10, 1, integer=True, doc="training images each patch is optimised on"),
    "rotation_max": numeric(22.5, 0, 180, doc="maximum random rotation in degrees (generation and deployment)"),
    "scale_min": numeric(0.1, 0, 1, high_open=True, doc="smallest random scale during generation"),
    "scale_max": numeric(1.0, 0, 1, low_open=True, doc="largest random scale during generation"),
    "patch_shape": Param(None, "None (the input's shape) or a square (height, height, channels) of positive integers",
                         _patch_shape_ok, doc="shape of the patch"),
    "batch_size": numeric(16, 1, integer=True, doc="images per optimisation step"),
}


def _scale_order(params: Mapping[str, Any]) -> str | None:
    if params["scale_min"] >= params["scale_max"]:
        return (f"scale_min={params['scale_min']!r} must be smaller than scale_max={params['scale_max']!r}; "
                "expected 0 <= scale_min < scale_max <= 1")
    return None


def patch_target(params: Mapping[str, Any], seed: int, n_classes: int) -> int:
    """The requested target, or a class drawn from the seed for -1."""
    target = params["patch_target"]
    if target < 0:
        return int(np.random.default_rng([seed, 7]).integers(n_classes))
    if target >= n_classes:
        raise RobustnessUsageError(f"attack patch: patch_target={target} is invalid; expected -1 or a class in [0, {n_classes - 1}]")
    return target


def _shape_and_draws(seed: int, x: np.ndarray, params: Mapping[str, Any]):
    shape = tuple(params["patch_shape"] or x.shape[1:])
    if shape[-1] not in (1, x.shape[-1]):
        raise RobustnessUsageError(f"attack patch: patch_shape={shape} has {shape[-1]} channels; the images have {x.shape[-1]}")
    rng = np.random.default_rng([seed, 11])
    n = min(params["num_patch_gen_samples"], len(x))
    draws = [np.sort(rng.choice(len(x), size=n, replace=False)) for _ in range(params["num_patch"])]
    return shape, draws


@functools.cache
def _art_patch_class():
    """ART's ``AdversarialPatchTensorFlowV2`` with its random overlay filling with zeros.

    ART 1.20.1 transforms the patch and its mask with ``fill_mode="REFLECT"``, so
    a patch scaled below 1 is mirrored over the whole image (a tiled texture, not
    a patch): generation optimises that texture and ``apply_patch`` covers every
    pixel. This override keeps ART's optimiser, loss, mask and random draws (the
    same calls to numpy's RNG, in the same order) and fills outside the patch
    with zeros, as the transformation means.
    """
    import tensorflow as tf
    from art.attacks.evasion.adversarial_patch.adversarial_patch_tensorflow import AdversarialPatchTensorFlowV2

    class LocalAdversarialPatch(AdversarialPatchTensorFlowV2):
        def _random_overlay(self, images, patch, scale=None, mask=None):
            if mask is not None or self.nb_dims != 3:
                return super()._random_overlay(images, patch, scale=scale, mask=mask)
            n = images.shape[0]
            height, width = self.image_shape[0], self.image_shape[1]
            edge = int(min(height, width))
            image_mask = tf.cast(self._get_circular_patch_mask(nb_samples=n), images.dtype)
            image_mask = tf.image.resize(image_mask, (edge, edge), method="bilinear")
            padded_patch = tf.image.resize(tf.stack([tf.cast(patch, images.dtype)] * n), (edge, edge), method="bilinear")
            pad_h, pad_w = (height - edge) // 2, (width - edge) // 2
            paddings = [[0, 0], [pad_h, height - edge - pad_h], [pad_w, width - edge - pad_w], [0, 0]]
            image_mask, padded_patch = tf.pad(image_mask, paddings), tf.pad(padded_patch, paddings)
            transforms, translations = [], []
            for _ in range(n):
                im_scale = np.random.uniform(self.scale_min, self.scale_max) if scale is None else scale
                x_shift = np.random.uniform(-(width - im_scale * width) / 2.0, (width - im_scale * width) / 2.0)
                y_shift = np.random.uniform(-(height - im_scale * height) / 2.0, (height - im_scale * height) / 2.0)
                phi = float(np.random.uniform(-self.rotation_max, self.rotation_max)) / 180.0 * math.pi
                matrix = np.array([[math.cos(-phi), -math.sin(-phi)], [math.sin(-phi), math.cos(-phi)]]) / im_scale
                origin = np.array([width / 2.0, height / 2.0])
                dx, dy = origin - matrix @ origin
                transforms.append([matrix[0, 0], matrix[0, 1], dx, matrix[1, 0], matrix[1, 1], dy, 0, 0])
                translations.append([1, 0, -x_shift, 0, 1, -y_shift, 0, 0])

            def warp(t, vectors):
                return tf.raw_ops.ImageProjectiveTransformV3(
                    images=t, transforms=tf.constant(vectors, tf.float32), output_shape=tf.shape(t)[1:3],
                    interpolation="BILINEAR", fill_mode="CONSTANT", fill_value=0.0)

            image_mask = warp(warp(image_mask, transforms), translations)
            padded_patch = warp(warp(padded_patch, transforms), translations)
            return images * (1 - image_mask) + padded_patch * image_mask

    return LocalAdversarialPatch


def art_patch(classifier, model, x: np.ndarray, params: Mapping[str, Any], seed: int) -> AttackOutput:
    """ART's TensorFlow v2 adversarial patch (zero fill, see above), targeted, one patch per sample draw."""
    goal = patch_target(params, seed, classifier.nb_classes)
    shape, draws = _shape_and_draws(seed, x, params)
    patches = []
    for idx in draws:
        attack = _art_patch_class()(
            classifier, rotation_max=params["rotation_max"], scale_min=params["scale_min"],
            scale_max=params["scale_max"], learning_rate=params["learning_rate"], max_iter=params["max_iter"],
            batch_size=params["batch_size"], patch_shape=shape, targeted=True, verbose=False,
        )
        y = np.zeros((len(idx), classifier.nb_classes), dtype=np.float32)
        y[:, goal] = 1.0
        patch, _mask = attack.generate(x=x[idx], y=y)
        patches.append(np.asarray(patch, dtype=np.float32))
    return AttackOutput(np.stack(patches), extra_params={"patch_target": goal})


def compiled_patch(classifier, model, x: np.ndarray, params: Mapping[str, Any], seed: int) -> AttackOutput:
    from .compiled import patch as patch_kernel

    goal = patch_target(params, seed, classifier.nb_classes)
    shape, draws = _shape_and_draws(seed, x, params)
    patches = [
        patch_kernel.generate_patch(
            model, x[idx], target=goal, learning_rate=params["learning_rate"], max_iter=params["max_iter"],
            rotation_max=params["rotation_max"], scale_min=params["scale_min"], scale_max=params["scale_max"],
            patch_shape=shape, batch_size=params["batch_size"], seed=seed + i,
            clip_values=classifier.clip_values,
        )
        for i, idx in enumerate(draws)
    ]
    return AttackOutput(np.stack([np.asarray(p, dtype=np.float32) for p in patches]), extra_params={"patch_target": goal})


PATCH = define_attack(
    "patch", PARAMS, art_patch,
    compiled=compiled_patch,
    doc="ART AdversarialPatch: a universal targeted patch, deployed onto the evaluation images",
    deploy_params=DEPLOY_PARAMS, deploy=deploy_patches, constraints=(_scale_order,), generate_on="train",
    versions={"art": 1, "compiled": 1},  # bump with a change to what a backend produces (the zero-fill override)
)
