"""ART wrappers around registered Keras models: logits out, [0, 1] pixels in."""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

CLIP_VALUES = (0.0, 1.0)


def make_classifier(model, n_classes: int, input_shape: Sequence[int], preprocessing_defences=None, optimizer=None,
                    train_step=None, model_output: str = "auto", input_range: tuple[float, float] = (0.0, 1.0)):
    """A ``TensorFlowV2Classifier`` with [0, 1] clip values, as Dioptra's attacks expect, on the logits of ``model``.

    The model is adapted (:func:`pytest_robustness.models.adapter.adapt`): a final
    softmax is peeled off and inputs are mapped from [0, 1] to ``input_range``,
    so the loss is ART's ``CategoricalCrossentropy(from_logits=True)`` and its
    gradient is exact. ``predict`` returns logits (ART's convention; the harness
    takes their softmax where it needs probabilities); ``classifier.model`` is
    the wrapper, which the compiled kernels attack too.

    ``preprocessing_defences`` are applied on predict (and, for the adaptive
    threat model, differentiated through by ART's BPDA estimate). ``optimizer`` or
    ``train_step`` make it trainable with ``fit`` (adversarial training: the wrapper
    shares the model's weights).
    """
    import keras

    from .adapter import adapt

    adapted = adapt(model, model_output, input_range)
    return _classifier_class()(
        model=adapted.model,
        nb_classes=n_classes,
        input_shape=tuple(input_shape),
        loss_object=keras.losses.CategoricalCrossentropy(from_logits=True),
        optimizer=optimizer,
        train_step=train_step,
        clip_values=CLIP_VALUES,
        preprocessing_defences=list(preprocessing_defences) if preprocessing_defences else None,
    )


@functools.cache
def _classifier_class():
    """ART's ``TensorFlowV2Classifier``, with the class gradients of per-sample labels (Carlini-Wagner asks for
    two a step) in one compiled backward pass; ART runs one eager pass per distinct label. The rows of a batch
    are independent, so each row's gradient is ART's, to float rounding. Every other case is ART's own code."""
    import tensorflow as tf
    from art.estimators.classification import TensorFlowV2Classifier
    from art.preprocessing.standardisation_mean_std.tensorflow import StandardisationMeanStdTensorFlow

    class LogitsClassifier(TensorFlowV2Classifier):
        _per_sample_gradient = None  # the compiled pass, built on first use

        def _identity_preprocessing(self) -> bool:
            return not self.preprocessing_defences and all(
                isinstance(op, StandardisationMeanStdTensorFlow) and np.all(op.mean == 0) and np.all(op.std == 1)
                for op in self.preprocessing_operations)

        def class_gradient(self, x, label=None, training_mode: bool = False, **kwargs):
            labels = None if label is None or isinstance(label, (int, np.integer)) else np.asarray(label)
            if labels is None or labels.shape != (len(x),) or training_mode or not self._identity_preprocessing():
                return super().class_gradient(x, label=label, training_mode=training_mode, **kwargs)
            if self._per_sample_gradient is None:
                model = self.model

                @tf.function(reduce_retracing=True)
                def per_sample_gradient(images, classes):
                    with tf.GradientTape() as tape:
                        tape.watch(images)
                        chosen = tf.gather(model(images, training=False), classes, axis=1, batch_dims=1)
                    return tape.gradient(chosen, images)

                self._per_sample_gradient = per_sample_gradient
            gradients = self._per_sample_gradient(tf.convert_to_tensor(np.asarray(x, dtype=np.float32)),
                                                  tf.convert_to_tensor(labels.astype(np.int32)))
            return np.expand_dims(gradients.numpy(), axis=1)

    return LogitsClassifier


def softmax(logits):
    """Row-wise softmax of a numpy array of logits (float32), as Keras computes it."""
    z = np.asarray(logits, dtype=np.float32)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
