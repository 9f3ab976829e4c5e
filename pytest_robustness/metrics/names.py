"""The names of the metrics a cell reports: what thresholds may name and what goes into JUnit.

Kept apart from the cell API (``cells``) so that the threshold loader,
which validates names at start-up, needs nothing above the registries.
"""

from __future__ import annotations

from . import statistics
from .formulas import DISTANCE_METRICS

# AutoAttack's attacks by the names its metrics carry (``attacks.autoattack`` runs them in this order; ``apgd-dlr``
# is the randomised version's second attack).
AUTOATTACK_STAGES = ("apgd-ce", "apgd-t", "deepfool", "square", "apgd-dlr")
# An AutoAttack cell's metrics (``cells.ensemble``): the per-image worst case, the running accuracy after each
# attack and the fraction each broke first.
ENSEMBLE_METRICS = ("robust_accuracy", "robust_accuracy_ci_low", "robust_accuracy_ci_high", "randomised",
                    *(f"robust_accuracy/after_{s}" for s in AUTOATTACK_STAGES), *(f"broken_by/{s}" for s in AUTOATTACK_STAGES))
# The worst class of each accuracy (``cells.per_class``; the per-class values themselves are named by class).
WORST_CLASS_METRICS = tuple(f"worst_class_{m}{end}" for m in ("clean_accuracy", "adversarial_accuracy", "robust_accuracy")
                            for end in ("", "_ci_low", "_ci_high"))

# The patch control's metrics (``patch_control``): the patch against a random patch of its size.
CONTROL_METRICS = ("control_accuracy", "control_targeted_success_rate", "accuracy_below_control",
                   "targeted_success_over_control")

# Property cells (``cells.properties``): what thresholds may select them by (``attack = "spatial_grid"``) and
# the metrics they gate.
PROPERTY_CELLS = ("invariant", "spatial_grid", "corruption_errors")
PROPERTY_METRICS = ("transformed_accuracy", "label_invariance", "universal_accuracy", "universal_fooling_rate",
                    "per_image_accuracy", "per_image_fooling_rate", "mean_corruption_accuracy", "mce", "relative_mce")

JUNIT_METRICS = ("clean_accuracy", "adversarial_accuracy", "attack_success_rate", "targeted_success_rate",
                 "defended_accuracy", "accuracy_gain", "transfer_rate", *DISTANCE_METRICS, "control_accuracy",
                 "control_targeted_success_rate", "defended_accuracy_std", "robust_accuracy",
                 "worst_class_adversarial_accuracy", "worst_class_robust_accuracy")
# A defended result's own metrics: logged under these names, never prefixed.
DEFENSE_METRICS = ("defended_accuracy", "accuracy_gain", "clean_accuracy_gain", "defended_accuracy_std",
                   "defended_accuracy_ci_low", "defended_accuracy_ci_high")
# Metrics with per-image correctness: compared with a baseline image by image (McNemar).
PAIRED_METRICS = ("clean_accuracy", "adversarial_accuracy", "defended_accuracy", "robust_accuracy")
# Every metric a cell can report: what thresholds may name.
KNOWN_METRICS = (
    "clean_accuracy", "adversarial_accuracy", "attack_success_rate", "targeted_success_rate",
    "patched_accuracy", "patched_count", "transfer_rate", *DEFENSE_METRICS,
    *(f"{name}{stat}" for name in DISTANCE_METRICS for stat in ("", "_median", "_stdev", "_iqr", "_min", "_max")),
    *(f"{subset}_{name}" for subset in ("clean", "adversarial") for name in ("precision", "recall", "f1", "auc")),
    *CONTROL_METRICS, *PROPERTY_METRICS, *ENSEMBLE_METRICS, *WORST_CLASS_METRICS,
    *(f"{name}{bound}" for name in statistics.PROPORTIONS for bound in ("_ci_low", "_ci_high")),
)
