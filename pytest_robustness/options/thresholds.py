"""Thresholds: configured bounds for matrix cells, and their checking through MLflow's validator.

Configuration is an array of tables, in ``--thresholds FILE`` (top-level
``[[thresholds]]``) or in ``pyproject.toml`` (``[[tool.robustness.thresholds]]``)::

    [[tool.robustness.thresholds]]          # every fgm cell, every architecture
    attack = "fgm"
    adversarial_accuracy = 0.05

    [[tool.robustness.thresholds]]          # fgm at eps 0.1 on le_net: stricter
    attack = "fgm"
    params = { eps = 0.1 }
    architecture = "le_net"
    adversarial_accuracy = 0.7
    max_regression = 0.01                  # against --baseline-uri, for this cell

    [[tool.robustness.thresholds]]
    attack = "patch"
    defense = "jpeg_compression"
    threat_model = "adaptive"
    defended_accuracy = { relative_to = "clean_accuracy", ratio = 0.8 }
    attack_success_rate = { max = 0.5 }

Selectors (all optional): ``attack``, ``params`` (attack parameters), ``defense``,
``threat_model``, ``architecture``, ``source_architecture`` (transfer cells: the architecture
the examples were crafted on, or ``baseline`` for the --baseline-uri model; an entry without it
matches transfer and white-box cells alike). A metric's bound is a number (a floor),
``{ min = x }``, ``{ max = x }`` or ``{ relative_to = METRIC, ratio = r }`` (a floor of r
times that metric of the same cell). For each metric the most specific matching entry wins
(more selectors; a later entry on ties), and replaces the suite's default for that metric.
"""

from __future__ import annotations

import logging
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..attacks import ATTACKS as BUILTIN_ATTACKS
from ..defenses.catalog import DEFENSES as BUILTIN_DEFENSES
from ..defenses.catalog import THREAT_MODELS
from ..errors import RobustnessUsageError
from ..metrics.formulas import DISTANCE_METRICS
from ..metrics.names import KNOWN_METRICS, PROPERTY_CELLS
from ..metrics.statistics import PROPORTIONS, wilson_interval
from ..models.architectures import ARCHITECTURES as BUILTIN_ARCHITECTURES

SELECTORS = ("attack", "params", "defense", "threat_model", "architecture", "source_architecture")


@dataclass(frozen=True)
class Bound:
    metric: str
    op: str  # ">=" (a floor) or "<=" (a ceiling)
    value: float
    source: str  # e.g. "suite default" or "thresholds.toml entry 2"
    # With a confidence level, the bound applies to the metric's Wilson interval (the lower end
    # for a floor, the upper for a ceiling), not to the point estimate.
    confidence: float | None = None

    def describe(self, actual: float) -> str:
        negated = {">=": "<", "<=": ">"}[self.op]
        return f"{self.metric} {actual:.4f} {negated} {self.value:.4f} ({self.source})"

    def interval_end(self, actual: float, n: int) -> float:
        low, high = wilson_interval(actual, n, self.confidence)
        return low if self.op == ">=" else high

    def describe_interval(self, actual: float, n: int) -> str:
        negated = {">=": "<", "<=": ">"}[self.op]
        end = "lower" if self.op == ">=" else "upper"
        return (f"{self.metric} {self.confidence:g} {end} confidence bound {self.interval_end(actual, n):.4f} "
                f"(observed {actual:.4f} on {n} images) {negated} {self.value:.4f} ({self.source})")


@dataclass(frozen=True)
class Cell:
    """What a bound can be selected by: the identity of one matrix cell."""

    attack: str
    params: Mapping[str, Any]
    architecture: str
    defense: str = "none"
    threat_model: str = ""
    source_architecture: str = ""  # transfer cells: where the examples were crafted
    defense_params: Mapping[str, Any] = field(default_factory=dict)  # not a selector: part of the cell's key


@dataclass(frozen=True)
class Entry:
    selectors: Mapping[str, Any]
    bounds: Mapping[str, Mapping[str, Any]]  # metric -> {"min"| "max"| "relative_to"+"ratio"}
    max_regression: float | None
    source: str
    confidence: float | None = None  # bounds of this entry apply to the metric's interval at this level

    @property
    def specificity(self) -> int:
        return sum(len(v) if k == "params" else 1 for k, v in self.selectors.items())

    def matches(self, cell: Cell) -> bool:
        sel = self.selectors
        if "attack" in sel and sel["attack"] != cell.attack:
            return False
        if "architecture" in sel and sel["architecture"] != cell.architecture:
            return False
        if "defense" in sel and sel["defense"] != cell.defense:
            return False
        if "threat_model" in sel and sel["threat_model"] != cell.threat_model:
            return False
        if "source_architecture" in sel and sel["source_architecture"] != cell.source_architecture:
            return False
        return all(_same(cell.params.get(k), v) for k, v in sel.get("params", {}).items())


def _same(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, float) or isinstance(actual, float):
        try:
            return math.isclose(float(actual), float(wanted), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return str(actual) == str(wanted)


@dataclass
class ThresholdTable:
    entries: list[Entry] = field(default_factory=list)
    default_max_regression: float = 0.02

    def bounds_for(self, cell: Cell, values: Mapping[str, float], suite_floors: Mapping[str, float]) -> list[Bound]:
        """Suite floors, each replaced by the most specific configured bound for the same metric."""
        chosen: dict[str, tuple[int, int, Entry]] = {}
        for order, entry in enumerate(self.entries):
            if entry.matches(cell):
                for metric in entry.bounds:
                    rank = (entry.specificity, order)
                    if metric not in chosen or rank >= chosen[metric][:2]:
                        chosen[metric] = (*rank, entry)
        bounds = [Bound(metric, ">=", float(floor), "suite default")
                  for metric, floor in suite_floors.items() if metric not in chosen]
        for metric, (_, _, entry) in chosen.items():
            bounds.append(_resolve(metric, entry.bounds[metric], values, entry.source, entry.confidence))
        return bounds

    def max_regression_for(self, cell: Cell) -> tuple[float, str]:
        best: tuple[int, int, Entry] | None = None
        for order, entry in enumerate(self.entries):
            if entry.max_regression is not None and entry.matches(cell):
                if best is None or (entry.specificity, order) >= best[:2]:
                    best = (entry.specificity, order, entry)
        if best is None:
            return self.default_max_regression, "--max-regression"
        return float(best[2].max_regression), best[2].source


def _resolve(metric: str, spec: Mapping[str, Any], values: Mapping[str, float], source: str,
             confidence: float | None = None) -> Bound:
    if "relative_to" in spec:
        reference = values.get(spec["relative_to"], float("nan"))
        return Bound(metric, ">=", float(spec["ratio"]) * reference,
                     f"{source}: {spec['ratio']:g} x {spec['relative_to']} {reference:.4f}", confidence)
    if "max" in spec:
        return Bound(metric, "<=", float(spec["max"]), source, confidence)
    return Bound(metric, ">=", float(spec["min"]), source, confidence)


# -- checking ------------------------------------------------------------------------------------
def check_bounds(values: Mapping[str, float], bounds: Iterable[Bound],
                 sizes: Mapping[str, int] | None = None) -> list[str]:
    """Every violated bound as a message; the comparison itself is MLflow's model validation.

    Each bound becomes an absolute ``MetricThreshold`` (floor: greater is better;
    ceiling: lower is better) checked by ``mlflow.validate_evaluation_results``.
    A missing or NaN metric is a violation. A bound with a confidence level is checked
    on the metric's Wilson interval over ``sizes[metric]`` images.
    """
    from mlflow.models import MetricThreshold
    from mlflow.models.evaluation import EvaluationResult
    from mlflow.models.evaluation.validation import ModelValidationFailedException, validate_evaluation_results

    logging.getLogger("mlflow.models.evaluation.validation").setLevel(logging.WARNING)  # one INFO line per bound
    failures = []
    for bound in bounds:
        actual = values.get(bound.metric)
        if actual is None or math.isnan(float(actual)) or math.isnan(bound.value):
            shown = "missing" if actual is None else f"{float(actual):.4f}"
            failures.append(f"{bound.metric} {shown}, needs {bound.op} {bound.value:.4f} ({bound.source})")
            continue
        n = (sizes or {}).get(bound.metric)
        checked = bound.interval_end(float(actual), n) if bound.confidence is not None and n else float(actual)
        threshold = MetricThreshold(threshold=bound.value, greater_is_better=bound.op == ">=")
        try:
            # by keyword: the positional order changed between MLflow 2 and 3
            validate_evaluation_results(
                validation_thresholds={bound.metric: threshold},
                candidate_result=EvaluationResult({bound.metric: checked}, {}, run_id="robustness"))
        except ModelValidationFailedException:
            failures.append(bound.describe_interval(float(actual), n) if bound.confidence is not None and n
                            else bound.describe(float(actual)))
    return failures


# -- loading -------------------------------------------------------------------------------------
def load_table(path: Path | None, rootdir: Path, default_max_regression: float, registry: Any = None,
               architectures: tuple[str, ...] = ()) -> ThresholdTable:
    """``--thresholds FILE``, else ``[tool.robustness]`` of the project's pyproject.toml, else empty.

    Every key is validated now, so a typo fails at start-up naming the file,
    the entry and the allowed names, not after an hour of attacks. Attack, defense and
    architecture names are those of ``registry`` (the session's; default: the built-ins);
    ``architectures`` are names of given models (``--model-uri ARCH=URI``) that selectors may use too.
    """
    if path is not None:
        if not path.is_file():
            raise RobustnessUsageError(f"--thresholds {path}: no such file")
        document, where = _read(path), path
        raw = document.get("thresholds", document.get("tool", {}).get("robustness", {}).get("thresholds"))
    else:
        where = rootdir / "pyproject.toml"
        document = _read(where) if where.is_file() else {}
        raw = document.get("tool", {}).get("robustness", {}).get("thresholds")
    if raw is None:
        return ThresholdTable(default_max_regression=default_max_regression)
    if not isinstance(raw, list):
        raise RobustnessUsageError(f"{where}: 'thresholds' must be an array of tables ([[thresholds]])")
    return ThresholdTable([_entry(where, i + 1, item, registry, architectures) for i, item in enumerate(raw)],
                          default_max_regression)


def _read(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise RobustnessUsageError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError as exc:  # a binary file (TOML is UTF-8)
        raise RobustnessUsageError(f"{path}: not a UTF-8 text file, so not TOML ({exc.reason} at byte "
                                   f"{exc.start})") from None
    except OSError as exc:
        raise RobustnessUsageError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def known_metrics() -> list[str]:
    return list(KNOWN_METRICS)


def _entry(where: Path, number: int, item: Any, registry: Any = None, architectures: tuple[str, ...] = ()) -> Entry:
    if registry is not None:  # the session's registry (built-ins and registered extensions)
        ATTACKS, DEFENSES, ARCHITECTURES = registry.attacks, registry.defenses, registry.architectures  # noqa: N806
    else:
        ATTACKS, DEFENSES, ARCHITECTURES = BUILTIN_ATTACKS, BUILTIN_DEFENSES, BUILTIN_ARCHITECTURES  # noqa: N806
    label = f"{where}: thresholds entry {number}"
    if not isinstance(item, dict):
        raise RobustnessUsageError(f"{label}: expected a table")
    selectors = {k: item[k] for k in SELECTORS if k in item}
    metrics = known_metrics()
    known = list(dict.fromkeys([*ARCHITECTURES, *architectures]))  # ours and the given models' names
    choices = {"attack": [*ATTACKS, *PROPERTY_CELLS], "architecture": known, "source_architecture": [*known, "baseline"],
               "defense": ["none", *DEFENSES],
               "threat_model": list(THREAT_MODELS)}
    for key, allowed in choices.items():
        if key in selectors and selectors[key] not in allowed:
            raise RobustnessUsageError(f"{label}: {key} = {selectors[key]!r} is unknown; allowed: {', '.join(allowed)}")
    if "params" in selectors:
        if not isinstance(selectors["params"], dict):
            raise RobustnessUsageError(f"{label}: params must be a table, e.g. params = {{ eps = 0.1 }}")
        if "attack" not in selectors or selectors["attack"] in PROPERTY_CELLS:
            raise RobustnessUsageError(f"{label}: params need an attack to belong to")
        schema = ATTACKS[selectors["attack"]].schema
        unknown = [p for p in selectors["params"] if p not in schema]
        if unknown:
            raise RobustnessUsageError(f"{label}: unknown {selectors['attack']} parameter(s) {', '.join(unknown)}; "
                                       f"allowed: {', '.join(schema)}")
    max_regression = item.get("max_regression")
    if max_regression is not None and (not isinstance(max_regression, (int, float)) or isinstance(max_regression, bool)
                                       or not math.isfinite(max_regression) or max_regression < 0):
        raise RobustnessUsageError(f"{label}: max_regression = {max_regression!r}; expected a number >= 0")
    confidence = item.get("confidence")
    if confidence is not None and (isinstance(confidence, bool) or not isinstance(confidence, (int, float))
                                   or not 0 < confidence < 1):
        raise RobustnessUsageError(f"{label}: confidence = {confidence!r}; expected a level strictly between 0 "
                                   "and 1, e.g. 0.95 (the interval's lower bound must clear each floor)")
    bounds = {}
    for key, value in item.items():
        if key in SELECTORS or key in ("max_regression", "confidence"):
            continue
        if key not in metrics:
            raise RobustnessUsageError(f"{label}: unknown key {key!r}; selectors: {', '.join(SELECTORS)}, "
                                       f"max_regression, confidence, or a metric: {', '.join(metrics)}")
        bounds[key] = _bound_spec(label, key, value, metrics)
    if confidence is not None:
        unfit = [k for k in bounds if k not in PROPORTIONS]
        if unfit:
            raise RobustnessUsageError(f"{label}: confidence applies to proportions of images "
                                       f"({', '.join(PROPORTIONS)}); not to {', '.join(unfit)}")
    return Entry(selectors, bounds, max_regression, f"{where.name} entry {number}",
                 float(confidence) if confidence is not None else None)


def metric_range(metric: str) -> tuple[float, float]:
    """The values a metric can take: a bound outside them can never be met (or always is)."""
    if metric in ("accuracy_gain", "clean_accuracy_gain", "accuracy_below_control", "targeted_success_over_control"):
        return -1.0, 1.0
    if metric in ("patched_count", "mce", "relative_mce"):  # corruption errors relative to a baseline's
        return 0.0, math.inf
    base, _, stat = next(((d, "_", metric[len(d) + 1:]) for d in DISTANCE_METRICS
                          if metric == d or metric.startswith(f"{d}_")), (metric, "", ""))
    if base == "cosine_similarity":
        return (0.0, 2.0) if stat in ("stdev", "iqr") else (-1.0, 1.0)
    if base in DISTANCE_METRICS:
        return 0.0, math.inf
    return 0.0, 1.0  # accuracies, rates, precision, recall, f1, auc


def _in_range(label: str, metric: str, shown: str, value: float) -> float:
    low, high = metric_range(metric)
    if not (math.isfinite(value) and low <= value <= high):
        span = f"[{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"
        raise RobustnessUsageError(f"{label}: {metric} = {shown}; expected a value {span}, the range of {metric}")
    return value


def _bound_spec(label: str, metric: str, value: Any, metrics: list[str]) -> dict[str, Any]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"min": _in_range(label, metric, repr(value), float(value))}
    if isinstance(value, dict):
        if set(value) == {"min"} or set(value) == {"max"}:
            (kind, number), = value.items()
            if isinstance(number, (int, float)) and not isinstance(number, bool):
                return {kind: _in_range(label, metric, f"{{ {kind} = {number!r} }}", float(number))}
        if set(value) == {"relative_to", "ratio"} and value["relative_to"] in metrics \
                and isinstance(value["ratio"], (int, float)) and not isinstance(value["ratio"], bool) \
                and math.isfinite(value["ratio"]) and value["ratio"] >= 0:
            return dict(value)
    raise RobustnessUsageError(
        f"{label}: {metric} = {value!r}; expected a number (floor), {{ min = x }}, {{ max = x }} "
        f"or {{ relative_to = METRIC, ratio = r }}")
