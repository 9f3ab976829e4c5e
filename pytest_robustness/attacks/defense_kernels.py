"""TensorFlow forms of the preprocessing defenses, for compiled adaptive attacks (BPDA).

An adaptive attack differentiates through the defense by BPDA (Athalye et al. 2018): the
forward pass is the defense, the backward pass the identity, which is ART's
``estimate_gradient`` for smoothing. ART runs the defense in numpy between TensorFlow calls;
here it is a TensorFlow op inside the compiled kernel, with the identity as its gradient,
in front of the model (:func:`bpda_model`), so FGM, PGD and the patch attack it unchanged.

:func:`median_filter` is ART's ``SpatialSmoothing`` (scipy's ``median_filter``, ``reflect``
mode, then clipping) for odd windows: a median selects one of its inputs, so the output is
ART's exactly.
"""

from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf

__all__ = ["bpda_model", "median_filter"]


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
    """``model`` behind ``defense`` with BPDA gradients: what a compiled adaptive attack attacks."""
    inputs = keras.Input(shape=model.input_shape[1:], name="defended_image")
    return keras.Model(inputs, model(BPDA(defense, name="bpda")(inputs)), name=f"bpda_{model.name}")
