"""Auto-PGD (Croce & Hein 2020): PGD with a per-image step size halved at checkpoints, momentum 0.75 and
restarts, on the cross-entropy or the difference-of-logits-ratio (DLR) loss; L-inf and L2.

``art`` is ART's ``AutoProjectedGradientDescent`` (the reference); ``compiled`` is
:func:`pytest_robustness.attacks.compiled.apgd.apgd`, ART's arithmetic with each batch's iterations in one
``tf.function`` and the same random starts (numpy's global RNG, seeded with the session seed).
Untargeted, the labels are the model's predictions; ``targeted`` aims each image at its second most
likely class on the clean image (APGD-T's first target), logged as the ``target_labels`` artifact.
"""

from __future__ import annotations

import numpy as np

from ..params import choice, flag, numeric
from .base import AttackOutput, norm_value
from .define import define_attack

LOSSES = {"ce": "cross_entropy", "dlr": "difference_logits_ratio"}

PARAMS = {
    "norm": choice("inf", ("inf", "2"), id_format=lambda v: f"l{v}", doc="norm of the perturbation"),
    "eps": numeric(0.3, 0, low_open=True, id_prefix="eps", doc="maximum perturbation"),
    "eps_step": numeric(0.1, 0, low_open=True, doc="initial step size (halved at checkpoints)"),
    "max_iter": numeric(100, 1, integer=True, id_prefix="iter", doc="iterations per restart"),
    "nb_random_init": numeric(5, 1, integer=True, id_prefix="restarts", doc="random restarts (the first included)"),
    "loss": choice("ce", tuple(LOSSES), id_format=str, doc="ce (cross-entropy) or dlr (difference of logits ratio)"),
    "targeted": flag(False, on_id="targeted", off_id="", doc="aim at the second most likely clean class"),
    "batch_size": numeric(32, 1, integer=True, doc="samples per gradient batch"),
}


def second_class(logits: np.ndarray) -> np.ndarray:
    """Each image's second most likely class (the first target of APGD-T)."""
    return np.argsort(logits, axis=1, kind="stable")[:, -2]


def art_apgd_attack(classifier, params, targeted=None):
    from art.attacks.evasion import AutoProjectedGradientDescent

    return AutoProjectedGradientDescent(
        classifier, norm=norm_value(params["norm"]), eps=params["eps"], eps_step=params["eps_step"],
        max_iter=params["max_iter"], nb_random_init=params["nb_random_init"], batch_size=params["batch_size"],
        loss_type=LOSSES[params["loss"]], targeted=params["targeted"] if targeted is None else targeted,
        verbose=False)


def art_apgd(classifier, model, x, params):
    if not params["targeted"]:
        return art_apgd_attack(classifier, params).generate(x=x)
    targets = second_class(classifier.predict(x, batch_size=params["batch_size"]))
    y = np.eye(classifier.nb_classes, dtype=np.float32)[targets]
    return AttackOutput(art_apgd_attack(classifier, params).generate(x=x, y=y), {"target_labels": targets})


def compiled_apgd(classifier, model, x, params):
    from .compiled import apgd as apgd_kernel

    targets = None
    if params["targeted"]:
        targets = second_class(classifier.predict(x, batch_size=params["batch_size"]))
    x_adv = apgd_kernel.apgd(model, x, eps=params["eps"], eps_step=params["eps_step"], max_iter=params["max_iter"],
                             norm=params["norm"], loss_type=LOSSES[params["loss"]],
                             nb_random_init=params["nb_random_init"], batch_size=params["batch_size"],
                             clip_values=classifier.clip_values, y=targets, targeted=params["targeted"])
    return AttackOutput(x_adv, {"target_labels": targets} if targets is not None else {})


APGD = define_attack("apgd", PARAMS, art_apgd, compiled=compiled_apgd,
                     doc="ART AutoProjectedGradientDescent; CE or DLR loss, untargeted or at the second class")
