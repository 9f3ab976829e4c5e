"""ART wrappers around registered Keras models: logits out, [0, 1] pixels in."""

from __future__ import annotations

from typing import Sequence

import numpy as np

CLIP_VALUES = (0.0, 1.0)


def make_classifier(model, n_classes: int, input_shape: Sequence[int], preprocessing_defences=None, optimizer=None,
                    train_step=None, model_output: str = "auto", input_range: tuple[float, float] = (0.0, 1.0)):
    """A ``TensorFlowV2Classifier`` with [0, 1] clip values, as Dioptra's attacks expect, on the logits of ``model``.

    The model is adapted (:func:`pytest_robustness.model_adapter.adapt`): a final
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
    from art.estimators.classification import TensorFlowV2Classifier

    from .model_adapter import adapt

    adapted = adapt(model, model_output, input_range)
    return TensorFlowV2Classifier(
        model=adapted.model,
        nb_classes=n_classes,
        input_shape=tuple(input_shape),
        loss_object=keras.losses.CategoricalCrossentropy(from_logits=True),
        optimizer=optimizer,
        train_step=train_step,
        clip_values=CLIP_VALUES,
        preprocessing_defences=list(preprocessing_defences) if preprocessing_defences else None,
    )


def softmax(logits):
    """Row-wise softmax of a numpy array of logits (float32), as Keras computes it."""
    z = np.asarray(logits, dtype=np.float32)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
