"""Compiled DeepFool: ``art.attacks.evasion.DeepFool`` (ART 1.20.1) on a logits model, one ``tf.function``
per batch with the whole linearisation loop inside it.

ART computes every class gradient with one backward pass per class and steps in numpy between
TensorFlow calls; here the class gradients are one ``batch_jacobian`` and the loop never leaves the
graph. The arithmetic is ART's, step for step: the same closest linearised boundary, the same
``tol``, the update of only the still-unflipped rows, the same stop (every row's label changed, or
``max_iter``), the overshoot ``(1 + epsilon)`` and the clipping. With ``nb_grads`` below the number
of classes the candidate classes are ART's (the union over the set of each image's ``nb_grads`` most
likely classes), and so is its indexing of the predictions by the candidates' positions.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .kernels import batches, cached_kernel, check_clip, check_int, check_real, check_x, nb_classes_of

TOL = 10e-8  # ART's "small scalar to avoid division by 0"


def _build_deepfool(model_ref, *, clip, input_shape, nb_classes):
    lo, hi = clip
    sig = [
        tf.TensorSpec([None, *input_shape], tf.float32),  # x (any batch size: one trace for the short batch too)
        tf.TensorSpec([None, nb_classes], tf.float32),  # the logits ART predicted for x before the loop
        tf.TensorSpec([None], tf.int32),  # the candidate classes (sorted)
        tf.TensorSpec([], tf.int32),  # max_iter
        tf.TensorSpec([], tf.float32),  # epsilon (overshoot)
    ]
    rows_shape = [-1] + [1] * len(input_shape)

    @tf.function(input_signature=sig, reduce_retracing=True)
    def kernel(x, logits, labels_set, max_iter, epsilon):
        model = model_ref()
        n, candidates = tf.shape(x)[0], tf.shape(labels_set)[0]
        fk_hat = tf.argmax(logits, axis=1, output_type=tf.int32)
        # np.searchsorted(labels_set, fk_hat): each row's own class, as a position among the candidates
        own = tf.cast(tf.searchsorted(tf.tile(labels_set[None], [n, 1]), fk_hat[:, None])[:, 0], tf.int32)
        is_own = tf.one_hot(own, candidates, on_value=True, off_value=False)

        def class_gradients(batch):  # one backward pass per class, as ART (faster here than batch_jacobian)
            with tf.GradientTape(persistent=True) as tape:
                tape.watch(batch)
                out = model(batch, training=False)
                per_class = [out[:, k] for k in range(nb_classes)]
            grads = tf.stack([tape.gradient(column, batch) for column in per_class], axis=1)
            return tf.gather(grads, labels_set, axis=1)  # (n, candidates, ...)

        def cond(step, batch, f, grd, active):
            return tf.logical_and(step < max_iter, tf.reduce_any(active))

        def body(step, batch, f, grd, active):
            grad_diff = grd - tf.gather(grd, own, axis=1, batch_dims=1)[:, None]
            # ART indexes the predictions by the candidate's position (the class itself with every class)
            f_diff = tf.gather(f, labels_set, axis=1) - tf.gather(f, own, axis=1, batch_dims=1)[:, None]
            norm = tf.norm(tf.reshape(grad_diff, [n, candidates, -1]), axis=2) + TOL
            value = tf.where(is_own, tf.constant(np.inf, tf.float32), tf.abs(f_diff) / norm)
            closest = tf.argmin(value, axis=1, output_type=tf.int32)
            absolute = tf.abs(tf.gather(f_diff, closest, axis=1, batch_dims=1))
            direction = tf.gather(grad_diff, closest, axis=1, batch_dims=1)
            squared = tf.norm(tf.reshape(direction, [n, -1]), axis=1) ** 2 + TOL
            step_r = tf.reshape(absolute / squared, rows_shape) * direction
            moved = tf.clip_by_value(batch + step_r * (hi - lo), lo, hi)
            batch = tf.where(tf.reshape(active, rows_shape), moved, batch)
            f = model(batch, training=False)
            active = tf.equal(tf.argmax(f, axis=1, output_type=tf.int32), fk_hat)
            return step + 1, batch, f, class_gradients(batch), active

        start = [tf.constant(0), x, logits, class_gradients(x), tf.ones([n], tf.bool)]
        _, batch, _, _, _ = tf.while_loop(cond, body, start)
        return tf.clip_by_value(x + (1 + epsilon) * (batch - x), lo, hi)

    return kernel


def deepfool(model, x, *, max_iter: int = 100, epsilon: float = 1e-6, nb_grads: int = 10, batch_size: int = 1,
             clip_values=(0.0, 1.0)) -> np.ndarray:
    """``DeepFool(classifier, max_iter, epsilon, nb_grads, batch_size).generate(x)`` for a classifier
    whose model is ``model`` (logits) and whose clip values are ``clip_values``."""
    x = check_x(x)
    max_iter = check_int("max_iter", max_iter, low=0)
    epsilon = check_real("epsilon", epsilon, low=0.0)
    nb_grads = check_int("nb_grads", nb_grads, low=1)
    batch_size = check_int("batch_size", batch_size, low=1)
    clip = check_clip(clip_values)
    nb_classes = nb_classes_of(model)
    n = x.shape[0]
    logits = np.concatenate([model(x[start:stop], training=False).numpy() for start, stop in batches(n, batch_size)])
    if nb_grads < nb_classes:  # ART: the classes among some image's nb_grads most likely
        labels_set = np.unique(np.argsort(-logits, axis=1)[:, :nb_grads])
    else:
        labels_set = np.arange(nb_classes)
    kernel = cached_kernel(model, ("deepfool", clip, x.shape[1:]), lambda ref: _build_deepfool(
        ref, clip=clip, input_shape=x.shape[1:], nb_classes=nb_classes))
    labels_t = tf.constant(labels_set.astype(np.int32))
    out = np.empty_like(x)
    for start, stop in batches(n, batch_size):
        out[start:stop] = kernel(x[start:stop], logits[start:stop], labels_t, tf.constant(max_iter, tf.int32),
                                 tf.constant(epsilon, tf.float32)).numpy()
    return out


__all__ = ["deepfool"]
