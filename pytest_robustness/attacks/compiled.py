"""Compiled re-implementations of ART's FGM, PGD and adversarial-patch attacks.

Each attack is a ``tf.function`` built once per (model, attack configuration)
and cached on the model (weakly, so the cache never keeps a model alive).
The kernels reproduce the arithmetic of the Adversarial Robustness Toolbox
(ART 1.20.1) reference implementations used with a
``TensorFlowV2Classifier(..., loss_object=CategoricalCrossentropy(from_logits=True),
clip_values=...)`` on a logits model:

* :func:`fgm` -- ``art.attacks.evasion.FastGradientMethod`` (numpy code path),
  including ``minimal=True``.
* :func:`pgd` -- ``art.attacks.evasion.ProjectedGradientDescent``, which for a
  ``TensorFlowV2Classifier`` dispatches to ``ProjectedGradientDescentTensorFlowV2``.
* :func:`generate_patch` -- ``art.attacks.evasion.AdversarialPatchTensorFlowV2``
  with its defaults (Adam optimiser, ``targeted=True``).

Differences from ART are listed in the docstring of each function.  Nothing
inside the traced functions touches numpy or the host, so the same code runs
on a GPU; the only host work is slicing the input into batches.
"""

from __future__ import annotations

import math
import numbers
import weakref

import keras
import numpy as np
import tensorflow as tf

__all__ = ["fgm", "pgd", "generate_patch", "apply_patch"]

# model -> {config key: tf.function}.  The kernels only hold a weak reference
# to the model, so entries disappear together with the model.
_KERNELS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _kernel(model, key, build):
    per_model = _KERNELS.get(model)
    if per_model is None:
        per_model = {}
        _KERNELS[model] = per_model
    fn = per_model.get(key)
    if fn is None:
        fn = per_model[key] = build(weakref.ref(model))
    return fn


# ---------------------------------------------------------------------------
# Parameter validation
# ---------------------------------------------------------------------------


def _check_norm(norm):
    """Map "inf"/np.inf, "1"/1, "2"/2 to "inf", 1 or 2."""
    if isinstance(norm, str):
        key = norm.strip().lower()
        table = {"inf": "inf", "np.inf": "inf", "1": 1, "2": 2}
        if key in table:
            return table[key]
    elif isinstance(norm, numbers.Real) and not isinstance(norm, bool):
        if math.isinf(norm) and norm > 0:
            return "inf"
        if norm == 1:
            return 1
        if norm == 2:
            return 2
    raise ValueError(f'norm must be one of "inf", "1", "2" (or np.inf, 1, 2); got {norm!r}')


def _check_real(name, value, *, low=None, strict=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number; got {value!r}")
    if low is not None and (value <= low if strict else value < low):
        op = ">" if strict else ">="
        raise ValueError(f"{name} must be {op} {low}; got {value!r}")
    return float(value)


def _check_int(name, value, *, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer; got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}; got {value!r}")
    return int(value)


def _check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a bool; got {value!r}")
    return bool(value)


def _check_clip(clip_values):
    try:
        lo, hi = clip_values
        lo = _check_real("clip_values[0]", lo)
        hi = _check_real("clip_values[1]", hi)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"clip_values must be a pair (min, max) of finite numbers; got {clip_values!r}") from exc
    if not lo < hi:
        raise ValueError(f"clip_values must satisfy min < max; got {clip_values!r}")
    return lo, hi


def _check_x(x):
    x = np.asarray(x)
    if x.dtype == object or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"x must be a numeric array; got dtype {x.dtype}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch of shape (n, ...); got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


def _nb_classes(model):
    try:
        shape = model.output_shape
    except (AttributeError, ValueError):
        shape = None
    if shape is None or not isinstance(shape, tuple) or shape[-1] is None:
        raise ValueError("model must be a Keras model with a single (n, nb_classes) output")
    return int(shape[-1])


def _to_one_hot(name, y, n, nb_classes):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == nb_classes and nb_classes > 1:
        if not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)):
            raise ValueError(f"{name} (one-hot) must be finite numbers")
        out = y.astype(np.float32)
    else:
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(
                f"{name} must be integer labels of shape (n,) or one-hot of shape (n, {nb_classes}); "
                f"got shape {y.shape}"
            )
        if not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)))):
            raise ValueError(f"{name} labels must be integers; got dtype {y.dtype}")
        y = y.astype(np.int64)
        if y.size and (y.min() < 0 or y.max() >= nb_classes):
            raise ValueError(f"{name} labels must be in [0, {nb_classes}); got range [{y.min()}, {y.max()}]")
        out = np.eye(nb_classes, dtype=np.float32)[y]
    if out.shape[0] != n:
        raise ValueError(f"{name} must have one label per input ({n}); got {out.shape[0]}")
    return out


def _batches(n, batch_size):
    """ART's implicit batching: [0:b], [b:2b], ..., last one possibly shorter."""
    for start in range(0, n, batch_size):
        yield start, min(start + batch_size, n)


# ---------------------------------------------------------------------------
# Shared graph pieces
# ---------------------------------------------------------------------------


def _loss_gradient(model, x, y, nb_classes):
    """ART ``TensorFlowV2Classifier.loss_gradient`` with ``CategoricalCrossentropy(from_logits=True)``.

    ``model`` outputs logits (the harness's wrapper, see ``model_adapter``).

    The Keras loss reduces with ``sum_over_batch_size`` (sum / rows), so the
    gradient of each sample is scaled by 1 / batch rows exactly as in ART, which
    is why the kernels use ART's batch boundaries.  When ``y`` is None the labels
    are the model's own predictions, taken from the same forward pass (ART runs
    a separate ``predict`` first).
    """
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model(x, training=False)
        if y is None:
            y = tf.one_hot(tf.argmax(logits, axis=1), nb_classes, dtype=logits.dtype)
        per_sample = keras.losses.categorical_crossentropy(y, logits, from_logits=True)
        loss = tf.reduce_sum(per_sample) / tf.cast(tf.shape(per_sample)[0], per_sample.dtype)
    return tape.gradient(loss, x), y


def _flat(t):
    return tf.reshape(t, [tf.shape(t)[0], -1])


# ---------------------------------------------------------------------------
# FGM
# ---------------------------------------------------------------------------


def _fgm_direction(grad, norm):
    """``FastGradientMethod._compute_perturbation`` (numpy) after the NaN/sign steps."""
    grad = tf.where(tf.math.is_nan(grad), tf.zeros_like(grad), grad)
    g2 = _flat(grad)
    if norm == "inf":
        d = tf.ones_like(g2)
    elif norm == 1:
        # np.argmax: first index of the largest |g|, one-hot.
        d = tf.one_hot(tf.argmax(tf.abs(g2), axis=1), tf.shape(g2)[1], dtype=g2.dtype)
    else:  # 2: |g| / ||g||_2, zero where the norm is zero, ** (q - 1) == ** 1
        q = tf.sqrt(tf.reduce_sum(g2 * g2, axis=1, keepdims=True))
        d = tf.abs(g2) / tf.where(q != 0, q, tf.constant(np.inf, g2.dtype))
    return tf.reshape(d, tf.shape(grad)) * tf.sign(grad)


def _project(values, eps, norm):
    """``art.utils.projection`` / ``ProjectedGradientDescentTensorFlowV2._projection`` (suboptimal=True)."""
    v2 = _flat(values)
    if norm == "inf":
        v2 = tf.sign(v2) * tf.minimum(tf.abs(v2), eps)
    else:
        vn = tf.norm(v2, ord=float(norm), axis=1, keepdims=True)
        v2 = v2 * tf.where(vn == 0, tf.zeros_like(vn), tf.minimum(tf.constant(1.0, vn.dtype), eps / vn))
    return tf.reshape(v2, tf.shape(values))


def _build_fgm(model_ref, *, norm, minimal, targeted, use_pred, clip, input_shape, nb_classes):
    lo, hi = clip
    # The batch dimension is left unknown: one trace serves full and short
    # batches, so the last batch needs no padding (which would change the
    # 1 / batch-rows scaling of the mean loss).
    sig = [
        tf.TensorSpec([None, *input_shape], tf.float32),  # x
        tf.TensorSpec([None, nb_classes], tf.float32),  # y (ignored when use_pred)
        tf.TensorSpec([None], tf.float32),  # eps schedule: [eps] or minimal's eps_step, 2*eps_step, ...
    ]

    @tf.function(input_signature=sig, reduce_retracing=True)
    def kernel(x, y, eps_list):
        model = model_ref()
        grad, y = _loss_gradient(model, x, None if use_pred else y, nb_classes)
        if targeted:
            grad = -grad
        direction = _fgm_direction(grad, norm)

        def apply(eps):  # FastGradientMethod._apply_perturbation
            step = eps * direction
            step = tf.where(tf.math.is_nan(step), tf.zeros_like(step), step)
            return tf.clip_by_value(x + step, lo, hi)

        if not minimal:
            eps = eps_list[0]
            x_adv = apply(eps)
            return x + _project(x_adv - x, eps, norm)

        labels = tf.argmax(y, axis=1)
        bshape = [-1] + [1] * len(input_shape)

        def cond(k, adv, active):
            return tf.logical_and(k < tf.size(eps_list), tf.reduce_any(active))

        def body(k, adv, active):
            adv = tf.where(tf.reshape(active, bshape), apply(eps_list[k]), adv)
            preds = tf.argmax(model(adv, training=False), axis=1)
            hit = tf.not_equal(preds, labels) if targeted else tf.equal(preds, labels)
            return k + 1, adv, hit

        active = tf.ones_like(labels, dtype=tf.bool)
        _, adv, _ = tf.while_loop(cond, body, [tf.constant(0), x, active])
        return adv

    return kernel


def _prepare(model, x, y, targeted, batch_size, clip_values):
    x = _check_x(x)
    targeted = _check_bool("targeted", targeted)
    batch_size = _check_int("batch_size", batch_size, low=1)
    clip = _check_clip(clip_values)
    nb_classes = _nb_classes(model)
    if y is None:
        if targeted:
            raise ValueError("y (target labels) is required when targeted=True")
        y_arr = None
    else:
        y_arr = _to_one_hot("y", y, x.shape[0], nb_classes)
    return x, y_arr, targeted, batch_size, clip, nb_classes


def fgm(
    model,
    x,
    *,
    eps=0.3,
    eps_step=0.1,
    norm="inf",
    minimal=False,
    batch_size=32,
    clip_values=(0.0, 1.0),
    y=None,
    targeted=False,
) -> np.ndarray:
    """Fast gradient method, equivalent to ART's ``FastGradientMethod(num_random_init=0)``.

    ``y`` are integer labels or one-hot rows; when None the model's predictions
    are used (ART's default, avoids label leaking).  With ``minimal=True`` each
    sample gets the smallest ``k * eps_step <= eps`` (accumulated in float64,
    like ART) that changes its prediction (reaches the target when targeted).

    Deviations from ART: with ``y=None`` the labels come from the forward pass
    of the gradient computation on each batch instead of a separate ``predict``
    over all of ``x`` (same model, same inputs; results agree unless a sample
    sits on an exact tie).  ``norm`` also accepts the strings "1" and "2".
    """
    x, y_arr, targeted, batch_size, clip, nb_classes = _prepare(model, x, y, targeted, batch_size, clip_values)
    norm = _check_norm(norm)
    minimal = _check_bool("minimal", minimal)
    eps = _check_real("eps", eps, low=0.0)
    eps_step = _check_real("eps_step", eps_step, low=0.0, strict=True)

    if y_arr is not None and nb_classes > 2:  # FastGradientMethod.generate normalises the labels
        sums = y_arr.sum(axis=1, keepdims=True)
        if np.any(sums == 0):
            raise ValueError("y one-hot rows must not be all zero")
        y_arr = (y_arr / sums).astype(np.float32)

    if minimal:
        schedule = []
        current = eps_step
        while current <= eps:  # same float64 accumulation as ART
            schedule.append(current)
            current = current + eps_step
        if not schedule:
            return x.copy()
    else:
        schedule = [eps]
    schedule = tf.constant(np.asarray(schedule, dtype=np.float32))

    n = x.shape[0]
    batch = min(batch_size, n)
    key = ("fgm", norm, minimal, targeted, y_arr is None, clip, x.shape[1:])
    kernel = _kernel(
        model,
        key,
        lambda ref: _build_fgm(
            ref,
            norm=norm,
            minimal=minimal,
            targeted=targeted,
            use_pred=y_arr is None,
            clip=clip,
            input_shape=x.shape[1:],
            nb_classes=nb_classes,
        ),
    )
    dummy_y = np.zeros((batch, nb_classes), np.float32)
    out = np.empty_like(x)
    for start, stop in _batches(n, batch):
        yb = dummy_y[: stop - start] if y_arr is None else y_arr[start:stop]
        out[start:stop] = kernel(x[start:stop], yb, schedule).numpy()
    return out


# ---------------------------------------------------------------------------
# PGD
# ---------------------------------------------------------------------------


def _pgd_direction(grad, norm):
    """``ProjectedGradientDescentTensorFlowV2._compute_perturbation`` (same TF ops)."""
    grad = tf.where(tf.math.is_nan(grad), tf.zeros_like(grad), grad)
    g2 = _flat(grad)
    if norm == "inf":
        d = tf.ones_like(g2)
    elif norm == 1:  # ties share the step
        d = tf.abs(g2)
        d = tf.where(d == tf.reduce_max(d, axis=1, keepdims=True), 1.0, 0.0)
        d /= tf.reduce_sum(d, axis=1, keepdims=True)
    else:
        q = tf.norm(g2, ord=2.0, axis=1, keepdims=True)
        d = (tf.abs(g2) * tf.where(q == 0, 0.0, 1 / q)) ** (2.0 - 1)
    return tf.reshape(d, tf.shape(grad)) * tf.sign(grad)


def _random_ball(seed, shape, eps, norm):
    """Uniform sample from the ``norm`` ball of radius ``eps`` (``art.utils.random_sphere``), seeded TF RNG."""
    n = shape[0]
    d = tf.reduce_prod(shape[1:])
    if norm == "inf":
        r = tf.random.stateless_uniform([n, d], seed, -1.0, 1.0, dtype=tf.float64) * tf.cast(eps, tf.float64)
    elif norm == 2:
        a = tf.random.stateless_normal([n, d], seed, dtype=tf.float64)
        s2 = tf.reduce_sum(a**2, axis=1)
        df = tf.cast(d, tf.float64)
        base = tf.math.igamma(df / 2.0, s2 / 2.0) ** (1.0 / df) * tf.cast(eps, tf.float64) / tf.sqrt(s2)
        r = a * base[:, None]
    else:
        s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        v = tf.sort(tf.random.stateless_uniform([n, d], s1, dtype=tf.float64), axis=1)
        x = v - tf.concat([tf.zeros([n, 1], tf.float64), v[:, :-1]], axis=1)
        signs = tf.cast(tf.random.stateless_uniform([n, d], s2, 0, 2, dtype=tf.int32) * 2 - 1, tf.float64)
        r = tf.cast(eps, tf.float64) * x * signs
    return tf.reshape(tf.cast(r, tf.float32), shape)


def _build_pgd(model_ref, *, norm, targeted, use_pred, num_random_init, clip, input_shape, nb_classes):
    lo, hi = clip
    sig = [
        tf.TensorSpec([None, *input_shape], tf.float32),  # x (any batch size, see _build_fgm)
        tf.TensorSpec([None, nb_classes], tf.float32),  # y (ignored when use_pred)
        tf.TensorSpec([], tf.float32),  # eps
        tf.TensorSpec([], tf.float32),  # eps_step
        tf.TensorSpec([], tf.int32),  # max_iter
        tf.TensorSpec([2], tf.int64),  # RNG seed for this batch
    ]

    @tf.function(input_signature=sig, reduce_retracing=True)
    def kernel(x, y, eps, eps_step, max_iter, seed):
        model = model_ref()

        def step(x_adv, labels):  # ProjectedGradientDescentTensorFlowV2._compute_tf, one iteration
            grad, labels = _loss_gradient(model, x_adv, labels, nb_classes)
            if targeted:
                grad = grad * -1.0
            step_ = eps_step * _pgd_direction(grad, norm)
            step_ = tf.where(tf.math.is_nan(step_), tf.zeros_like(step_), step_)
            x_adv = tf.clip_by_value(x_adv + step_, lo, hi)
            return _project(x_adv - x, eps, norm) + x, labels

        def run_from(start, x_adv, labels):
            def body(i, x_adv):
                return i + 1, step(x_adv, labels)[0]

            _, x_adv = tf.while_loop(lambda i, _: i < max_iter, body, [tf.constant(start), x_adv])
            return x_adv

        if num_random_init == 0:
            if use_pred:
                # ART predicts the labels on the clean batch, which is also the first
                # iterate: take them from that forward pass (max_iter >= 1 here).
                x_adv, labels = step(x, None)
                return run_from(1, x_adv, labels)
            return run_from(0, x, y)

        clean_pred = tf.argmax(model(x, training=False), axis=1)
        labels = tf.one_hot(clean_pred, nb_classes) if use_pred else y
        bshape = [-1] + [1] * len(input_shape)
        best = x
        for r in range(num_random_init):
            # ART adds the random start at iteration 0 and projects w.r.t. the clean x.
            noise = _random_ball(tf.random.experimental.stateless_fold_in(seed, r), tf.shape(x), eps, norm)
            x_adv = run_from(0, tf.clip_by_value(x + noise, lo, hi), labels)
            if r == 0:
                best = x_adv
            else:  # later restarts replace the samples on which they succeed (compute_success_array)
                adv_pred = tf.argmax(model(x_adv, training=False), axis=1)
                if targeted:
                    success = tf.equal(adv_pred, tf.argmax(labels, axis=1))
                else:
                    success = tf.not_equal(adv_pred, clean_pred)
                best = tf.where(tf.reshape(success, bshape), x_adv, best)
        return best

    return kernel


def pgd(
    model,
    x,
    *,
    eps=0.3,
    eps_step=0.1,
    max_iter=10,
    norm="inf",
    batch_size=32,
    clip_values=(0.0, 1.0),
    num_random_init=0,
    y=None,
    targeted=False,
    seed=0,
) -> np.ndarray:
    """Projected gradient descent, equivalent to ART's ``ProjectedGradientDescent``
    (``ProjectedGradientDescentTensorFlowV2``) for a ``TensorFlowV2Classifier``.

    All ``max_iter`` iterations of a batch run inside one compiled call.  With
    ``num_random_init > 0`` every restart begins at a uniform random point of
    the ``norm`` ball (clipped), and, like ART, restarts after the first replace
    the samples on which they succeed.

    Deviations from ART: the random starts come from TF's stateless RNG seeded
    with ``seed`` (and the batch index) instead of numpy's global RNG, so they
    are reproducible but not the same draws as ART's; with ``y=None`` the labels
    come from the first forward pass of each batch rather than one separate
    ``predict`` over all of ``x``.
    """
    x, y_arr, targeted, batch_size, clip, nb_classes = _prepare(model, x, y, targeted, batch_size, clip_values)
    norm = _check_norm(norm)
    eps = _check_real("eps", eps, low=0.0)
    eps_step = _check_real("eps_step", eps_step, low=0.0, strict=True)
    max_iter = _check_int("max_iter", max_iter, low=0)
    num_random_init = _check_int("num_random_init", num_random_init, low=0)
    seed = _check_int("seed", seed, low=0)
    if max_iter == 0:
        return x.copy()

    n = x.shape[0]
    batch = min(batch_size, n)
    key = ("pgd", norm, targeted, y_arr is None, num_random_init, clip, x.shape[1:])
    kernel = _kernel(
        model,
        key,
        lambda ref: _build_pgd(
            ref,
            norm=norm,
            targeted=targeted,
            use_pred=y_arr is None,
            num_random_init=num_random_init,
            clip=clip,
            input_shape=x.shape[1:],
            nb_classes=nb_classes,
        ),
    )
    dummy_y = np.zeros((batch, nb_classes), np.float32)
    eps_t, step_t, iter_t = tf.constant(eps, tf.float32), tf.constant(eps_step, tf.float32), tf.constant(max_iter)
    out = np.empty_like(x)
    for i, (start, stop) in enumerate(_batches(n, batch)):
        yb = dummy_y[: stop - start] if y_arr is None else y_arr[start:stop]
        seed_t = tf.constant([seed, i], tf.int64)
        out[start:stop] = kernel(x[start:stop], yb, eps_t, step_t, iter_t, seed_t).numpy()
    return out


# ---------------------------------------------------------------------------
# Adversarial patch
# ---------------------------------------------------------------------------


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
    x = _check_x(x)
    if x.ndim != 4:
        raise ValueError(f"x must have shape (n, height, width, channels); got {x.shape}")
    nb_classes = _nb_classes(model)
    if isinstance(target, numbers.Integral) and not isinstance(target, bool):
        if not 0 <= target < nb_classes:
            raise ValueError(f"target must be a class index in [0, {nb_classes}); got {target!r}")
        y = np.zeros((x.shape[0], nb_classes), np.float32)
        y[:, int(target)] = 1.0
    elif isinstance(target, (bool, float, str)) or target is None:
        raise ValueError(f"target must be a class index or per-image labels; got {target!r}")
    else:
        y = _to_one_hot("target", target, x.shape[0], nb_classes)
    learning_rate = _check_real("learning_rate", learning_rate, low=0.0, strict=True)
    max_iter = _check_int("max_iter", max_iter, low=0)
    rotation_max = _check_real("rotation_max", rotation_max, low=0.0)
    if rotation_max > 180:
        raise ValueError(f"rotation_max must be in [0, 180]; got {rotation_max!r}")
    scale_min = _check_real("scale_min", scale_min, low=0.0, strict=True)
    scale_max = _check_real("scale_max", scale_max, low=0.0, strict=True)
    if scale_min > 1:
        raise ValueError(f"scale_min must be in (0, 1]; got {scale_min!r}")
    if scale_max > 1 or scale_max < scale_min:
        raise ValueError(f"scale_max must be in [scale_min, 1]; got {scale_max!r}")
    batch_size = _check_int("batch_size", batch_size, low=1)
    seed = _check_int("seed", seed, low=0)
    clip = _check_clip(clip_values)
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
    train = _kernel(
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
    x = _check_x(x)
    if x.ndim != 4:
        raise ValueError(f"x must have shape (n, height, width, channels); got {x.shape}")
    patch = np.asarray(patch, dtype=np.float32)
    if patch.ndim != 3 or patch.shape[0] != patch.shape[1] or patch.shape[2] != x.shape[3]:
        raise ValueError(f"patch must have shape (s, s, {x.shape[3]}); got {patch.shape}")
    scale = _check_real("scale", scale, low=0.0, strict=True)
    rotation = _check_real("rotation", rotation)
    try:
        sx, sy = (float(s) for s in shift)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"shift must be a pair (x, y) of numbers; got {shift!r}") from exc
    lo, hi = _check_clip(clip_values)
    params = tf.tile(tf.constant([[scale, rotation / 180.0 * math.pi, sx, sy]], tf.float64), [x.shape[0], 1])
    out = _overlay(tf.constant(x), tf.constant(patch), tf.constant(_circular_mask(patch.shape)), params)
    return tf.clip_by_value(out, lo, hi).numpy()
