"""The MLflow run of one test and its JUnit test case: what a cell records, in that order.

JUnit first, MLflow second: a fault of the tracking server loses nothing from the report.
The run is started on the first record, so a test that never measures anything logs nothing.
"""

from __future__ import annotations

from typing import Any, Mapping

import pytest

from ..metrics.names import DEFENSE_METRICS, JUNIT_METRICS
from . import artifacts
from .phases import PhaseTimer
from .result import AttackResult


class CellRun:
    """One test's nested MLflow run and JUnit properties: params, metrics, results and their artifacts."""

    def __init__(self, session, item: pytest.Item, architecture: str, timer: PhaseTimer):
        self.session = session
        self.item = item
        self.architecture = architecture
        self.timer = timer
        self.run_id: str | None = None
        self.results: list[AttackResult] = []

    def ensure_run(self) -> str:
        if self.run_id is None:
            tracker = self.session.tracker
            self.run_id = tracker.start_child_run(self.item.name, {
                "robustness.nodeid": self.item.nodeid, "robustness.architecture": self.architecture,
                "robustness.kind": "test"}, buffered=True)
            _, _, input_range = self.session.adaptation(self.architecture)
            model_output = self.session.model_output(self.architecture)
            tracker.log_params(self.run_id, {"architecture": self.architecture, "seed": self.session.settings.seed,
                                             **self.session.data_info.params,
                                             "attack_backend": self.session.settings.attack_backend,
                                             "model_output": model_output,
                                             "input_range": ",".join(f"{v:g}" for v in input_range)})
        return self.run_id

    def record(self, name: str, value: Any) -> None:
        """One JUnit property on this test case (it travels with the report under xdist)."""
        self.item.user_properties.append((name, value))

    def log_metrics(self, values: Mapping[str, float], junit: bool = True) -> None:
        if junit:
            for name, value in values.items():
                self.record(name, round(float(value), 6))
        self.session.tracker.log_metrics(self.ensure_run(), values)

    def log_params(self, params: Mapping[str, Any], junit: bool = True) -> None:
        if junit:
            for name, value in params.items():
                self.record(name, value)
        self.session.tracker.log_params(self.ensure_run(), params)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.session.tracker.set_tags(self.ensure_run(), tags)

    def log_result(self, result: AttackResult, prefix: str = "", undefended: AttackResult | None = None) -> None:
        """Params, metrics and evidence of ``result``; with ``prefix`` (a defended result beside
        its undefended one in the same run) every name gets it, except the defense's own metrics."""
        with self.timer.timed("log"):
            self.results.append(result)
            result.log_prefix = prefix
            streamed = {"stream_batch": self.session.settings.stream_batch} if result.kept_index is not None else {}
            params = {f"{prefix}{k}": v for k, v in {
                "attack": result.attack, "model_uri": result.model_uri, "samples": result.size, **streamed,
                **{f"{result.attack}.{k}": v for k, v in result.params.items()}}.items()}
            named = {(k if k in DEFENSE_METRICS else f"{prefix}{k}"): v for k, v in result.metrics.items()}
            tags = {f"robustness.{prefix}examples": result.run.reused or "computed",  # the generator's own time:
                    f"robustness.{prefix}attack_seconds": f"{result.run.seconds:.3f}"} if result.run is not None else {}
            for name, value in params.items():  # the JUnit report first: it holds whatever MLflow loses
                self.record(name, value)
            for name, value in named.items():
                if name in JUNIT_METRICS or name.removeprefix(prefix) in JUNIT_METRICS:
                    self.record(name, round(float(value), 6))
            # One round trip to the tracking store per result, not one per kind of record.
            self.session.tracker.log_batch(self.ensure_run(), params=params, metrics=named, tags=tags)
            self.log_examples(result, prefix, undefended)

    def log_examples(self, result: AttackResult, prefix: str = "", undefended: AttackResult | None = None) -> None:
        """Examples, per-image distances and evidence PNGs (``artifacts``) into this test's run."""
        settings, tracker, run_id = self.session.settings, self.session.tracker, self.ensure_run()

        def submit(what, work) -> None:  # written by the session's writer, before the run ends
            tracker.writer.submit(run_id, f"{what} of {self.item.name}", work)

        kept = artifacts.log_examples(tracker, run_id, self.session.cache, result, prefix, undefended,
                                      self.session.data_info.class_names, settings.keep_examples, settings.seed, submit)
        if kept is not None:  # how many clean images (of the param samples) the examples file keeps
            self.session.tracker.log_params(self.ensure_run(), {f"{prefix}kept_examples": kept})
