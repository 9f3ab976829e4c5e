"""Per-class verdicts: an average can hide one class that collapses.

Every accuracy-like metric of a cell (``clean_accuracy``, ``adversarial_accuracy``, an ensemble's
``robust_accuracy``) is also reported per true class, as ``<metric>/class/<class name>`` (MLflow's UI
groups the names by their ``/`` prefix), and its worst class as ``worst_class_<metric>``, with the
Wilson interval over that class's images, which thresholds can bound like any metric
(``worst_class_adversarial_accuracy = 0.5``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..metrics import statistics
from .result import AttackResult

# The metrics a worst class is reported for (what thresholds may name: metric_names.KNOWN_METRICS).
PER_CLASS = ("clean_accuracy", "adversarial_accuracy", "robust_accuracy")


def class_label(index: int, class_names: Sequence[str]) -> str:
    name = class_names[index] if 0 <= index < len(class_names) else str(index)
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name)) or str(index)


def correct_by_metric(result: AttackResult, robust: np.ndarray | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """metric -> (true label of each image it is over, whether each is right)."""
    out = {"clean_accuracy": (result.y_true, result.clean_predictions == result.y_true),
           "adversarial_accuracy": (result.y_adversarial, result.adversarial_predictions == result.y_adversarial)}
    if robust is not None:
        out["robust_accuracy"] = (result.y_true, robust)
    return out


def add_metrics(result: AttackResult, class_names: Sequence[str] = (), robust: np.ndarray | None = None) -> None:
    """``<metric>/class/<name>`` for every class present, and ``worst_class_<metric>`` with its interval."""
    values: dict[str, float] = {}
    for metric, (labels, correct) in correct_by_metric(result, robust).items():
        worst, worst_n = None, 0
        for label in np.unique(labels):
            rows = labels == label
            accuracy = float(np.mean(correct[rows]))
            values[f"{metric}/class/{class_label(int(label), class_names)}"] = accuracy
            if worst is None or accuracy < worst:
                worst, worst_n = accuracy, int(rows.sum())
        if worst is None:
            continue
        name = f"worst_class_{metric}"
        values[name] = worst
        result.sample_sizes[name] = worst_n
        values[f"{name}_ci_low"], values[f"{name}_ci_high"] = statistics.wilson_interval(worst, worst_n)
    result.metrics.update(values)
