"""Compiled PGD: ``art.attacks.evasion.ProjectedGradientDescent`` (for a ``TensorFlowV2Classifier``
ART dispatches to ``ProjectedGradientDescentTensorFlowV2``) as one ``tf.function`` per (model,
configuration); its direction and random start are shared with compiled adversarial training."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .kernels import (
    batches,
    cached_kernel,
    check_int,
    check_norm,
    check_real,
    flat,
    loss_gradient,
    prepare_inputs,
    project,
)


def pgd_direction(grad, norm):
    """``ProjectedGradientDescentTensorFlowV2._compute_perturbation`` (same TF ops)."""
    grad = tf.where(tf.math.is_nan(grad), tf.zeros_like(grad), grad)
    g2 = flat(grad)
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


def random_ball(seed, shape, eps, norm):
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
            grad, labels = loss_gradient(model, x_adv, labels, nb_classes)
            if targeted:
                grad = grad * -1.0
            step_ = eps_step * pgd_direction(grad, norm)
            step_ = tf.where(tf.math.is_nan(step_), tf.zeros_like(step_), step_)
            x_adv = tf.clip_by_value(x_adv + step_, lo, hi)
            return project(x_adv - x, eps, norm) + x, labels

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
            noise = random_ball(tf.random.experimental.stateless_fold_in(seed, r), tf.shape(x), eps, norm)
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
    x, y_arr, targeted, batch_size, clip, nb_classes = prepare_inputs(model, x, y, targeted, batch_size, clip_values)
    norm = check_norm(norm)
    eps = check_real("eps", eps, low=0.0)
    eps_step = check_real("eps_step", eps_step, low=0.0, strict=True)
    max_iter = check_int("max_iter", max_iter, low=0)
    num_random_init = check_int("num_random_init", num_random_init, low=0)
    seed = check_int("seed", seed, low=0)
    if max_iter == 0:
        return x.copy()

    n = x.shape[0]
    batch = min(batch_size, n)
    key = ("pgd", norm, targeted, y_arr is None, num_random_init, clip, x.shape[1:])
    kernel = cached_kernel(
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
    for i, (start, stop) in enumerate(batches(n, batch)):
        yb = dummy_y[: stop - start] if y_arr is None else y_arr[start:stop]
        seed_t = tf.constant([seed, i], tf.int64)
        out[start:stop] = kernel(x[start:stop], yb, eps_t, step_t, iter_t, seed_t).numpy()
    return out
