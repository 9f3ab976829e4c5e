"""ART wrappers around registered Keras models."""

from __future__ import annotations

from typing import Sequence

CLIP_VALUES = (0.0, 1.0)


def make_classifier(model, n_classes: int, input_shape: Sequence[int], preprocessing_defences=None, optimizer=None,
                    train_step=None):
    """A ``TensorFlowV2Classifier`` with [0, 1] clip values, as Dioptra's attacks expect.

    ``preprocessing_defences`` are applied on predict (and, for the adaptive
    threat model, differentiated through by ART's BPDA estimate). ``optimizer`` or
    ``train_step`` make it trainable with ``fit`` (adversarial training).
    """
    import keras
    from art.estimators.classification import TensorFlowV2Classifier

    return TensorFlowV2Classifier(
        model=model,
        nb_classes=n_classes,
        input_shape=tuple(input_shape),
        loss_object=keras.losses.CategoricalCrossentropy(),
        optimizer=optimizer,
        train_step=train_step,
        clip_values=CLIP_VALUES,
        preprocessing_defences=list(preprocessing_defences) if preprocessing_defences else None,
    )

