"""A targeted attack's cell reported both ways, with names that leave no doubt which way is better.

``adversarial_accuracy`` is the defender's view (the true label kept; higher is better for the model);
``targeted_success_rate`` the attacker's (the image classified as *its own* target, per image; higher is
worse for the model), over the images whose true label is not their target, with its Wilson interval.
Nothing is called "targeted accuracy" (accuracy on the target label reads as the defender's number).
"""

from __future__ import annotations

import numpy as np

from ..metrics import statistics
from .result import AttackResult

TARGETS = "target_labels"  # the run's artifact: each image's target class


def has_targets(result: AttackResult) -> bool:
    return result.run is not None and TARGETS in result.run.artifacts


def add_metrics(result: AttackResult) -> None:
    """``targeted_success_rate`` (per-image targets) and its interval into ``result.metrics``."""
    targets = np.asarray(result.run.artifacts[TARGETS])[result.source_index]
    others = result.y_adversarial != targets
    hit = result.adversarial_predictions == targets
    rate = float(np.mean(hit[others])) if others.any() else float("nan")
    result.metrics["targeted_success_rate"] = rate
    result.sample_sizes["targeted_success_rate"] = int(others.sum())
    result.metrics.update(statistics.intervals({"targeted_success_rate": rate}, result.sample_sizes))
