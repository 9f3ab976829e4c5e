"""TensorFlow forms of the preprocessing defenses, for compiled adaptive attacks (BPDA).

An adaptive attack differentiates through the defense by BPDA (Athalye et al. 2018): the
forward pass is the defense, the backward pass the identity, which is ART's
``estimate_gradient`` for smoothing. ART runs the defense in numpy between TensorFlow calls;
here it is a TensorFlow op inside the compiled kernel, with the identity as its gradient,
in front of the model (:func:`bpda_model`), so FGM, PGD and the patch attack it unchanged.

:func:`median_filter` is ART's ``SpatialSmoothing`` (scipy's ``median_filter``, ``reflect``
mode, then clipping) for odd windows: a median selects one of its inputs, so the output is
ART's exactly. :func:`host_defense` runs a defense that has no TensorFlow form (ART's JPEG
encoder) on the host inside the kernel, one call per batch: the forward pass is ART's, bit for bit.
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np
import tensorflow as tf

__all__ = ["GaussianNoise", "bpda_model", "host_defense", "median_filter"]


def median_filter(x: tf.Tensor, window: int, clip=(0.0, 1.0)) -> tf.Tensor:
    """Per-channel median over ``window`` x ``window`` neighbourhoods of NHWC images, padded as
    scipy's ``reflect`` (TensorFlow's ``SYMMETRIC``), clipped to ``clip``. ``window`` must be odd."""
    if window % 2 != 1:
        raise ValueError(f"median_filter: window {window} must be odd")
    if window == 1:
        return tf.clip_by_value(x, *clip)
    half = window // 2
    padded = tf.pad(x, [[0, 0], [half, half], [half, half], [0, 0]], mode="SYMMETRIC")
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    patches = tf.image.extract_patches(padded, sizes=[1, window, window, 1], strides=[1, 1, 1, 1],
                                       rates=[1, 1, 1, 1], padding="VALID")
    patches = tf.reshape(patches, [-1, height, width, window * window, channels])
    median = tf.sort(patches, axis=3)[:, :, :, (window * window) // 2, :]
    return tf.clip_by_value(median, *clip)


def host_defense(x: tf.Tensor, defense: Callable[[np.ndarray], np.ndarray]) -> tf.Tensor:
    """``defense`` (numpy in, numpy out, same shape) on the host for the whole batch, inside a compiled
    kernel (``tf.numpy_function``); BPDA supplies its gradient. Deterministic defenses only: the kernel
    may call it again for the same input."""
    def run(batch: np.ndarray) -> np.ndarray:
        return np.asarray(defense(batch), dtype=np.float32)

    out = tf.numpy_function(run, [x], tf.float32, stateful=False, name="host_defense")
    out.set_shape(x.shape)
    return out


class GaussianNoise:
    """ART's ``GaussianAugmentation`` at prediction (``x + N(0, sigma^2)``, clipped), drawing from a
    TensorFlow generator that ``reseed`` resets before each attack: the same seed, the same draws,
    whatever ran before. ``expectation_draws`` is the EoT count the kernels' gradients average."""

    def __init__(self, sigma: float, clip=(0.0, 1.0), expectation_draws: int = 1):
        self.sigma, self.clip, self.expectation_draws = float(sigma), clip, int(expectation_draws)
        self._generator = tf.random.Generator.from_seed(0)

    def reseed(self, seed: int) -> None:
        self._generator.reset_from_seed(int(seed))

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        noise = self._generator.normal(tf.shape(x), stddev=self.sigma, dtype=x.dtype)
        return tf.clip_by_value(x + noise, *self.clip)


class BPDA(keras.layers.Layer):
    """Forward: ``defense(x)``; backward: the identity."""

    def __init__(self, defense: Callable[[tf.Tensor], tf.Tensor], **kwargs):
        super().__init__(**kwargs)
        self.defense = defense

    def call(self, x):
        @tf.custom_gradient
        def defended(t):  # not t + stop_gradient(d(t) - t): that rounds, and the model would see other inputs
            return self.defense(t), lambda upstream: upstream

        return defended(x)


def bpda_model(model, defense: Callable[[tf.Tensor], tf.Tensor]) -> keras.Model:
    """``model`` behind ``defense`` with BPDA gradients: what a compiled adaptive attack attacks.
    A random defense's ``reseed`` and ``expectation_draws`` become the model's."""
    inputs = keras.Input(shape=model.input_shape[1:], name="defended_image")
    defended = keras.Model(inputs, model(BPDA(defense, name="bpda")(inputs)), name=f"bpda_{model.name}")
    defended.expectation_draws = getattr(defense, "expectation_draws", 1)
    defended.reseed = getattr(defense, "reseed", lambda seed: None)
    return defended
