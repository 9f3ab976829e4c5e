"""What a defense is to the harness: its parameters, and either a preprocessor or a training recipe.

A preprocessing defense builds an ART preprocessor that is attached to the
classifier. Two threat models are evaluated for it (see ``cells.defended``):

- ``oblivious`` (Dioptra's way): the examples crafted on the undefended model
  are classified by the defended one;
- ``adaptive``: the attack is crafted against the defended classifier, with
  gradients through the defense by ART's BPDA estimate (each preprocessor's
  ``estimate_gradient``; the identity for JPEG, smoothing and noise).

To carry BPDA into ART's TensorFlow code paths (the patch attack optimises
through ``_predict_framework``), every preprocessor is wrapped as a TensorFlow
op whose forward pass is the ART preprocessor itself and whose backward pass
is that preprocessor's ``estimate_gradient``: same outputs, ART's gradients.

A training defense (``pgd``, ``patch_training``) registers a training recipe
(``models.recipes``) and is evaluated on the model that recipe trains; so is a
preprocessing defense with ``apply_fit`` (trained on defended data).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from ..attacks.base import seed_everything
from ..errors import RobustnessUsageError
from ..models.recipes import register_recipe
from ..models.training import fit, training_subset
from ..params import Param, flag, resolve

THREAT_MODELS = ("oblivious", "adaptive")

Constraint = Callable[[Mapping[str, Any]], "str | None"]

# Parameters every preprocessing defense has.
APPLY = {
    "apply_fit": flag(False, doc="train a model on defended data (its own registered model) and evaluate that"),
    "apply_predict": flag(True, doc="apply when predicting"),
}


@dataclass(frozen=True)
class Defense:
    name: str
    params: Mapping[str, Param]
    # A preprocessing defense builds its ART preprocessor from the resolved parameters ...
    preprocessor: Callable[[Mapping[str, Any]], Any] | None = None
    # ... a training defense registers a training recipe and returns the recipe's name.
    recipe: Callable[[Mapping[str, Any]], str] | None = None
    # For compiled adaptive attacks: a builder (no arguments) of the preprocessor's TensorFlow form
    # (x -> defended x), called only when an attack needs it (a cached cell loads no TensorFlow), or
    # None where these parameters have none (the adaptive cell then runs ART's BPDA).
    compiled: Callable[[Mapping[str, Any]], Callable[[Any], Any] | None] | None = None
    constraints: tuple[Constraint, ...] = ()
    doc: str = ""

    def training_recipe(self, resolved: Mapping[str, Any]) -> str | None:
        """The model this configured defense is evaluated on, if not the plain one: a training
        defense's recipe, or, for a preprocessing defense with ``apply_fit``, the model trained
        on defended data (registered as its own model)."""
        if self.recipe is not None:
            return self.recipe(resolved)
        if self.preprocessor is not None and resolved.get("apply_fit"):
            return fit_recipe(self, resolved)
        return None

    def resolve(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return resolve(f"defense {self.name}", self.params, values, self.constraints)

    def key(self, resolved: Mapping[str, Any]) -> str:
        """Identity of a configured defense: keys classifiers, memos and caches."""
        return f"{self.name}{json.dumps(dict(sorted(resolved.items())), separators=(',', ':'), default=str)}"


@functools.cache
def _bpda_class():
    import tensorflow as tf
    from art.defences.preprocessor.preprocessor import PreprocessorTensorFlowV2

    class BPDAPreprocessor(PreprocessorTensorFlowV2):
        """An ART numpy preprocessor as a TF op: its forward, its ``estimate_gradient`` backward."""

        def __init__(self, inner):
            super().__init__(is_fitted=True, apply_fit=inner.apply_fit, apply_predict=inner.apply_predict)
            self.inner = inner

        def forward(self, x, y=None):
            inner = self.inner

            @tf.custom_gradient
            def op(t):
                out = tf.numpy_function(lambda a: np.asarray(inner(a)[0], dtype=np.float32), [t], tf.float32)
                out.set_shape(t.shape)

                def grad(dy):
                    g = tf.numpy_function(
                        lambda a, d: np.asarray(inner.estimate_gradient(a, d), dtype=np.float32), [t, dy], tf.float32)
                    g.set_shape(t.shape)
                    return g

                return out, grad

            return op(tf.cast(tf.convert_to_tensor(x), tf.float32)), y

        def __repr__(self):
            return f"BPDA({self.inner!r})"

    return BPDAPreprocessor


def bpda(preprocessor):
    return _bpda_class()(preprocessor)


def fit_training(session, model, architecture: str, training, *, params: Mapping[str, Any],
                 defense: "Defense") -> dict[str, float]:
    """Plain training on the defended training set: ``defense``'s preprocessor applied to
    (images, labels), e.g. Gaussian augmentation adding noisy copies (Dioptra's data augmentation)."""
    data = session.dataset
    x, y = training_subset(data.x_train, data.y_train, training.samples)
    seed_everything(session.settings.seed)
    x_def, y_def = defense.preprocessor({**params, "apply_fit": True})(np.array(x), np.array(y))
    y_def = np.asarray(y if y_def is None else y_def)
    # Keras validates on the last images: shuffle, or it would validate on the noisy copies only.
    order = np.random.default_rng([session.settings.seed, 23]).permutation(len(x_def))
    metrics = fit(model, np.asarray(x_def, dtype=np.float32)[order], y_def[order], dataclasses.replace(training, samples=0),
                  data.n_classes, session.settings.seed)
    return {**metrics, "defended_training_images": float(len(x_def))}


def fit_recipe(defense: "Defense", resolved: Mapping[str, Any]) -> str:
    """The recipe of a preprocessing defense with ``apply_fit``: ``<name>-fit-<digest>``."""
    return register_recipe(f"{defense.name}-fit", functools.partial(fit_training, defense=defense), resolved, {})


def check_threat_model(threat_model: str) -> str:
    if threat_model not in THREAT_MODELS:
        raise RobustnessUsageError(f"threat_model {threat_model!r}: unknown; choose from {', '.join(THREAT_MODELS)}")
    return threat_model




__all__ = ["APPLY", "THREAT_MODELS", "Constraint", "Defense", "bpda", "check_threat_model"]
