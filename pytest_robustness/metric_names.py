"""The names of the metrics a cell reports: what thresholds may name and what goes into JUnit.

Kept apart from the cell API (``evaluation``) so that the threshold loader,
which validates names at start-up, needs nothing above the registries.
"""

from __future__ import annotations

from .metrics import DISTANCE_METRICS

JUNIT_METRICS = ("clean_accuracy", "adversarial_accuracy", "attack_success_rate", "targeted_success_rate",
                 "defended_accuracy", "accuracy_gain", "transfer_rate", *DISTANCE_METRICS)
# A defended result's own metrics: logged under these names, never prefixed.
DEFENSE_METRICS = ("defended_accuracy", "accuracy_gain", "clean_accuracy_gain")
# Every metric a cell can report: what thresholds may name.
KNOWN_METRICS = (
    "clean_accuracy", "adversarial_accuracy", "attack_success_rate", "targeted_success_rate",
    "patched_accuracy", "patched_count", "transfer_rate", *DEFENSE_METRICS,
    *(f"{name}{stat}" for name in DISTANCE_METRICS for stat in ("", "_median", "_stdev", "_iqr", "_min", "_max")),
    *(f"{subset}_{name}" for subset in ("clean", "adversarial") for name in ("precision", "recall", "f1", "auc")),
)
