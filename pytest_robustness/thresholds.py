"""Threshold bounds and their checking: every violated bound is reported, with where it came from."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Mapping

COMPARATORS = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True)
class Bound:
    metric: str
    op: str  # ">=" (a floor) or "<=" (a ceiling)
    value: float
    source: str  # e.g. "suite default" or "thresholds.toml [fgm.eps=0.1.le_net]"

    def violated_by(self, actual: float) -> bool:
        return math.isnan(actual) or not COMPARATORS[self.op](actual, self.value)

    def describe(self, actual: float) -> str:
        negated = {">=": "<", "<=": ">"}[self.op]
        return f"{self.metric} {actual:.4f} {negated} {self.value:.4f} ({self.source})"


def check_bounds(values: Mapping[str, float], bounds: list[Bound]) -> list[str]:
    """Messages for every bound the values violate; a missing metric is a violation too."""
    failures = []
    for bound in bounds:
        if bound.metric not in values:
            failures.append(f"{bound.metric} missing, needed for {bound.op} {bound.value} ({bound.source})")
        elif bound.violated_by(float(values[bound.metric])):
            failures.append(bound.describe(float(values[bound.metric])))
    return failures
