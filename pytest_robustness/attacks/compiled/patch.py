"""Compiled adversarial patch: ``art.attacks.evasion.AdversarialPatchTensorFlowV2`` with its
defaults (Adam, ``targeted=True``), the whole training loop one ``tf.function``; ``apply_patch``
places a trained patch deterministically with the same overlay."""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np
import tensorflow as tf

from .kernels import cached_kernel, check_clip, check_int, check_real, check_x, nb_classes_of, to_one_hot


def _circular_mask(patch_shape, sharpness=40):
    """``AdversarialPatchTensorFlowV2._get_circular_patch_mask`` for one sample."""
    diameter = min(patch_shape[0], patch_shape[1])
    x = np.linspace(-1, 1, diameter)
    x_grid, y_grid = np.meshgrid(x, x, sparse=True)
    z_grid = (x_grid**2 + y_grid**2) ** sharpness
    mask = 1 - np.clip(z_grid, -1, 1)
    return np.broadcast_to(np.expand_dims(mask, axis=2), patch_shape).astype(np.float32)


def _overlay(images, patch, mask, params):
    """``AdversarialPatchTensorFlowV2._random_overlay`` for a whole batch at once.

    ``params`` is a (B, 4) float64 tensor of (scale, rotation in radians,
    x_shift, y_shift) per image.  Same ops as ART: bilinear resize of patch and
    mask to the smaller image edge, zero padding to the image size, then two
    ``ImageProjectiveTransformV3`` passes (rotation+scale about the centre,
    then translation); here the mask and patch go through each pass together
    as extra channels, with per-image matrices. Outside the transformed patch
    the fill is zero, as in the ART reference this project ships
    (``attacks.patch._art_patch_class``): ART 1.20.1's own ``fill_mode="REFLECT"``
    mirrors a scaled-down patch over the whole image, a texture rather than a patch.
    """
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    edge = min(height, width)
    stacked = tf.stack([mask, tf.cast(patch, images.dtype)])  # (2, ph, pw, c)
    stacked = tf.image.resize(stacked, size=(edge, edge), method=tf.image.ResizeMethod.BILINEAR)
    pad_h0 = (height - edge) // 2
    pad_w0 = (width - edge) // 2
    stacked = tf.pad(stacked, [[0, 0], [pad_h0, height - pad_h0 - edge], [pad_w0, width - pad_w0 - edge], [0, 0]])
    both = tf.concat([stacked[0], stacked[1]], axis=-1)  # (H, W, 2c): mask channels, then patch channels
    n = tf.shape(images)[0]
    both = tf.broadcast_to(both[None], tf.stack([n, height, width, 2 * channels]))

    scale, phi, x_shift, y_shift = tf.unstack(params, axis=1)
    cos, sin = tf.cos(-phi), tf.sin(-phi)
    a0, a1, b0, b1 = cos / scale, -sin / scale, sin / scale, cos / scale
    x_origin, y_origin = width / 2.0, height / 2.0
    x_delta = x_origin - (a0 * x_origin + a1 * y_origin)
    y_delta = y_origin - (b0 * x_origin + b1 * y_origin)
    zeros, ones = tf.zeros_like(scale), tf.ones_like(scale)
    transform = tf.cast(tf.stack([a0, a1, x_delta, b0, b1, y_delta, zeros, zeros], axis=1), tf.float32)
    translation = tf.cast(tf.stack([ones, zeros, -x_shift, zeros, ones, -y_shift, zeros, zeros], axis=1), tf.float32)
    for t in (transform, translation):
        both = tf.raw_ops.ImageProjectiveTransformV3(
            images=both,
            transforms=t,
            output_shape=tf.constant([height, width]),
            fill_value=0.0,
            interpolation="BILINEAR",
            fill_mode="CONSTANT",
        )
    mask_t, patch_t = both[..., :channels], both[..., channels:]
    return images * (1.0 - mask_t) + patch_t * mask_t


def _build_patch(
    model_ref, *, patch_shape, image_shape, nb_classes, batch, clip, rotation_max, scale_min, scale_max
):
    lo, hi = clip
    height, width = image_shape[0], image_shape[1]
    mask = tf.constant(_circular_mask(patch_shape))
    beta_1, beta_2, epsilon = 0.9, 0.999, 1e-7  # ART's Adam settings
    sig = [
        tf.TensorSpec([None, *image_shape], tf.float32),  # all images
        tf.TensorSpec([None, nb_classes], tf.float32),  # one-hot targets
        tf.TensorSpec(patch_shape, tf.float32),  # initial patch
        tf.TensorSpec([], tf.float32),  # learning rate
        tf.TensorSpec([], tf.int32),  # max_iter (epochs)
        tf.TensorSpec([2], tf.int64),  # seed
    ]

    # Every step uses a full batch of ``batch`` rows (static shapes inside the
    # loop); the short last batch of an epoch is masked out of the mean loss,
    # which equals ART's mean over the short batch.  jit_compile was measured
    # and left off: XLA has no kernel for ImageProjectiveTransformV3, and with a
    # gather-based replacement (or XLA on the model part only) the loop was
    # 1.5-2.5x slower on CPU.
    @tf.function(input_signature=sig, reduce_retracing=True)
    def train(x, y, patch, learning_rate, max_iter, seed):
        model = model_ref()
        n = tf.shape(x)[0]
        nb = (n + batch - 1) // batch
        perm_seed, param_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))

        def body(step, patch, m, v, perm):
            epoch, j = step // nb, step % nb
            # tf.data shuffle(10000) with reshuffle each epoch == a fresh permutation per epoch
            perm = tf.cond(
                tf.equal(j, 0),
                lambda: tf.pad(
                    tf.argsort(tf.random.stateless_uniform([n], tf.random.experimental.stateless_fold_in(perm_seed, epoch))),
                    [[0, nb * batch - n]],
                ),
                lambda: perm,
            )
            rows = j * batch + tf.range(batch)
            valid = tf.cast(rows < n, tf.float32)
            idx = tf.gather(perm, rows)
            images, target = tf.gather(x, idx), tf.gather(y, idx)
            u = tf.random.stateless_uniform(
                [batch, 4], tf.random.experimental.stateless_fold_in(param_seed, step), dtype=tf.float64
            )
            scale = scale_min + (scale_max - scale_min) * u[:, 0]
            pad_h = (height - scale * height) / 2.0
            pad_w = (width - scale * width) / 2.0
            x_shift = -pad_w + 2.0 * pad_w * u[:, 1]
            y_shift = -pad_h + 2.0 * pad_h * u[:, 2]
            phi = (-rotation_max + 2.0 * rotation_max * u[:, 3]) / 180.0 * math.pi
            params = tf.stack([scale, phi, x_shift, y_shift], axis=1)
            with tf.GradientTape() as tape:
                tape.watch(patch)
                patched = tf.clip_by_value(_overlay(images, patch, mask, params), lo, hi)
            # targeted: Adam descends the loss towards the target
                logits = model(patched, training=False)  # ART's patch: use_logits for a logits estimator
                per_sample = keras.losses.categorical_crossentropy(target, logits, from_logits=True)
                loss = tf.reduce_sum(per_sample * valid) / tf.reduce_sum(valid)
            grad = tape.gradient(loss, patch)
            # keras.optimizers.Adam.update_step, then the variable's clip constraint
            local_step = tf.cast(step + 1, tf.float32)
            alpha = learning_rate * tf.sqrt(1 - tf.pow(beta_2, local_step)) / (1 - tf.pow(beta_1, local_step))
            m = m + (grad - m) * (1 - beta_1)
            v = v + (tf.square(grad) - v) * (1 - beta_2)
            patch = tf.clip_by_value(patch - (m * alpha) / (tf.sqrt(v) + epsilon), lo, hi)
            return step + 1, patch, m, v, perm

        zeros = tf.zeros_like(patch)
        _, patch, _, _, _ = tf.while_loop(
            lambda step, *_: step < max_iter * nb,
            body,
            [tf.constant(0), patch, zeros, zeros, tf.zeros([nb * batch], tf.int32)],
        )
        return patch

    return train


def generate_patch(
    model,
    x,
    *,
    target,
    learning_rate=5.0,
    max_iter=500,
    rotation_max=22.5,
    scale_min=0.1,
    scale_max=1.0,
    patch_shape=None,
    batch_size=16,
    seed=0,
    clip_values=(0.0, 1.0),
) -> np.ndarray:
    """Targeted adversarial patch, equivalent to ART's ``AdversarialPatchTensorFlowV2``
    with its defaults (``optimizer="Adam"``, ``targeted=True``).

    ``target`` is one class index for all images, or per-image integer labels /
    one-hot rows.  Like ART, each of the ``max_iter`` iterations is one pass
    over ``x`` in shuffled batches of ``batch_size`` (the last one shorter); each
    step places the patch on every image with a random scale, rotation and
    shift (``_random_overlay``), takes the mean categorical cross-entropy to the
    target and makes one Adam step (lr ``learning_rate``, betas 0.9/0.999, eps
    1e-7) followed by clipping to ``clip_values``.  The whole optimisation is
    one compiled call.  Returns the patch, shape ``patch_shape`` (default
    ``x.shape[1:]``); the patch covers the circular mask ART uses.

    Deviations from ART: shuffling and the per-image transformation parameters
    come from TF's stateless RNG seeded with ``seed`` instead of tf.data's
    shuffle and numpy's global RNG (same distributions, different draws).
    """
    x = check_x(x)
    if x.ndim != 4:
        raise ValueError(f"x must have shape (n, height, width, channels); got {x.shape}")
    nb_classes = nb_classes_of(model)
    if isinstance(target, numbers.Integral) and not isinstance(target, bool):
        if not 0 <= target < nb_classes:
            raise ValueError(f"target must be a class index in [0, {nb_classes}); got {target!r}")
        y = np.zeros((x.shape[0], nb_classes), np.float32)
        y[:, int(target)] = 1.0
    elif isinstance(target, (bool, float, str)) or target is None:
        raise ValueError(f"target must be a class index or per-image labels; got {target!r}")
    else:
        y = to_one_hot("target", target, x.shape[0], nb_classes)
    learning_rate = check_real("learning_rate", learning_rate, low=0.0, strict=True)
    max_iter = check_int("max_iter", max_iter, low=0)
    rotation_max = check_real("rotation_max", rotation_max, low=0.0)
    if rotation_max > 180:
        raise ValueError(f"rotation_max must be in [0, 180]; got {rotation_max!r}")
    scale_min = check_real("scale_min", scale_min, low=0.0, strict=True)
    scale_max = check_real("scale_max", scale_max, low=0.0, strict=True)
    if scale_min > 1:
        raise ValueError(f"scale_min must be in (0, 1]; got {scale_min!r}")
    if scale_max > 1 or scale_max < scale_min:
        raise ValueError(f"scale_max must be in [scale_min, 1]; got {scale_max!r}")
    batch_size = check_int("batch_size", batch_size, low=1)
    seed = check_int("seed", seed, low=0)
    clip = check_clip(clip_values)
    if patch_shape is None:
        patch_shape = tuple(x.shape[1:])
    else:
        try:
            patch_shape = tuple(int(s) for s in patch_shape)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"patch_shape must be (height, width, channels); got {patch_shape!r}") from exc
        if len(patch_shape) != 3 or min(patch_shape) < 1:
            raise ValueError(f"patch_shape must be (height, width, channels) of positive ints; got {patch_shape!r}")
        if patch_shape[0] != patch_shape[1]:
            raise ValueError(f"patch_shape height and width must be equal; got {patch_shape!r}")
        if patch_shape[2] != x.shape[3]:
            raise ValueError(f"patch_shape channels must match x ({x.shape[3]}); got {patch_shape!r}")

    patch = np.full(patch_shape, (clip[1] - clip[0]) / 2.0 + clip[0], dtype=np.float32)
    if max_iter == 0:
        return patch
    key = ("patch", patch_shape, tuple(x.shape[1:]), batch_size, clip, rotation_max, scale_min, scale_max)
    train = cached_kernel(
        model,
        key,
        lambda ref: _build_patch(
            ref,
            patch_shape=patch_shape,
            image_shape=tuple(x.shape[1:]),
            nb_classes=nb_classes,
            batch=batch_size,
            clip=clip,
            rotation_max=rotation_max,
            scale_min=scale_min,
            scale_max=scale_max,
        ),
    )
    out = train(x, y, patch, tf.constant(learning_rate, tf.float32), tf.constant(max_iter), tf.constant([seed, 0], tf.int64))
    return out.numpy()


def apply_patch(x, patch, *, scale=0.5, rotation=0.0, shift=(0.0, 0.0), clip_values=(0.0, 1.0)) -> np.ndarray:
    """Deterministically place ``patch`` on every image of ``x``.

    Uses the same overlay as training (ART's ``_random_overlay``: circular mask,
    rotation/scale about the centre, then translation by ``shift`` = (x, y)
    pixels) with fixed parameters, followed by clipping to ``clip_values``.
    """
    x = check_x(x)
    if x.ndim != 4:
        raise ValueError(f"x must have shape (n, height, width, channels); got {x.shape}")
    patch = np.asarray(patch, dtype=np.float32)
    if patch.ndim != 3 or patch.shape[0] != patch.shape[1] or patch.shape[2] != x.shape[3]:
        raise ValueError(f"patch must have shape (s, s, {x.shape[3]}); got {patch.shape}")
    scale = check_real("scale", scale, low=0.0, strict=True)
    rotation = check_real("rotation", rotation)
    try:
        sx, sy = (float(s) for s in shift)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"shift must be a pair (x, y) of numbers; got {shift!r}") from exc
    lo, hi = check_clip(clip_values)
    params = tf.tile(tf.constant([[scale, rotation / 180.0 * math.pi, sx, sy]], tf.float64), [x.shape[0], 1])
    out = _overlay(tf.constant(x), tf.constant(patch), tf.constant(_circular_mask(patch.shape)), params)
    return tf.clip_by_value(out, lo, hi).numpy()
