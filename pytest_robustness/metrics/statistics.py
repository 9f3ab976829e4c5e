"""Statistics of the verdict: confidence intervals, the paired baseline test, and sample sizes.

An accuracy measured on n images is a binomial proportion: with n = 1,000 its
standard error is about 0.015, so a point comparison against a floor or a
baseline flags noise and misses real changes. Here:

- ``wilson_interval``: the Wilson score interval (Wilson 1927; recommended over the
  normal interval by Brown, Cai & DasGupta 2001), logged as ``{metric}_ci_low`` /
  ``{metric}_ci_high`` for every accuracy-like metric;
- ``mcnemar``: the exact McNemar test (McNemar 1947) of two classifiers on the same
  images: only the discordant images (right for one, wrong for the other) carry
  information, and under "no difference" each is equally likely to go either way,
  a binomial(b + c, 1/2) (``scipy.stats.binomtest``);
- ``images_to_resolve``: how many paired images a drop of ``tolerance`` needs to be
  detected at ``alpha`` with 80% power (Connor 1987's sample size for McNemar's test).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

CONFIDENCE = 0.95
POWER = 0.8
# Metrics that are a proportion of images, with how their denominator is named in ``sample_sizes``.
PROPORTIONS = ("clean_accuracy", "adversarial_accuracy", "attack_success_rate", "targeted_success_rate",
               "patched_accuracy", "defended_accuracy", "control_accuracy", "control_targeted_success_rate",
               "robust_accuracy", "worst_class_clean_accuracy", "worst_class_adversarial_accuracy",
               "worst_class_robust_accuracy")


def _z(confidence: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2))


def wilson_interval(proportion: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of a proportion observed on ``n`` trials (NaN for n = 0)."""
    if n <= 0 or proportion is None or math.isnan(proportion):
        return float("nan"), float("nan")
    z = _z(confidence)
    p = min(max(float(proportion), 0.0), 1.0)
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # At 0 (or 1) the bound is exactly 0 (or 1); the formula leaves a rounding residue.
    return (0.0 if p == 0 else max(0.0, centre - half)), (1.0 if p == 1 else min(1.0, centre + half))


def intervals(values: Mapping[str, float], sizes: Mapping[str, int],
              confidence: float = CONFIDENCE) -> dict[str, float]:
    """``{metric}_ci_low`` and ``{metric}_ci_high`` for every proportion in ``values`` with a known size."""
    out: dict[str, float] = {}
    for name in PROPORTIONS:
        if name in values and name in sizes:
            low, high = wilson_interval(values[name], int(sizes[name]), confidence)
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = low, high
    return out


def sample_sizes(y_true: np.ndarray, y_adversarial: np.ndarray, clean_pred_of_adv: np.ndarray,
                 modified: np.ndarray | None, target: int | None) -> dict[str, int]:
    """The number of images each proportion of a scored cell is taken over (see ``cells.scoring._metrics``)."""
    sizes = {"clean_accuracy": len(y_true), "adversarial_accuracy": len(y_adversarial),
             "defended_accuracy": len(y_adversarial),
             "attack_success_rate": int(np.sum(np.asarray(clean_pred_of_adv) == np.asarray(y_adversarial)))}
    hit = np.ones(len(y_adversarial), dtype=bool) if modified is None else np.asarray(modified, dtype=bool)
    if modified is not None:
        sizes["patched_accuracy"] = int(hit.sum())
        sizes["control_accuracy"] = len(y_adversarial)
    if target is not None:
        sizes["targeted_success_rate"] = sizes["control_targeted_success_rate"] = \
            int(np.sum(np.asarray(y_adversarial)[hit] != int(target)))
    return sizes


# -- paired comparison with a baseline ---------------------------------------------------------
@dataclass(frozen=True)
class PairedComparison:
    """Candidate vs baseline on the same images: the accuracy difference and McNemar's exact p-value."""

    n: int
    candidate: float
    baseline: float
    only_candidate: int  # images the candidate gets right and the baseline wrong (b)
    only_baseline: int  # images the baseline gets right and the candidate wrong (c)
    p_value: float

    @property
    def difference(self) -> float:
        return self.candidate - self.baseline

    def describe(self) -> str:
        return (f"exact McNemar p={self.p_value:.3g} on {self.n} paired images "
                f"({self.only_baseline} right only for the baseline, {self.only_candidate} only for the candidate)")


def mcnemar(candidate_correct: np.ndarray, baseline_correct: np.ndarray) -> PairedComparison:
    """Exact (binomial) McNemar test, two-sided, of per-image correctness on the same images."""
    from scipy.stats import binomtest

    cand = np.asarray(candidate_correct, dtype=bool)
    base = np.asarray(baseline_correct, dtype=bool)
    if cand.shape != base.shape:
        raise ValueError(f"paired comparison needs the same images: {cand.shape} vs {base.shape}")
    b, c = int(np.sum(cand & ~base)), int(np.sum(~cand & base))
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    n = len(cand)
    return PairedComparison(n, float(cand.mean()) if n else float("nan"), float(base.mean()) if n else float("nan"),
                            b, c, p)


def regression(comparison: PairedComparison, tolerance: float, significance: float) -> bool:
    """A regression: worse by more than ``tolerance`` AND significantly different at ``significance``."""
    return comparison.difference < -tolerance and comparison.p_value < significance


def images_to_resolve(tolerance: float, discordance: float, significance: float, power: float = POWER) -> int:
    """Paired images needed to detect a drop of ``tolerance`` with McNemar's test (Connor 1987):
    ``n = (z_{a/2} sqrt(psi) + z_b sqrt(psi - d^2))^2 / d^2``, ``psi`` the discordant fraction
    (at least ``tolerance``: a drop of d needs at least d of the images to change)."""
    if tolerance <= 0:
        return 0
    psi = min(1.0, max(float(discordance), tolerance))
    z_alpha, z_beta = _z(1 - significance), _z(2 * power - 1)
    root = z_alpha * math.sqrt(psi) + z_beta * math.sqrt(max(psi - tolerance * tolerance, 0.0))
    return int(math.ceil(root * root / (tolerance * tolerance)))


def resolution_note(n: int, tolerance: float, discordance: float, significance: float) -> str:
    """A line for the summary when ``n`` images cannot resolve ``tolerance``, else ''."""
    needed = images_to_resolve(tolerance, discordance, significance)
    if n >= needed:
        return ""
    return (f"{n} images cannot resolve max_regression {tolerance:g} at significance {significance:g} "
            f"(80% power, discordance {discordance:.3f}): it needs about {needed}")


def pack(correct: np.ndarray) -> np.ndarray:
    """Per-image correctness as bits (what a cell stores for later paired comparisons)."""
    return np.packbits(np.asarray(correct, dtype=bool))


def unpack(bits: np.ndarray, n: int) -> np.ndarray:
    return np.unpackbits(np.asarray(bits, dtype=np.uint8))[:n].astype(bool)
