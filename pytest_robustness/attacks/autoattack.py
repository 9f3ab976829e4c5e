"""AutoAttack (Croce & Hein 2020): an ensemble of parameter-free attacks where an image counts as robust
only if every attack fails on it, the per-image worst case.

The standard version's attacks, in order, each run only on the images every earlier one failed on:

1. ``apgd-ce``: APGD on the cross-entropy, untargeted, one random start;
2. ``apgd-t``: targeted APGD on the DLR loss, at each image's 2nd, 3rd, ... 10th most likely clean
   class in turn (``n_target_classes`` = 9), one random start each;
3. ``deepfool``: ART has no FAB; its ``AutoAttack`` puts DeepFool (100 steps, 10 classes) in FAB-T's
   place, and so does this ensemble (a minimal-perturbation attack, counted only where what it found is
   inside the eps ball). ART's overshoot of 1e-3 often stops on the boundary, where rounding keeps the
   label, and then runs all 100 steps; the overshoot here is the DeepFool paper's 0.02 (``DEEPFOOL``);
4. ``square``: the query-based Square attack, ``square_queries`` (5,000) queries, one restart.

APGD starts with a step of 2 eps (the original's) and runs ``max_iter`` (100) iterations. The bookkeeping
is ART's own ``art.attacks.evasion.auto_attack.run_attack`` (what ``AutoAttack.generate`` runs): an attack
counts on an image when it changes the label and stays within ``(1 - 1e-4)`` of eps. The labels are the
model's predictions (the harness's rule for every attack; on the images the model gets right they are
the true labels, so the per-image worst case is AutoAttack's robust accuracy).

``art`` runs ART's classes (``AutoProjectedGradientDescent``, ``DeepFool``, ``SquareAttack``);
``compiled`` runs the compiled APGD and DeepFool kernels (ART's arithmetic and random draws) and ART's
``SquareAttack`` (it only queries predictions). The artifact ``broken_by`` says, per image, which
attack broke it first (its index in ``attacks``; -1 none; -2 misclassified before any attack).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from ..metrics.names import AUTOATTACK_STAGES
from ..params import Param, numeric
from .base import AttackOutput, AttackSpec, AttackTarget, norm_value

STAGES = AUTOATTACK_STAGES
STANDARD = "apgd-ce,apgd-t,deepfool,square"
RAND = "apgd-ce,apgd-dlr"  # the "rand" version, for a randomised model
PROBE_IMAGES = 16  # predicted twice to tell a randomised model
UNBROKEN, MISCLASSIFIED = -1, -2
DEEPFOOL = dict(max_iter=100, epsilon=0.02, nb_grads=10)


def stage_names(value: str) -> list[str]:
    return [name.strip() for name in str(value).split(",")]


def _valid_attacks(value: Any) -> bool:
    names = stage_names(value) if isinstance(value, str) else []
    return bool(names) and len(set(names)) == len(names) and all(name in STAGES for name in names)


PARAMS = {
    "norm": Param("inf", "one of inf, 2", lambda v: v in ("inf", "2"), lambda v: f"l{v}", doc="norm of the ball"),
    "eps": numeric(0.3, 0, low_open=True, id_prefix="eps", doc="radius of the ball"),
    "attacks": Param(STANDARD, f"a comma-separated list of distinct attacks among {', '.join(STAGES)}",
                     _valid_attacks, lambda v: "" if v == STANDARD else v.replace(",", "+"),
                     doc="the ensemble, in order (default: the standard version)"),
    "max_iter": numeric(100, 1, integer=True, id_prefix="iter", doc="APGD iterations"),
    "n_target_classes": numeric(9, 1, integer=True, doc="APGD-T's target classes (2nd most likely on)"),
    "square_queries": numeric(5000, 1, integer=True, id_prefix="queries", doc="Square's queries"),
    "batch_size": numeric(32, 1, integer=True, doc="samples per gradient batch"),
    "eot_draws": numeric(10, 1, integer=True, doc="a randomised model: draws per gradient and per verdict"),
}


class Stage:
    """One attack of the ensemble as ART's ``run_attack`` drives it: ``generate(x, y)`` on the images
    still robust, with their (one-hot) labels; untargeted from the ensemble's point of view."""

    targeted = False

    def __init__(self, name: str, generate: Callable[[np.ndarray, np.ndarray], np.ndarray]):
        self.name = name
        self._generate = generate

    def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs) -> np.ndarray:
        return np.asarray(self._generate(x, y), dtype=np.float32)

    def __repr__(self) -> str:
        return self.name


def top_targets(classifier, targeted_attack: Callable[[np.ndarray, np.ndarray], np.ndarray], n_targets: int,
                batch_size: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """APGD-T: the targeted attack at each image's 2nd, 3rd, ... most likely class (on the clean image) in
    turn, each run only on the images no earlier target fooled; fooled means the label changed."""

    def generate(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        labels = y.argmax(axis=1)
        order = np.argsort(classifier.predict(x, batch_size=batch_size), axis=1, kind="stable")
        x_adv, robust = x.copy(), np.ones(len(x), dtype=bool)
        for rank in range(2, min(n_targets, order.shape[1] - 1) + 2):
            if not robust.any():
                break
            rows = np.flatnonzero(robust)
            targets = np.eye(order.shape[1], dtype=np.float32)[order[rows, -rank]]
            adv = targeted_attack(x[rows], targets)
            fooled = classifier.predict(adv, batch_size=batch_size).argmax(axis=1) != labels[rows]
            x_adv[rows[fooled]] = adv[fooled]
            robust[rows[fooled]] = False
        return x_adv

    return generate


def art_stages(classifier, model, params: Mapping[str, Any]) -> dict[str, Callable[[], Stage]]:
    """The ensemble's attacks as ART's classes (built on first use: ART's APGD builds a classifier)."""
    from art.attacks.evasion import AutoProjectedGradientDescent, DeepFool

    norm, eps, batch = norm_value(params["norm"]), params["eps"], params["batch_size"]

    def apgd(loss_type: str, targeted: bool):
        return AutoProjectedGradientDescent(classifier, norm=norm, eps=eps, eps_step=2 * eps,
                                            max_iter=params["max_iter"], targeted=targeted, nb_random_init=1,
                                            batch_size=batch, loss_type=loss_type, verbose=False)

    def targeted():
        attack = apgd("difference_logits_ratio", True)
        return Stage("apgd-t", top_targets(classifier, lambda x, y: attack.generate(x, y=y),
                                           params["n_target_classes"], batch))

    def deepfool():
        attack = DeepFool(classifier, **DEEPFOOL, batch_size=batch, verbose=False)
        return Stage("deepfool", lambda x, y: attack.generate(x))

    return {"apgd-ce": lambda: Stage("apgd-ce", lambda x, y: apgd("cross_entropy", False).generate(x, y=y)),
            "apgd-t": targeted, "deepfool": deepfool, "square": lambda: square_stage(classifier, params)}


def compiled_stages(classifier, model, params: Mapping[str, Any]) -> dict[str, Callable[[], Stage]]:
    """The ensemble's attacks as the compiled kernels (ART's arithmetic), Square as ART's class."""
    from .compiled import apgd as apgd_kernel
    from .compiled import deepfool as deepfool_kernel

    eps, batch, clip = params["eps"], params["batch_size"], classifier.clip_values

    def apgd(loss_type: str, targeted: bool):
        return lambda x, y: apgd_kernel.apgd(model, x, eps=eps, eps_step=2 * eps, max_iter=params["max_iter"],
                                             norm=params["norm"], loss_type=loss_type, nb_random_init=1,
                                             batch_size=batch, clip_values=clip, y=y, targeted=targeted)

    return {"apgd-ce": lambda: Stage("apgd-ce", apgd("cross_entropy", False)),
            "apgd-t": lambda: Stage("apgd-t", top_targets(classifier, apgd("difference_logits_ratio", True),
                                                          params["n_target_classes"], batch)),
            "deepfool": lambda: Stage("deepfool", lambda x, y: deepfool_kernel.deepfool(
                model, x, **DEEPFOOL, batch_size=batch, clip_values=clip)),
            "square": lambda: square_stage(classifier, params)}


def rand_stages(classifier, model, params: Mapping[str, Any]) -> dict[str, Callable[[], Stage]]:
    """AutoAttack's "rand" version for a randomised model: APGD-CE and APGD-DLR (untargeted), each loss and
    gradient the mean over ``eot_draws`` forward passes (EoT). ART has no EoT APGD: the compiled kernel
    runs on either backend."""
    from .compiled import apgd as apgd_kernel

    def apgd(loss_type: str):
        return lambda x, y: apgd_kernel.apgd(
            model, x, eps=params["eps"], eps_step=2 * params["eps"], max_iter=params["max_iter"], norm=params["norm"],
            loss_type=loss_type, nb_random_init=1, batch_size=params["batch_size"],
            clip_values=classifier.clip_values, y=y, draws=params["eot_draws"])

    return {"apgd-ce": lambda: Stage("apgd-ce", apgd("cross_entropy")),
            "apgd-dlr": lambda: Stage("apgd-dlr", apgd("difference_logits_ratio"))}


def is_randomised(classifier, x: np.ndarray) -> bool:
    """AutoAttack's ``checks.py``: the same images predicted twice give different outputs."""
    probe = np.asarray(x[:PROBE_IMAGES], dtype=np.float32)
    return not np.array_equal(classifier.predict(probe), classifier.predict(probe))


def draw_predictions(classifier, x: np.ndarray, draws: int, batch_size: int) -> np.ndarray:
    """The predicted class of each image in each of ``draws`` forward passes, shape (draws, n)."""
    return np.stack([classifier.predict(x, batch_size=batch_size).argmax(axis=1) for _ in range(draws)])


def square_stage(classifier, params: Mapping[str, Any]) -> Stage:
    from art.attacks.evasion import SquareAttack

    attack = SquareAttack(classifier, norm=norm_value(params["norm"]), eps=params["eps"],
                          max_iter=params["square_queries"], p_init=0.8, nb_restarts=1, verbose=False)
    return Stage("square", lambda x, y: attack.generate(x, y=y))


def run_ensemble(classifier, x: np.ndarray, stages: list[Stage], norm, eps: float,
                 batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``AutoAttack.generate`` (ART 1.20, untargeted, sequential): labels from the predictions, each
    attack on the images still robust through ART's ``run_attack``; returns the examples and, per
    image, the index of the attack that broke it first."""
    from art.attacks.evasion.auto_attack import run_attack

    x_adv = np.asarray(x, dtype=np.float32).copy()
    scores = classifier.predict(x_adv, batch_size=batch_size)
    y = np.eye(scores.shape[1], dtype=np.float32)[scores.argmax(axis=1)]
    robust = classifier.predict(x_adv).argmax(axis=1) == y.argmax(axis=1)
    broken_by = np.where(robust, UNBROKEN, MISCLASSIFIED)
    for index, stage in enumerate(stages):
        if not robust.any():
            break
        x_adv, robust = run_attack(x=x_adv, y=y, sample_is_robust=robust, attack=stage, estimator_orig=classifier,
                                   norm=norm, eps=eps)
        broken_by[(broken_by == UNBROKEN) & ~robust] = index
    return x_adv, broken_by


def _generator(build_stages) -> Callable[[AttackTarget, np.ndarray, Mapping[str, Any]], AttackOutput]:
    """The ensemble on ``build_stages``' attacks; a randomised model (its predictions differ between two
    calls) gets the rand version, and its per-draw predictions of the clean and adversarial images
    (the cell counts an image robust only if every draw of both is right)."""
    def generator(target: AttackTarget, x: np.ndarray, params: Mapping[str, Any]) -> AttackOutput:
        randomised = is_randomised(target.classifier, x)
        names = RAND if randomised else params["attacks"]
        table = (rand_stages if randomised else build_stages)(target.classifier, target.model, params)
        stages = [table[name]() for name in stage_names(names)]
        x_adv, broken_by = run_ensemble(target.classifier, x, stages, norm_value(params["norm"]), params["eps"],
                                        params["batch_size"])
        artifacts = {"broken_by": broken_by}
        if randomised:
            artifacts["clean_draws"] = draw_predictions(target.classifier, x, params["eot_draws"], params["batch_size"])
            artifacts["adversarial_draws"] = draw_predictions(target.classifier, x_adv, params["eot_draws"],
                                                              params["batch_size"])
        return AttackOutput(x_adv, artifacts, {"randomised": randomised, "stages": names})

    return generator


AUTOATTACK = AttackSpec("autoattack", PARAMS, {"art": _generator(art_stages), "compiled": _generator(compiled_stages)},
                        doc="AutoAttack ensemble (APGD-CE, APGD-T, DeepFool for FAB-T, Square): per-image worst case",
                        versions={"art": 1, "compiled": 1})

__all__ = ["AUTOATTACK", "MISCLASSIFIED", "STAGES", "STANDARD", "UNBROKEN", "run_ensemble", "stage_names"]
