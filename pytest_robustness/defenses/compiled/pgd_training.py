"""PGD adversarial training as one compiled step per batch: the attack and the weight update together.

The recipe is ART's ``AdversarialTrainer`` with an L-inf ``ProjectedGradientDescent``
(one random start, true labels) on a ``TensorFlowV2Classifier``: each epoch shuffles the
training set; in each batch ``ceil(ratio * rows)`` randomly chosen rows are replaced by PGD
examples crafted against the current weights, and the mixed batch takes one optimizer step
(``training=True``, so dropout is active, as in ART's ``fit``). ART runs PGD through numpy
between Python calls; here PGD's iterations, the row replacement and the update are one
``tf.function`` call per batch.

Deviations from ART: the shuffles, the chosen rows and the random starts are drawn from a
seeded numpy ``Generator`` and TF's stateless RNG, not numpy's global RNG, so the trained
weights are reproducible but not ART's bit for bit; the robustness they reach is the same
(``tests/test_adversarial_training.py`` compares the two).
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import tensorflow as tf

from ...attacks.compiled.kernels import loss_gradient, project
from ...attacks.compiled.pgd import pgd_direction, random_ball

__all__ = ["madry_pgd_fit"]

# (epoch, epochs done, seconds so far) -> None: progress of a long training.
Progress = Callable[[int, int, float], None]


def _build_step(model, optimizer, loss_object, *, eps: float, eps_step: float, max_iter: int, clip, nb_classes: int):
    lo, hi = clip

    @tf.function(reduce_retracing=True)
    def step(x, y, adv_rows, seed):
        xs, ys = tf.gather(x, adv_rows), tf.gather(y, adv_rows)
        start = tf.clip_by_value(xs + random_ball(seed, tf.shape(xs), eps, "inf"), lo, hi)

        def body(i, x_adv):  # ProjectedGradientDescentTensorFlowV2._compute_tf, one iteration
            grad, _ = loss_gradient(model, x_adv, ys, nb_classes)
            x_adv = tf.clip_by_value(x_adv + eps_step * pgd_direction(grad, "inf"), lo, hi)
            return i + 1, project(x_adv - xs, eps, "inf") + xs

        _, x_adv = tf.while_loop(lambda i, _: i < max_iter, body, [tf.constant(0), start])
        mixed = tf.tensor_scatter_nd_update(x, adv_rows[:, None], x_adv)
        with tf.GradientTape() as tape:
            loss = loss_object(y, model(mixed, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    return step


def madry_pgd_fit(model, x: np.ndarray, y_onehot: np.ndarray, *, optimizer, loss_object, eps: float,
                  eps_step: float, max_iter: int, ratio: float, epochs: int, batch_size: int, seed: int,
                  clip=(0.0, 1.0), progress: Progress | None = None) -> dict[str, float]:
    """Train ``model`` in place on (``x``, ``y_onehot``) with the recipe above; returns the last loss."""
    n = len(x)
    rng = np.random.default_rng(seed)
    step = _build_step(model, optimizer, loss_object, eps=float(eps), eps_step=float(eps_step),
                       max_iter=int(max_iter), clip=tuple(float(c) for c in clip), nb_classes=y_onehot.shape[1])
    x = np.asarray(x, dtype=np.float32)
    y_onehot = np.asarray(y_onehot, dtype=np.float32)
    started, loss, call = time.perf_counter(), float("nan"), 0
    for epoch in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            nb_adv = int(math.ceil(ratio * len(rows)))
            adv_rows = rng.choice(len(rows), size=nb_adv, replace=False) if ratio < 1 else rng.permutation(len(rows))
            loss = float(step(x[rows], y_onehot[rows], tf.constant(adv_rows, tf.int32),
                              tf.constant([seed, call], tf.int64)))
            call += 1
        if progress is not None:
            progress(epoch, epochs, time.perf_counter() - started)
    return {"pgd_train_loss": loss}
