"""Gradient-masking checks: is a cell's robustness real, or do its attack's gradients fail?

A model whose loss gradient vanishes (a saturated softmax, an input quantiser,
a non-differentiable defence) defeats gradient attacks without being robust
(Athalye, Carlini & Wagner 2018, "Obfuscated Gradients Give a False Sense of
Security"; Carlini et al. 2019, "On Evaluating Adversarial Robustness", sections
4-5). For the classifier a cell's examples were crafted on (the model; for the
adaptive threat model the defended classifier, with BPDA and EoT) a cheap probe on
at most ``PROBE_IMAGES`` evaluation images (fewer for large images: ``probe_size``; a stratified
sample, as a folder's images come class by class) measures, with the true labels:

- ``zero_gradient``: the fraction of images whose input gradient of the attack's
  loss is exactly zero (must stay at most ``ZERO_GRADIENT_MAX``);
- ``rising_accuracy``: L-inf FGM at growing eps (the ladder, the cell's eps, 1.0):
  accuracy must not rise above the previous step's 95% Wilson interval, unless it stays
  at most the images' majority-class share: at eps 1.0 FGM's images are saturated sign
  patterns, which an honest model often gives one class, scoring that class's share
  (on two classes half the images: no sign of masking);
- ``iterative_weaker``: PGD at the cell's eps must not be weaker than FGM there
  (beyond FGM's interval);
- ``unbounded``: PGD at L-inf eps 1.0 (any image can become any other) must bring
  accuracy to at most ``UNBOUNDED_MAX_ACCURACY``;
- ``black_box_stronger``: a black-box attack (random sign noise at the cell's eps,
  and any attack registered in ``BLACK_BOX_PROBES``) must not beat the white-box FGM
  beyond its interval.

Every number is memoised per classifier (weights, defences, seed) and images in
the session's content-addressed cache, so a warm re-run loads no model.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..attacks.base import seed_everything
from ..data.datasets import content_digest
from ..metrics.statistics import wilson_interval
from ..models.predictors import predict_in_batches, unwrap

MODES = ("fail", "warn", "off")
PROBE_VERSION = 2  # 2: keyed by the kernels (compiled or ART's classes); defended probes compiled where they can be
PROBE_IMAGES = 200
PROBE_MIN_IMAGES = 32
PROBE_VALUES = PROBE_IMAGES * 32 * 32 * 3  # values probed at most: 200 images up to CIFAR's size
REFERENCE_EPS = 0.3  # the probe's eps for cells that are not L-inf FGM/PGD
LADDER = (0.1, 0.3, 1.0)
UNBOUNDED_EPS = 1.0
UNBOUNDED_MAX_ACCURACY = 0.1
ZERO_GRADIENT_MAX = 0.2
PGD_STEPS = 10

# Black-box attacks the probe also runs: name -> (classifier, x, y, eps, seed) -> x_adv.
# A transfer or query attack (e.g. Square) registered here is compared with the white-box FGM.
BlackBox = Callable[[Any, np.ndarray, np.ndarray, float, int], np.ndarray]


def random_sign_noise(classifier, x: np.ndarray, y: np.ndarray, eps: float, seed: int) -> np.ndarray:
    """The weakest black-box attack: a random corner of the L-inf ball."""
    rng = np.random.default_rng([seed, 17])
    return np.clip(x + eps * rng.choice(np.array([-1.0, 1.0], np.float32), size=x.shape), 0.0, 1.0).astype(np.float32)


BLACK_BOX_PROBES: dict[str, BlackBox] = {"noise": random_sign_noise}


class GradientMaskingWarning(UserWarning):
    """``--gradient-masking warn``: a suspected masking reported, not failed."""


@dataclass(frozen=True)
class Finding:
    check: str
    message: str


def probe_size(available: int, values_per_image: int) -> int:
    """How many images the probe attacks: ``PROBE_IMAGES``, fewer for images larger than CIFAR's (its
    twenty-odd attack passes would cost more than the cell's own attack: 32 images at 224x224x3), never
    fewer than ``PROBE_MIN_IMAGES``; logged as ``masking_images``, so every interval says what it rests on."""
    budget = PROBE_VALUES // max(values_per_image, 1)
    return min(available, PROBE_IMAGES, max(PROBE_MIN_IMAGES, budget))


def cell_eps(params: dict[str, Any]) -> float:
    """The L-inf budget the probe compares at: the cell's own for L-inf attacks, else the reference."""
    if str(params.get("norm", "")) == "inf" and isinstance(params.get("eps"), (int, float)):
        return float(min(max(params["eps"], 1e-6), 1.0))
    return REFERENCE_EPS


class Probe:
    """The probe of one classifier on fixed images; each measurement memoised on its own."""

    def __init__(self, memo: Callable[[tuple, Callable[[], dict]], dict], classifier, model: Callable[[], Any], x, y,
                 seed: int, compiled: bool):
        """``model()`` loads the Keras model (only on a miss: a warm re-run loads nothing)."""
        self.memo, self.classifier, self.model, self.seed = memo, classifier, model, seed
        self.x, self.y = x, y
        self.compiled = compiled  # the compiled kernels attack model() (a defense's compiled form, BPDA, EoT)
        self.key = (PROBE_VERSION, "compiled" if compiled else "art", content_digest(x), content_digest(y))

    def _kernel_model(self):
        """``model()``, a random defense in it reseeded: each measurement draws the same noise."""
        model = self.model()
        if hasattr(model, "reseed"):
            model.reseed(self.seed)
        return model

    def _art(self):
        return unwrap(self.classifier)

    def _accuracy(self, x_adv) -> float:
        return float(np.mean(predict_in_batches(self._art(), x_adv).argmax(1) == self.y))

    def _value(self, name: str, compute: Callable[[], float]) -> float:
        def measure():
            seed_everything(self.seed)
            return {"value": np.array(compute(), dtype=np.float64)}

        return float(self.memo(("masking", name, *self.key), measure)["value"])

    def zero_gradient_fraction(self) -> float:
        def compute():
            onehot = np.eye(self._art().nb_classes, dtype=np.float32)[self.y]
            grad = np.asarray(self._art().loss_gradient(self.x, onehot))
            return np.mean(np.all(grad.reshape(len(grad), -1) == 0, axis=1))

        return self._value("zero_gradient", compute)

    def clean(self) -> float:
        return self._value("clean", lambda: self._accuracy(self.x))

    def fgm(self, eps: float) -> float:
        def compute():
            if self.compiled:
                from ..attacks.compiled.fgm import fgm as fgm_kernel

                x_adv = fgm_kernel(self._kernel_model(), self.x, eps=eps, eps_step=eps, norm="inf", y=self.y)
            else:
                from art.attacks.evasion import FastGradientMethod

                onehot = np.eye(self._art().nb_classes, dtype=np.float32)[self.y]
                x_adv = FastGradientMethod(self._art(), norm=np.inf, eps=eps, batch_size=32).generate(self.x, onehot)
            return self._accuracy(x_adv)

        return self._value(f"fgm{eps:g}", compute)

    def pgd(self, eps: float, eps_step: float) -> float:
        def compute():
            if self.compiled:
                from ..attacks.compiled.pgd import pgd as pgd_kernel

                x_adv = pgd_kernel(self._kernel_model(), self.x, eps=eps, eps_step=eps_step, max_iter=PGD_STEPS, y=self.y,
                                       seed=self.seed % (2**31))
            else:
                from art.attacks.evasion import ProjectedGradientDescent

                onehot = np.eye(self._art().nb_classes, dtype=np.float32)[self.y]
                x_adv = ProjectedGradientDescent(self._art(), norm=np.inf, eps=eps, eps_step=eps_step,
                                                 max_iter=PGD_STEPS, num_random_init=0, batch_size=32,
                                                 verbose=False).generate(self.x, onehot)
            return self._accuracy(x_adv)

        return self._value(f"pgd{eps:g}-{eps_step:g}", compute)

    def black_box(self, name: str, eps: float) -> float:
        attack = BLACK_BOX_PROBES[name]
        return self._value(f"black_box-{name}{eps:g}", lambda: self._accuracy(
            attack(self._art(), self.x, self.y, eps, self.seed)))


def assess(probe: Probe, eps: float) -> tuple[dict[str, float], list[Finding]]:
    """The probe's metrics (``masking_*``) and the checks they fail."""
    n = len(probe.x)
    findings: list[Finding] = []
    metrics: dict[str, float] = {"masking_images": float(n), "masking_eps": eps}

    def high(p: float) -> float:
        return wilson_interval(p, n)[1]

    def low(p: float) -> float:
        return wilson_interval(p, n)[0]

    zero = probe.zero_gradient_fraction()
    metrics["masking_zero_gradient_fraction"] = zero
    metrics["masking_clean_accuracy"] = clean = probe.clean()
    if zero > ZERO_GRADIENT_MAX:
        findings.append(Finding("zero_gradient", f"the input gradient is exactly zero on {zero:.3f} of {n} images "
                                                 f"(at most {ZERO_GRADIENT_MAX:g})"))
    majority = float(np.unique(probe.y, return_counts=True)[1].max() / n) if n else 0.0
    metrics["masking_majority_share"] = majority
    ladder = sorted({*LADDER, eps})
    previous, previous_eps = clean, 0.0
    for step in ladder:
        value = probe.fgm(step)
        metrics[f"masking_fgm_accuracy_eps{step:g}"] = value
        if value > high(previous) and value > majority:
            findings.append(Finding("rising_accuracy", f"FGM accuracy rises from {previous:.3f} at eps {previous_eps:g} "
                                                       f"to {value:.3f} at eps {step:g} (95% interval of the first "
                                                       f"ends at {high(previous):.3f}; one class for every "
                                                       f"image scores {majority:.3f})"))
        previous, previous_eps = value, step
    fgm = metrics[f"masking_fgm_accuracy_eps{eps:g}"]
    metrics["masking_pgd_accuracy"] = pgd = probe.pgd(eps, eps / 4)
    if pgd > high(fgm):
        findings.append(Finding("iterative_weaker", f"PGD ({PGD_STEPS} steps) at eps {eps:g} leaves accuracy "
                                                    f"{pgd:.3f}, above single-step FGM's {fgm:.3f} (interval to "
                                                    f"{high(fgm):.3f})"))
    metrics["masking_unbounded_accuracy"] = unbounded = probe.pgd(UNBOUNDED_EPS, UNBOUNDED_EPS / 5)
    if unbounded > UNBOUNDED_MAX_ACCURACY:
        findings.append(Finding("unbounded", f"PGD with an unbounded budget (L-inf eps {UNBOUNDED_EPS:g}) leaves "
                                             f"accuracy {unbounded:.3f} (at most {UNBOUNDED_MAX_ACCURACY:g})"))
    for name in BLACK_BOX_PROBES:
        value = probe.black_box(name, eps)
        metrics[f"masking_black_box_{name}_accuracy"] = value
        if value < low(fgm):
            findings.append(Finding("black_box_stronger", f"black-box {name} at eps {eps:g} leaves accuracy "
                                                          f"{value:.3f}, below white-box FGM's {fgm:.3f} (interval "
                                                          f"from {low(fgm):.3f})"))
    return metrics, findings


def verdict(findings: list[Finding]) -> str:
    """One line for the failure message and the ``robustness.gradient_masking`` tag."""
    if not findings:
        return ""
    return "suspected gradient masking: " + "; ".join(f"{f.check}: {f.message}" for f in findings)


def report(line: str, mode: str) -> str | None:
    """The failure to add (mode ``fail``), or None after warning (``warn``)."""
    if not line or mode == "off":
        return None
    if mode == "warn":
        warnings.warn(GradientMaskingWarning(line), stacklevel=3)
        return None
    return line


__all__ = ["BLACK_BOX_PROBES", "Finding", "GradientMaskingWarning", "MODES", "Probe", "assess", "cell_eps",
           "probe_size", "report", "verdict"]
