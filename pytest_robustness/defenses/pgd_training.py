"""PGD adversarial training (Madry et al.), a training defense: the model is trained with ART's
``AdversarialTrainer`` and PGD on the whole training set (Dioptra's version trains on a single batch, a
bug) and registered as its own model, tagged ``pgd``. Both threat models apply: ``oblivious`` classifies
the undefended model's examples, ``adaptive`` attacks the PGD model itself. ``compiled.pgd_training``
is the same recipe in one compiled step per batch.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..attacks.base import seed_everything
from ..models.classifiers import make_classifier
from ..models.recipes import register_recipe
from ..models.training import make_optimizer, training_subset
from ..params import numeric
from .defense import Defense

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


def pgd_recipe(pgd: Mapping[str, Any]) -> str:
    """Register the PGD recipe for these parameters; ``pgd`` for the defaults, else ``pgd-<digest>``."""
    return register_recipe("pgd", pgd_training, pgd, PGD_DEFAULTS)


PGD = Defense("pgd", PGD_PARAMS, recipe=pgd_recipe, constraints=(_eps_step_within_eps,),
              doc="PGD adversarial training (ART AdversarialTrainer), registered as its own model")
