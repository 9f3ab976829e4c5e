"""Compiled Auto-PGD: ``art.attacks.evasion.AutoProjectedGradientDescent`` (ART 1.20.1, a
``TensorFlowV2Classifier``, ``loss_type`` ``"cross_entropy"`` or ``"difference_logits_ratio"``) with the
iteration loop of each batch inside one ``tf.function``.

ART's arithmetic, step for step (Croce & Hein 2020 as ART implements it): the per-image step size
``eta`` starting at ``eps_step``; the first step without momentum, then momentum 0.75; the checkpoints
``ceil(p_j * max_iter)`` with ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``; at a checkpoint the
step is halved, and the iterate moved back to the best point, where fewer than 0.75 of the steps since
the last checkpoint raised the loss, or where neither the step size nor the best loss changed; the
early stop when every loss of the batch is 0; the result is the last iterate (not the best point),
kept where it fools the model. ART's quirks too: the first step accepts ``f_1 >= f_0`` even when
targeted, the targeted DLR is ART's (the untargeted formula on the target label), the loss gradient
is of the batch mean.

The restarts run as ART's outer loop in numpy, with ART's own ``random_sphere`` and ``projection``,
drawing from numpy's global RNG in ART's order: the same seed gives the same starting points. Each
iteration takes one forward and backward pass at the new iterate (its loss and the next gradient
together); ART takes a backward pass and two forward passes.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from .kernels import batches, cached_kernel, check_bool, check_int, check_norm, check_real, flat, prepare_inputs

TOL = 10e-8  # ART's "small scalar to avoid division by 0"
ALPHA = 0.75  # momentum
RHO = 0.75  # fraction of steps that must have raised the loss since the last checkpoint
LOSSES = ("cross_entropy", "difference_logits_ratio")


def checkpoints(max_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """ART's ``var_w`` as two arrays over the iterations: is ``k`` a checkpoint, and the checkpoint before it
    (``var_w[var_w.index(k) - 1]``, the same float sums so the same ceilings)."""
    var_w = [0, 0.22]
    while True:
        p_next = var_w[-1] + max(var_w[-1] - var_w[-2] - 0.03, 0.06)
        if p_next > 1:
            break
        var_w.append(p_next)
    var_w = [math.ceil(p * max_iter) for p in var_w]
    is_checkpoint = np.zeros(max_iter, dtype=bool)
    previous = np.zeros(max_iter, dtype=np.float32)
    for k in range(1, max_iter):
        if k in var_w:
            is_checkpoint[k] = True
            previous[k] = var_w[var_w.index(k) - 1]
    return is_checkpoint, previous


def per_sample_loss(loss_type, y, logits):
    """ART's ``CrossEntropyLossV2`` / ``DifferenceLogitsRatioTensorFlowV2`` with ``reduction="none"``."""
    if loss_type == "cross_entropy":
        return tf.keras.losses.categorical_crossentropy(y, logits, from_logits=True)
    i_y_true = tf.cast(tf.math.argmax(tf.cast(y, tf.int32), axis=1), tf.int32)
    order = tf.argsort(logits, axis=1)
    i_z_i = tf.where(order[:, -1] != i_y_true, order[:, -1], order[:, -2])
    z_1 = tf.gather(logits, order[:, -1], axis=1, batch_dims=1)
    z_3 = tf.gather(logits, order[:, -3], axis=1, batch_dims=1)
    z_i = tf.gather(logits, i_z_i, axis=1, batch_dims=1)
    z_y = tf.gather(logits, i_y_true, axis=1, batch_dims=1)
    return -(z_y - z_i) / (z_1 - z_3)


def project64(values, eps, norm):
    """``art.utils.projection`` (suboptimal=True): ART rescales in float64 (its eps is a float64 array)."""
    v2 = flat(values)
    if norm == "inf":
        v2 = tf.sign(v2) * tf.minimum(tf.abs(v2), eps)
    else:
        vn = tf.cast(tf.norm(v2, ord=2, axis=1, keepdims=True), tf.float64)
        scale = tf.where(vn != 0, tf.minimum(tf.constant(1.0, tf.float64), tf.cast(eps, tf.float64) / vn),
                         tf.zeros_like(vn))
        v2 = tf.cast(tf.cast(v2, tf.float64) * scale, tf.float32)
    return tf.reshape(v2, tf.shape(values))


def _build_apgd(model_ref, *, norm, targeted, loss_type, clip, input_shape, nb_classes, draws=1):
    lo, hi = clip
    sign = -1.0 if targeted else 1.0
    bshape = [-1] + [1] * len(input_shape)
    sig = [
        tf.TensorSpec([None, *input_shape], tf.float32),  # x_k: the (random) starting point
        tf.TensorSpec([None, *input_shape], tf.float32),  # x_init: the clean images
        tf.TensorSpec([None, nb_classes], tf.float32),  # y: one-hot labels (targets when targeted)
        tf.TensorSpec([], tf.float32),  # eps
        tf.TensorSpec([], tf.float32),  # eps_step
        tf.TensorSpec([None], tf.bool),  # is_checkpoint[k]
        tf.TensorSpec([None], tf.float32),  # previous checkpoint of k
    ]

    @tf.function(input_signature=sig, reduce_retracing=True)
    def kernel(x_k, x_init, y, eps, eps_step, is_checkpoint, previous):
        model = model_ref()
        max_iter = tf.shape(is_checkpoint)[0]

        def loss_and_grad(x):
            total_f = total_g = None
            for _ in range(draws):  # a randomised model: the mean over draws (EoT); one draw otherwise
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    f = per_sample_loss(loss_type, y, model(x, training=False))
                    mean = tf.reduce_mean(f)
                g = tape.gradient(mean, x)
                total_f, total_g = (f, g) if total_f is None else (total_f + f, total_g + g)
            if draws > 1:
                total_f, total_g = total_f / draws, total_g / draws
            return total_f, total_g * sign

        def direction(grad):
            if norm == "inf":
                return tf.sign(grad)
            g2 = flat(grad)
            return grad / tf.reshape(tf.sqrt(tf.reduce_sum(tf.square(g2), axis=1)) + TOL, bshape)

        def pick(mask, a, b):  # rows of a where mask, else of b
            return tf.where(tf.reshape(mask, bshape) if a.shape.rank > 1 else mask, a, b)

        eta = tf.fill(tf.shape(x_k)[:1], eps_step)
        # k = 0: a plain step from the starting point
        f_0, grad = loss_and_grad(x_k)
        z = tf.clip_by_value(x_k + tf.reshape(eta, bshape) * direction(grad), lo, hi)
        x_1 = x_init + project64(z - x_init, eps, norm)
        f_1, grad_1 = loss_and_grad(x_1)
        better = f_1 >= f_0  # ART's first comparison, the same targeted or not
        f_max = tf.where(better, f_1, f_0)
        x_max = pick(better, x_1, x_k)
        x_max_m_1 = x_init
        count = tf.cast(better, tf.float32)
        state = (tf.constant(1), tf.constant(False), x_1, x_k, grad_1, eta, x_max, x_max_m_1, f_max, eta, f_0, count)

        def cond(k, done, *_):
            return tf.logical_and(k < max_iter, tf.logical_not(done))

        def body(k, done, x_k, x_k_m_1, grad, eta, x_max, x_max_m_1, f_max, eta_w, f_max_w, count):
            z = tf.clip_by_value(x_k + tf.reshape(eta, bshape) * direction(grad), lo, hi)
            z = x_init + project64(z - x_init, eps, norm)
            x_next = x_k + ALPHA * (z - x_k) + (1 - ALPHA) * (x_k - x_k_m_1)
            x_next = tf.clip_by_value(x_next, lo, hi)
            x_next = x_init + project64(x_next - x_init, eps, norm)
            f, grad_next = loss_and_grad(x_next)
            all_zero = tf.reduce_all(tf.equal(f, 0.0))
            improved = f < f_max if targeted else f > f_max
            count = count + tf.cast(improved, tf.float32)
            x_max = pick(improved, x_next, x_max)
            x_max_m_1 = pick(improved, x_k, x_max_m_1)
            f_max = tf.where(improved, f, f_max)
            x_k_m_1, x_k = x_k, x_next

            def checkpoint():
                cond_1 = count < RHO * (tf.cast(k, tf.float32) - previous[k])
                cond_2 = tf.logical_and(tf.equal(eta_w, eta), tf.equal(f_max_w, f_max))
                halve = tf.logical_or(cond_1, cond_2)
                new_eta = tf.where(halve, eta / 2, eta)
                new_x_k = pick(halve, x_max, x_k)
                new_x_k_m_1 = pick(halve, x_max_m_1, x_k_m_1)
                # the gradient at the moved rows (rows are independent: the others keep theirs)
                new_grad = tf.cond(tf.reduce_any(halve), lambda: loss_and_grad(new_x_k)[1], lambda: grad_next)
                return new_x_k, new_x_k_m_1, new_grad, new_eta, tf.zeros_like(count), new_eta, f_max

            def carry_on():
                return x_k, x_k_m_1, grad_next, eta, count, eta_w, f_max_w

            x_k, x_k_m_1, grad_next, eta, count, eta_w, f_max_w = tf.cond(
                tf.logical_and(is_checkpoint[k], tf.logical_not(all_zero)), checkpoint, carry_on)
            return (k + 1, all_zero, x_k, x_k_m_1, grad_next, eta, x_max, x_max_m_1, f_max, eta_w, f_max_w, count)

        x_last = tf.while_loop(cond, body, state)[2]
        return x_last, tf.argmax(model(x_last, training=False), axis=1)

    return kernel


def _build_predict(model_ref, input_shape):
    @tf.function(input_signature=[tf.TensorSpec([None, *input_shape], tf.float32)], reduce_retracing=True)
    def predict(x):
        return tf.argmax(model_ref()(x, training=False), axis=1)

    return predict


def apgd(model, x, *, eps=0.3, eps_step=0.1, max_iter=100, norm="inf", loss_type="cross_entropy",
         nb_random_init=5, batch_size=32, clip_values=(0.0, 1.0), y=None, targeted=False, draws=1) -> np.ndarray:
    """Auto-PGD, equal to ART's ``AutoProjectedGradientDescent`` on the same model, images and numpy seed.

    ``model`` outputs logits. With ``y=None`` the labels are the model's predictions (ART's rule);
    targeted attacks need ``y`` (the targets). Draws the random starts from numpy's global RNG as ART
    does (seed it first: ``seed_everything``). ``draws`` > 1 is for a model whose forward pass is random:
    each loss and gradient is the mean over that many forward passes (Expectation over Transformation,
    AutoAttack's "rand" version); ART has no such option.
    """
    from art.utils import projection, random_sphere

    x, y_arr, targeted, batch_size, clip, nb_classes = prepare_inputs(model, x, y, targeted, batch_size, clip_values)
    norm = check_norm(norm)
    if norm == 1:
        raise ValueError('norm must be "inf" or "2" for the compiled APGD; got 1')
    eps = check_real("eps", eps, low=0.0, strict=True)
    eps_step = check_real("eps_step", eps_step, low=0.0, strict=True)
    max_iter = check_int("max_iter", max_iter, low=1)
    nb_random_init = check_int("nb_random_init", nb_random_init, low=1)
    if loss_type not in LOSSES:
        raise ValueError(f"loss_type must be one of {', '.join(LOSSES)}; got {loss_type!r}")
    check_bool("targeted", targeted)
    draws = check_int("draws", draws, low=1)
    art_norm = np.inf if norm == "inf" else 2
    shape = x.shape[1:]
    predict = cached_kernel(model, ("apgd_predict", shape), lambda ref: _build_predict(ref, shape))
    kernel = cached_kernel(model, ("apgd", norm, targeted, loss_type, clip, shape, draws), lambda ref: _build_apgd(
        ref, norm=norm, targeted=targeted, loss_type=loss_type, clip=clip, input_shape=shape, nb_classes=nb_classes,
        draws=draws))

    def predicted(images):
        return np.concatenate([predict(images[a:b]).numpy() for a, b in batches(len(images), 128)])

    if y_arr is None:
        y_arr = np.eye(nb_classes, dtype=np.float32)[predicted(x)]
    labels = y_arr.argmax(axis=1)
    is_checkpoint, previous = checkpoints(max_iter)
    eps_t, step_t = tf.constant(eps, tf.float32), tf.constant(eps_step, tf.float32)
    x_adv = x.copy()
    for _ in range(nb_random_init):
        pred = predicted(x_adv)
        robust = pred != labels if targeted else pred == labels
        if not robust.any():
            break
        x_robust, y_robust, x_init = x_adv[robust], y_arr[robust], x[robust]
        n, m = x_robust.shape[0], int(np.prod(shape))
        x_robust = x_robust + random_sphere(n, m, eps, art_norm).reshape(x_robust.shape).astype(np.float32)
        x_robust = np.clip(x_robust, clip[0], clip[1])
        x_robust = x_init + projection(x_robust - x_init, eps, art_norm)
        for start, stop in batches(n, batch_size):
            x_k, pred_k = kernel(x_robust[start:stop], x_init[start:stop], y_robust[start:stop], eps_t, step_t,
                                 is_checkpoint, previous)
            pred_k = pred_k.numpy()
            fooled = pred_k == y_robust[start:stop].argmax(1) if targeted else pred_k != y_robust[start:stop].argmax(1)
            x_robust[start:stop][fooled] = x_k.numpy()[fooled]
        x_adv[robust] = x_robust
    return x_adv
