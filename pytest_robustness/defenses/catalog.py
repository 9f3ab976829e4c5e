"""Registry of named defenses: Dioptra's preprocessing defenses (through ART) and PGD adversarial training.

A preprocessing defense builds an ART preprocessor that is attached to the
classifier. Two threat models are evaluated for it (see ``Robustness.defend``):

- ``oblivious`` (Dioptra's way): the examples crafted on the undefended model
  are classified by the defended one;
- ``adaptive``: the attack is crafted against the defended classifier, with
  gradients through the defense by ART's BPDA estimate (each preprocessor's
  ``estimate_gradient``; the identity for JPEG, smoothing and noise).

To carry BPDA into ART's TensorFlow code paths (the patch attack optimises
through ``_predict_framework``), every preprocessor is wrapped as a TensorFlow
op whose forward pass is the ART preprocessor itself and whose backward pass
is that preprocessor's ``estimate_gradient``: same outputs, ART's gradients.

Adversarial training (``pgd``) is a training recipe: the model is trained with
ART's ``AdversarialTrainer`` and PGD on the whole training set (Dioptra's
version trains on a single batch, a bug) and registered as its own model,
tagged ``pgd``. Both threat models apply too: ``oblivious`` classifies the
undefended model's examples, ``adaptive`` attacks the PGD model itself.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from .. import registry_scope
from ..attacks.base import seed_everything
from ..errors import RobustnessUsageError
from ..models.classifiers import make_classifier
from ..models.training import fit, make_optimizer, training_subset
from ..params import Param, flag, numeric, resolve

THREAT_MODELS = ("oblivious", "adaptive")
CLIP_VALUES = (0.0, 1.0)

Constraint = Callable[[Mapping[str, Any]], "str | None"]


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


# -- preprocessing defenses ------------------------------------------------------------
APPLY = {
    "apply_fit": flag(False, doc="train a model on defended data (its own registered model) and evaluate that"),
    "apply_predict": flag(True, doc="apply when predicting"),
}


def _spatial_smoothing(p):
    from art.defences.preprocessor import SpatialSmoothing

    return SpatialSmoothing(window_size=p["window_size"], channels_first=False, clip_values=CLIP_VALUES,
                            apply_fit=p["apply_fit"], apply_predict=p["apply_predict"])


def _compiled_spatial_smoothing(p):
    """``SpatialSmoothing`` as a TensorFlow median filter: exact for odd windows (a median picks one input)."""
    if not p["apply_predict"] or p["window_size"] % 2 == 0:
        return None

    def build():
        from .compiled.preprocessors import median_filter

        return functools.partial(median_filter, window=p["window_size"], clip=CLIP_VALUES)

    return build


def _jpeg_compression(p):
    from art.defences.preprocessor import JpegCompression

    return JpegCompression(clip_values=CLIP_VALUES, quality=p["quality"], channels_first=p["channels_first"],
                           apply_fit=p["apply_fit"], apply_predict=p["apply_predict"], verbose=False)


def _compiled_jpeg_compression(p):
    """ART's own JPEG encoder, on the host inside the compiled kernel: bit-exact with the oblivious cells."""
    if not p["apply_predict"] or p["channels_first"]:
        return None

    def build():
        from .compiled.preprocessors import host_defense

        encoder = _jpeg_compression(p)
        return lambda x: host_defense(x, lambda batch: encoder(batch)[0])

    return build


def _compiled_gaussian_augmentation(p):
    """Gaussian noise from a seeded TensorFlow generator, its gradients averaged over ``eot_samples`` draws
    (the same expectation as ART's, other random numbers: equal in distribution, not elementwise)."""
    if not p["apply_predict"]:
        return None

    def build():
        from .compiled.preprocessors import GaussianNoise

        return GaussianNoise(p["sigma"], CLIP_VALUES, p["eot_samples"])

    return build


def _gaussian_augmentation(p):
    from art.defences.preprocessor import GaussianAugmentation

    return GaussianAugmentation(sigma=p["sigma"], augmentation=p["augmentation"], ratio=p["ratio"],
                                clip_values=CLIP_VALUES, apply_fit=p["apply_fit"], apply_predict=p["apply_predict"])


def _channels_last(p) -> str | None:
    if p["channels_first"]:
        return "channels_first=True is invalid: images here are channels-last (NHWC); expected false"
    return None


def _augmentation_only_on_fit(p) -> str | None:
    # Augmenting adds samples: it can only happen on fit (ART refuses it on predict).
    if p["augmentation"] and p["apply_predict"]:
        return "augmentation=True needs apply_predict=False (augmenting adds samples, only possible on fit)"
    if p["augmentation"] and not p["apply_fit"]:
        return "augmentation=True needs apply_fit=True"
    return None


# -- adversarial training ----------------------------------------------------------------
PGD_PARAMS = {
    # Dioptra's Madry trainer uses eps 0.15 and eps_step 0.001 (7 steps move a pixel by at
    # most 0.007: barely adversarial). These defaults train against the threat the suite
    # tests (L-inf 0.3 on [0, 1] images) within a CPU budget.
    "eps": numeric(0.3, 0, 1, low_open=True, id_prefix="eps", doc="L-inf budget of the training attack"),
    "eps_step": numeric(0.1, 0, 1, low_open=True, doc="PGD step size"),
    "max_iter": numeric(5, 1, integer=True, doc="PGD steps per training batch"),
    "ratio": numeric(0.5, 0, 1, low_open=True, doc="fraction of each batch replaced by PGD examples"),
    "epochs": numeric(3, 1, integer=True, doc="adversarial training epochs over the whole training set"),
}
PGD_DEFAULTS = {name: p.default for name, p in PGD_PARAMS.items()}


def _eps_step_within_eps(p) -> str | None:
    if p["eps_step"] > p["eps"]:
        return f"eps_step={p['eps_step']!r} must not exceed eps={p['eps']!r}"
    return None


def pgd_training(session, model, architecture: str, training, *, params: Mapping[str, Any]) -> dict[str, float]:
    """Adversarial training with PGD (L-inf), every batch of every epoch: ART's ``AdversarialTrainer``
    with ``--attack-backend art`` (the reference), else the compiled trainer reproducing its recipe.

    Starts from the plainly trained model of the same architecture (adversarial
    fine-tuning: reaches a robust model within a CPU budget) and trains with the
    session's optimizer settings.
    """
    import keras

    data, pgd = session.dataset, params
    model.set_weights(session.model(architecture).model.get_weights())
    seed_everything(session.settings.seed)
    optimizer = make_optimizer(training.optimizer, training.learning_rate)
    # Both trainers train the model through its logits (the wrapper shares its weights), as attacks use them
    loss_object = keras.losses.CategoricalCrossentropy(from_logits=True)
    x, y = training_subset(data.x_train, data.y_train, training.samples)
    y_onehot = keras.utils.to_categorical(y, data.n_classes)
    if session.settings.attack_backend == "art":
        art_pgd_training(model, x, y_onehot, data, optimizer, loss_object, training.batch_size, pgd)
    else:
        from .compiled.pgd_training import madry_pgd_fit

        def progress(epoch: int, epochs: int, seconds: float) -> None:
            session.progress(f"PGD training {architecture}: epoch {epoch + 1}/{epochs}, {seconds:.1f} s")

        from ..models.adapter import adapt

        madry_pgd_fit(adapt(model).model, x, y_onehot, optimizer=optimizer, loss_object=loss_object, eps=pgd["eps"],
                      eps_step=pgd["eps_step"], max_iter=pgd["max_iter"], ratio=pgd["ratio"], epochs=pgd["epochs"],
                      batch_size=training.batch_size, seed=session.settings.seed, progress=progress)
    return {f"pgd_{k}": float(v) for k, v in pgd.items()}


def art_pgd_training(model, x, y_onehot, data, optimizer, loss_object, batch_size: int, pgd) -> None:
    """The reference: ART's ``AdversarialTrainer`` with ART's PGD through a compiled train step."""
    import tensorflow as tf
    from art.attacks.evasion import ProjectedGradientDescent
    from art.defences.trainer import AdversarialTrainer

    @tf.function
    def train_step(net, images, labels):  # ART's default re-traces a tf.function on every batch
        with tf.GradientTape() as tape:
            loss = loss_object(labels, net(images, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, net.trainable_variables), net.trainable_variables))

    classifier = make_classifier(model, data.n_classes, data.input_shape, optimizer=optimizer, train_step=train_step)
    attack = ProjectedGradientDescent(classifier, norm=np.inf, eps=pgd["eps"], eps_step=pgd["eps_step"],
                                      max_iter=pgd["max_iter"], num_random_init=1, batch_size=batch_size,
                                      verbose=False)
    trainer = AdversarialTrainer(classifier, attack, ratio=pgd["ratio"])
    trainer.fit(x, y_onehot, batch_size=batch_size, nb_epochs=pgd["epochs"])


# Training recipes registered outside a pytest session (in a session: its registry's).
RECIPES: dict[str, tuple[Callable, dict[str, Any]]] = {}


def training_recipe(tag: str, train: Callable, resolved: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    """Register ``train`` with these parameters as a training recipe: named ``tag`` for the defaults,
    else ``tag-<digest of the parameters>``; the name tags the registered model it trains."""
    resolved = dict(resolved)
    name = tag
    if resolved != dict(defaults):
        name = f"{tag}-" + hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:8]
    registry_scope.table("recipe", RECIPES).setdefault(name, (functools.partial(train, params=resolved), resolved))
    return name


def recipe(name: str) -> tuple[Callable, dict[str, Any]]:
    """A registered training recipe (``""``, plain training, is the session's own)."""
    return registry_scope.table("recipe", RECIPES)[name]


def pgd_recipe(pgd: Mapping[str, Any]) -> str:
    """Register the PGD recipe for these parameters; ``pgd`` for the defaults, else ``pgd-<digest>``."""
    return training_recipe("pgd", pgd_training, pgd, PGD_DEFAULTS)


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
    return training_recipe(f"{defense.name}-fit", functools.partial(fit_training, defense=defense), resolved, {})


DEFENSES: dict[str, Defense] = {
    d.name: d
    for d in (
        Defense("spatial_smoothing", {
            "window_size": numeric(3, 1, integer=True, id_prefix="window", doc="median filter window (pixels)"),
            **APPLY,
        }, preprocessor=_spatial_smoothing, compiled=_compiled_spatial_smoothing,
            doc="ART SpatialSmoothing: local median filter"),
        Defense("jpeg_compression", {
            "quality": numeric(50, 1, 100, integer=True, id_prefix="q", doc="JPEG quality, 1 (worst) to 100 (best)"),
            "channels_first": flag(False, doc="Dioptra's parameter; images here are channels-last"),
            **APPLY,
        }, preprocessor=_jpeg_compression, compiled=_compiled_jpeg_compression, constraints=(_channels_last,),
            doc="ART JpegCompression"),
        Defense("gaussian_augmentation", {
            # Dioptra's default sigma is 1, which on [0, 1] images is noise larger than
            # the signal; 0.1 is a perceptible but digit-preserving noise level here.
            "sigma": numeric(0.1, 0, low_open=True, id_prefix="sigma", doc="standard deviation of the noise"),
            "ratio": numeric(1.0, 0, low_open=True, doc="with augmentation: noisy copies added per sample"),
            "augmentation": flag(False, doc="add noisy copies instead of replacing (fit only)"),
            # Randomised at prediction: adaptive gradients average this many draws (Expectation over
            # Transformation) and defended accuracy is the mean of this many prediction draws.
            "eot_samples": numeric(8, 1, integer=True, id_prefix="eot", doc="noise draws per gradient and accuracy"),
            **APPLY,
        }, preprocessor=_gaussian_augmentation, compiled=_compiled_gaussian_augmentation,
            constraints=(_augmentation_only_on_fit,),
            doc="ART GaussianAugmentation: Gaussian noise on the inputs"),
        Defense("pgd", PGD_PARAMS, recipe=pgd_recipe, constraints=(_eps_step_within_eps,),
                doc="PGD adversarial training (ART AdversarialTrainer), registered as its own model"),
    )
}


def get_defense(name: str) -> Defense:
    defenses = registry_scope.table("defense", DEFENSES)
    try:
        return defenses[name]
    except KeyError:
        raise RobustnessUsageError(f"defense {name!r}: unknown; choose from {', '.join(defenses)}") from None


def check_threat_model(threat_model: str) -> str:
    if threat_model not in THREAT_MODELS:
        raise RobustnessUsageError(f"threat_model {threat_model!r}: unknown; choose from {', '.join(THREAT_MODELS)}")
    return threat_model


__all__ = ["DEFENSES", "THREAT_MODELS", "Defense", "bpda", "check_threat_model", "get_defense", "pgd_recipe"]
