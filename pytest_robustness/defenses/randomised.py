"""Randomised defenses (Gaussian noise): Expectation over Transformation, and accuracy over draws.

A defense that draws noise at prediction makes one gradient and one accuracy a
single random sample: the gradient understates the attack, the accuracy is
noise. Following Athalye, Engstrom, Ilyas & Kwok 2018 ("Synthesizing Robust
Adversarial Examples", EoT) and Athalye et al. 2018 (section 5.2), the adaptive
attack's loss gradient is the mean over ``eot_samples`` draws of the defense,
and defended accuracy is the mean over ``eot_samples`` prediction draws, with its
standard deviation logged (``defended_accuracy_std``).

The patch attack optimises through ART's own TensorFlow loop: its Adam steps
already see a fresh draw each step (a stochastic estimate of the same
expectation), so the EoT classifier changes FGM/PGD-style gradients only.
"""

from __future__ import annotations

import copy
import functools
from typing import Any, Mapping

import numpy as np

from ..models.predictors import predict_in_batches, unwrap

EOT_PARAM = "eot_samples"


def eot_samples(resolved: Mapping[str, Any]) -> int:
    """Draws per gradient and per accuracy of a configured defense (1: not randomised)."""
    return int(resolved.get(EOT_PARAM, 1)) if resolved.get("apply_predict", True) else 1


@functools.cache
def _eot_class():
    from art.estimators.classification import TensorFlowV2Classifier

    class EoTClassifier(TensorFlowV2Classifier):
        """The same classifier, its loss and class gradients averaged over ``eot_samples`` calls
        (each call draws the randomised preprocessing anew)."""

        eot_samples = 1

        def loss_gradient(self, x, y, training_mode: bool = False, **kwargs):
            total = super().loss_gradient(x, y, training_mode=training_mode, **kwargs)
            for _ in range(self.eot_samples - 1):
                total = total + super().loss_gradient(x, y, training_mode=training_mode, **kwargs)
            return total / self.eot_samples

        def class_gradient(self, x, label=None, training_mode: bool = False, **kwargs):
            total = super().class_gradient(x, label=label, training_mode=training_mode, **kwargs)
            for _ in range(self.eot_samples - 1):
                total = total + super().class_gradient(x, label=label, training_mode=training_mode, **kwargs)
            return total / self.eot_samples

    return EoTClassifier


def with_eot(classifier, samples: int):
    """``classifier`` (an ART ``TensorFlowV2Classifier``) whose gradients average ``samples`` draws:
    a shallow copy sharing its model and defences, of the EoT subclass (ART checks the type)."""
    if samples <= 1:
        return classifier
    averaged = copy.copy(classifier)
    averaged.__class__ = _eot_class()
    averaged.eot_samples = int(samples)
    return averaged


def accuracy_over_draws(classifier, x: np.ndarray, y: np.ndarray, samples: int) -> np.ndarray:
    """Accuracy of ``samples`` successive prediction draws (the caller seeds the first)."""
    art = unwrap(classifier)
    return np.array([np.mean(predict_in_batches(art, x).argmax(1) == y) for _ in range(samples)], dtype=np.float64)


__all__ = ["EOT_PARAM", "accuracy_over_draws", "eot_samples", "with_eot"]
