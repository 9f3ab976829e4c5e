"""The ``robustness`` fixture's object: run an attack on this test's model, log it, check thresholds.

One test = one cell of the robustness matrix = one nested MLflow run. Metrics
go to that run and to the JUnit test case as properties; the examples they were
computed on go to the run as ``adversarial_examples.npz`` so anyone can
recompute them with ART and the registered model.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pytest

from . import metrics as m
from .attacks import get_attack
from .classifiers import predict_labels
from .datasets import content_digest
from .params import case_id
from .session import AttackRun, RobustnessSession
from .thresholds import Bound, check_bounds

JUNIT_METRICS = ("clean_accuracy", "adversarial_accuracy", "attack_success_rate", "targeted_success_rate",
                 "defended_accuracy", "accuracy_gain", *m.DISTANCE_METRICS)


@dataclass
class AttackResult:
    """Everything one attack cell produced; ``metrics`` are what thresholds are checked against."""

    attack: str
    params: dict[str, Any]
    model_uri: str
    x_clean: np.ndarray
    y_true: np.ndarray
    x_adv: np.ndarray
    clean_probabilities: np.ndarray
    adversarial_probabilities: np.ndarray
    metrics: dict[str, float] = field(default_factory=dict)
    distances: dict[str, np.ndarray] = field(default_factory=dict)
    run: AttackRun | None = None
    # Identity of the matrix cell, which thresholds are keyed by.
    architecture: str = ""
    defense: str = "none"
    threat_model: str = ""

    @property
    def clean_predictions(self) -> np.ndarray:
        return self.clean_probabilities.argmax(axis=1)

    @property
    def adversarial_predictions(self) -> np.ndarray:
        return self.adversarial_probabilities.argmax(axis=1)


def score(attack: str, params: Mapping[str, Any], model_uri: str, x_clean, y_true, x_adv, classifier,
          run: AttackRun | None = None) -> AttackResult:
    """Predict clean and adversarial sets once and derive every metric from those predictions."""
    clean_p = classifier.predict(x_clean, batch_size=256)
    adv_p = classifier.predict(x_adv, batch_size=256)
    clean_pred, adv_pred = clean_p.argmax(1), adv_p.argmax(1)
    distances = m.distance_table(x_clean, x_adv) if x_adv.shape == x_clean.shape else {}
    values = {
        "clean_accuracy": m.accuracy(y_true, clean_pred),
        "adversarial_accuracy": m.accuracy(y_true, adv_pred),
        "attack_success_rate": m.attack_success_rate(y_true, clean_pred, adv_pred),
        **m.summarise_distances(distances),
        **{f"clean_{k}": v for k, v in m.classification_metrics(y_true, clean_p).items()},
        **{f"adversarial_{k}": v for k, v in m.classification_metrics(y_true, adv_p).items()},
    }
    return AttackResult(attack, dict(params), model_uri, x_clean, y_true, x_adv, clean_p, adv_p, values,
                        distances, run)


class Robustness:
    """Handed to each suite test: its architecture's model, data, classifier and MLflow run."""

    def __init__(self, session: RobustnessSession, item: pytest.Item, architecture: str):
        self.session = session
        self.item = item
        self.architecture = architecture
        self.run_id: str | None = None
        self.results: list[AttackResult] = []

    # -- what the test works on ----------------------------------------------------------
    @property
    def seed(self) -> int:
        return self.session.settings.seed

    @property
    def dataset(self):
        return self.session.dataset

    def registered_model(self, recipe: str = ""):
        return self.session.model(self.architecture, recipe)

    def classifier(self, recipe: str = ""):
        return self.session.classifier(self.architecture, recipe)

    def eval_set(self):
        return self.session.eval_set(self.architecture)

    # -- the MLflow run of this test -----------------------------------------------------
    def ensure_run(self) -> str:
        if self.run_id is None:
            tracker = self.session.tracker
            self.run_id = tracker.start_child_run(self.item.name, {
                "robustness.nodeid": self.item.nodeid, "robustness.architecture": self.architecture,
                "robustness.kind": "test"})
            tracker.log_params(self.run_id, {"architecture": self.architecture, "seed": self.seed,
                                             "dataset": self.session.dataset.source,
                                             "attack_backend": self.session.settings.attack_backend})
        return self.run_id

    def record(self, name: str, value: Any) -> None:
        """One JUnit property on this test case (it travels with the report under xdist)."""
        self.item.user_properties.append((name, value))

    def log_metrics(self, values: Mapping[str, float], junit: bool = True) -> None:
        self.session.tracker.log_metrics(self.ensure_run(), values)
        if junit:
            for name, value in values.items():
                self.record(name, round(float(value), 6))

    def log_params(self, params: Mapping[str, Any], junit: bool = True) -> None:
        self.session.tracker.log_params(self.ensure_run(), params)
        if junit:
            for name, value in params.items():
                self.record(name, value)

    # -- attacks ---------------------------------------------------------------------------
    def attack(self, name: str, recipe: str = "", **params: Any) -> AttackResult:
        """Run (or reuse) attack ``name`` on this test's model and log the cell."""
        spec = get_attack(name)
        resolved = spec.resolve(params)
        registered = self.registered_model(recipe)
        x, y = self.eval_set()
        run = self.session.attack_run(self.architecture, name, resolved, x, recipe=recipe)
        result = score(name, {**resolved, **run.extra_params}, registered.uri, x, y, run.x_adv,
                       self.session.predictor(self.architecture, recipe), run)
        result.architecture = self.architecture
        self.log_result(result)
        return result

    def log_result(self, result: AttackResult, prefix: str = "") -> None:
        self.results.append(result)
        self.log_params({"attack": result.attack, "model_uri": result.model_uri, "samples": len(result.x_clean),
                         **{f"{result.attack}.{k}": v for k, v in result.params.items()}})
        self.log_metrics({f"{prefix}{k}": v for k, v in result.metrics.items() if k in JUNIT_METRICS})
        self.log_metrics({f"{prefix}{k}": v for k, v in result.metrics.items() if k not in JUNIT_METRICS}, junit=False)
        if result.run is not None:
            self.session.tracker.set_tags(self.ensure_run(), {"robustness.examples": result.run.reused or "computed"})
        self.log_examples(result, prefix)

    def log_examples(self, result: AttackResult, prefix: str = "") -> None:
        """Log the examples and the per-image distance table; the files are content-addressed in the
        cache, so a re-run copies them instead of compressing megabytes again."""
        tracker, run_id, cache = self.session.tracker, self.ensure_run(), self.session.cache
        key = cache.key("examples", content_digest(result.x_clean, result.x_adv, result.y_true))
        with cache.file(key, f"{prefix}adversarial_examples.npz", lambda path: write_npz(
                path, x_clean=result.x_clean, x_adv=result.x_adv, y_true=result.y_true)) as npz:
            tracker.log_artifact(run_id, npz)
        if result.distances:
            with cache.file(key, f"{prefix}distance_metrics.csv",
                            lambda path: path.write_bytes(distance_csv(result.distances))) as csv_file:
                tracker.log_artifact(run_id, csv_file)

    # -- verdict -----------------------------------------------------------------------------
    def check(self, result: AttackResult | Mapping[str, float], **floors: float) -> None:
        """Fail the test, listing every violated bound, if any metric is below its floor.

        ``floors`` are the suite's defaults; configured thresholds override them.
        """
        values = result.metrics if isinstance(result, AttackResult) else dict(result)
        bounds = [Bound(metric, ">=", floor, "suite default") for metric, floor in floors.items()]
        failures = check_bounds(values, bounds)
        if failures:
            pytest.fail(f"{self.item.name}: " + "; ".join(failures), pytrace=False)

    def case_id(self, attack: str, params: Mapping[str, Any]) -> str:
        return case_id(get_attack(attack).params, params)


def write_npz(path, **arrays: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def distance_csv(table: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    names = list(table)
    writer.writerow(["image", *names])
    for i, row in enumerate(zip(*(table[n] for n in names))):
        writer.writerow([i, *(f"{v:.8g}" for v in row)])
    return buffer.getvalue().encode()


__all__ = ["AttackResult", "Robustness", "predict_labels", "score"]
