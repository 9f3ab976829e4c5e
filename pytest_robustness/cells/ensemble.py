"""An AutoAttack cell's verdict: the per-image worst case over the ensemble's attacks, what each attack
added, and which attack broke each image (an artifact and a small table in the cell's run).

``robust_accuracy`` is the fraction of images the model gets right clean *and* that no attack of the
ensemble broke: the number AutoAttack, RobustBench and papers report. ``robust_accuracy/after_<attack>``
is the same after the attacks up to and including that one (AutoAttack's running "robust accuracy
after APGD-CE: ..."), so the last equals ``robust_accuracy``; ``broken_by/<attack>`` is the fraction of
images that attack broke first.
"""

from __future__ import annotations

import csv
import io

import numpy as np

from ..attacks.autoattack import MISCLASSIFIED, UNBROKEN, stage_names
from ..metrics import statistics
from ..metrics.names import ENSEMBLE_METRICS
from .result import AttackResult

ROBUST = "robust_accuracy"
ATTRIBUTION_FILE = "autoattack_broken_by.csv"
SUMMARY_FILE = "autoattack_summary.md"


def after(stage: str) -> str:
    return f"{ROBUST}/after_{stage}"


def broken(stage: str) -> str:
    return f"broken_by/{stage}"


METRICS = ENSEMBLE_METRICS  # every name an ensemble cell can report (thresholds may bound them)


def is_ensemble(result: AttackResult) -> bool:
    return result.run is not None and "broken_by" in result.run.artifacts


def stages_of(result: AttackResult) -> list[str]:
    """The attacks that ran, in order (the rand version's for a randomised model)."""
    return stage_names(result.params.get("stages") or result.params["attacks"])


def clean_correct(result: AttackResult) -> np.ndarray:
    """Per image: right on the clean image (a randomised model: on every draw)."""
    draws = result.run.artifacts.get("clean_draws")
    if draws is not None:
        return np.all(np.asarray(draws) == result.y_true, axis=0)
    return result.clean_predictions == result.y_true


def robust_images(result: AttackResult) -> np.ndarray:
    """Per image: right on the clean image and on the ensemble's example (no attack broke it); a randomised
    model only if right on every draw of both, the cell's scoring draw included (the worst case over draws)."""
    scored = (result.clean_predictions == result.y_true) & (result.adversarial_predictions == result.y_true)
    draws = result.run.artifacts.get("adversarial_draws")
    if draws is not None:  # the scoring draw too: never above the single-draw accuracies
        scored &= np.all(np.asarray(draws) == result.y_true, axis=0)
    # and no attack broke it on the draw that checked it (a deterministic model: implied by the above)
    unbroken = np.asarray(result.run.artifacts["broken_by"]) == UNBROKEN
    return clean_correct(result) & scored & unbroken


def add_metrics(result: AttackResult) -> None:
    """``robust_accuracy`` (with its Wilson interval), the running accuracy after each attack and what each
    broke first, into ``result.metrics``."""
    stages = stages_of(result)
    broken_by = np.asarray(result.run.artifacts["broken_by"])
    clean_ok = clean_correct(result)
    n = len(result.y_true)
    values = {ROBUST: float(np.mean(robust_images(result))),
              "randomised": float(bool(result.params.get("randomised", False)))}
    for index, stage in enumerate(stages):
        still = clean_ok & ((broken_by == UNBROKEN) | (broken_by > index))
        values[after(stage)] = float(np.mean(still))
        values[broken(stage)] = float(np.mean(clean_ok & (broken_by == index)))
    result.metrics.update(values)
    result.sample_sizes[ROBUST] = n
    low, high = statistics.wilson_interval(values[ROBUST], n)
    result.metrics[f"{ROBUST}_ci_low"], result.metrics[f"{ROBUST}_ci_high"] = low, high


def verdicts(result: AttackResult) -> list[str]:
    """Per image: ``misclassified`` (wrong before any attack), the attack that broke it, or ``robust``."""
    stages = stages_of(result)
    broken_by = np.asarray(result.run.artifacts["broken_by"])
    clean_ok = clean_correct(result)
    out = []
    for ok, index, still in zip(clean_ok, broken_by, robust_images(result)):
        if not ok or index == MISCLASSIFIED:
            out.append("misclassified")
        elif index >= 0:
            out.append(stages[index])
        else:
            out.append("robust" if still else "a draw")  # randomised: no attack, but a prediction draw, got it wrong
    return out


def attribution_csv(result: AttackResult, class_names=()) -> bytes:
    def name(label) -> str:
        return class_names[label] if 0 <= label < len(class_names) else str(label)

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["image", "true", "clean_prediction", "adversarial_prediction", "broken_by"])
    for i, (t, c, a, v) in enumerate(zip(result.y_true, result.clean_predictions, result.adversarial_predictions,
                                         verdicts(result))):
        writer.writerow([i, name(t), name(c), name(a), v])
    return buffer.getvalue().encode()


def summary_table(result: AttackResult) -> str:
    """The attacks in order: images each broke first and the robust accuracy left after it."""
    stages = stages_of(result)
    counts = {v: 0 for v in ("misclassified", *stages, "a draw", "robust")}
    for verdict in verdicts(result):
        counts[verdict] = counts.get(verdict, 0) + 1
    n = len(result.y_true)
    randomised = result.params.get("randomised", False)
    lines = [f"AutoAttack {result.params.get('norm')} eps {result.params.get('eps')} on {n} images"
             + (f"; randomised model: the rand version (EoT over {result.params.get('eot_draws')} draws, an image "
                "robust only if right on every draw)" if randomised else ""), "",
             "| attack | images broken first | robust accuracy after |", "|---|---|---|",
             f"| (clean) | {counts['misclassified']} | {1 - counts['misclassified'] / n:.4f} |"]
    lines += [f"| {s} | {counts[s]} | {result.metrics[after(s)]:.4f} |" for s in stages]
    if counts["a draw"]:
        lines.append(f"| (a prediction draw) | {counts['a draw']} | {result.metrics[ROBUST]:.4f} |")
    lines.append(f"| **robust_accuracy** | {counts['robust']} robust | {result.metrics[ROBUST]:.4f} |")
    return "\n".join(lines) + "\n"


def log_attribution(tracker, run_id: str, result: AttackResult, prefix: str = "", class_names=()) -> None:
    tracker.log_bytes(run_id, f"{prefix}{ATTRIBUTION_FILE}", attribution_csv(result, class_names))
    tracker.log_bytes(run_id, f"{prefix}{SUMMARY_FILE}", summary_table(result).encode())
