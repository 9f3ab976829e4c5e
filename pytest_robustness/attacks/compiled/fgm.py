"""Compiled FGM: ``art.attacks.evasion.FastGradientMethod`` (its numpy code path, ``minimal=True``
included) on a logits model with ``CategoricalCrossentropy(from_logits=True)``, as one ``tf.function``
per (model, configuration). Nothing inside it touches the host, so it runs unchanged on a GPU."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .kernels import (
    batches,
    cached_kernel,
    check_bool,
    check_norm,
    check_real,
    flat,
    loss_gradient,
    prepare_inputs,
    project,
)


def _fgm_direction(grad, norm):
    """``FastGradientMethod._compute_perturbation`` (numpy) after the NaN/sign steps."""
    grad = tf.where(tf.math.is_nan(grad), tf.zeros_like(grad), grad)
    g2 = flat(grad)
    if norm == "inf":
        d = tf.ones_like(g2)
    elif norm == 1:
        # np.argmax: first index of the largest |g|, one-hot.
        d = tf.one_hot(tf.argmax(tf.abs(g2), axis=1), tf.shape(g2)[1], dtype=g2.dtype)
    else:  # 2: |g| / ||g||_2, zero where the norm is zero, ** (q - 1) == ** 1
        q = tf.sqrt(tf.reduce_sum(g2 * g2, axis=1, keepdims=True))
        d = tf.abs(g2) / tf.where(q != 0, q, tf.constant(np.inf, g2.dtype))
    return tf.reshape(d, tf.shape(grad)) * tf.sign(grad)


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
        grad, y = loss_gradient(model, x, None if use_pred else y, nb_classes)
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
            return x + project(x_adv - x, eps, norm)

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
    x, y_arr, targeted, batch_size, clip, nb_classes = prepare_inputs(model, x, y, targeted, batch_size, clip_values)
    norm = check_norm(norm)
    minimal = check_bool("minimal", minimal)
    eps = check_real("eps", eps, low=0.0)
    eps_step = check_real("eps_step", eps_step, low=0.0, strict=True)

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
    kernel = cached_kernel(
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
    for start, stop in batches(n, batch):
        yb = dummy_y[: stop - start] if y_arr is None else y_arr[start:stop]
        out[start:stop] = kernel(x[start:stop], yb, schedule).numpy()
    return out
