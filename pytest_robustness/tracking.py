"""MLflow bookkeeping: one parent run per session, one nested run per test.

Uses ``MlflowClient`` with explicit run ids rather than the fluent API's
global active-run stack, so xdist workers can log nested runs under the
controller's session run, and every run this process opened is closed as
FINISHED, FAILED or KILLED, never left RUNNING.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

PARENT_RUN_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
WORKER_TAG = "robustness.worker"
HOST_TAG = "robustness.host"
MAX_PARAM_LENGTH = 6000


def _stringify(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:MAX_PARAM_LENGTH]


class Tracker:
    """The MLflow client of one pytest process, with the runs it opened."""

    def __init__(self, tracking_uri: str, experiment: str):
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        self.experiment_name = experiment
        self.experiment_id: str | None = None
        self.session_run_id: str | None = None
        self.open_runs: set[str] = set()
        atexit.register(self.kill_open_runs)

    # -- experiment and session run -------------------------------------------------
    def ensure_experiment(self) -> str:
        """The experiment's id, creating it if missing. Jobs that share a tracking server may race
        to create it: the loser of the race uses the winner's."""
        from mlflow.exceptions import MlflowException

        if self.experiment_id is None:
            existing = self.client.get_experiment_by_name(self.experiment_name)
            if existing is not None:
                self.experiment_id = existing.experiment_id
                return self.experiment_id
            try:
                self.experiment_id = self.client.create_experiment(
                    self.experiment_name, artifact_location=self._local_artifact_location()
                )
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                self.experiment_id = self.client.get_experiment_by_name(self.experiment_name).experiment_id
        return self.experiment_id

    def _local_artifact_location(self) -> str | None:
        """Keep a sqlite store's artifacts beside its database file, not in the caller's cwd."""
        prefix = "sqlite:///"
        if not self.tracking_uri.startswith(prefix):
            return None
        db = Path(self.tracking_uri[len(prefix):])
        return (db.parent / "mlartifacts" / self.experiment_name).resolve().as_uri()

    def start_session_run(self, name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        run = self.client.create_run(self.ensure_experiment(), run_name=name, tags=dict(tags))
        self.session_run_id = run.info.run_id
        self.open_runs.add(self.session_run_id)
        self.log_params(self.session_run_id, params)
        return self.session_run_id

    def attach_session_run(self, run_id: str, experiment_id: str) -> None:
        """An xdist worker logs under the controller's session run."""
        self.session_run_id = run_id
        self.experiment_id = experiment_id

    # -- nested runs -------------------------------------------------------------------
    def start_child_run(self, name: str, tags: Mapping[str, str] | None = None) -> str:
        """A run nested under the session run, tagged with the machine and xdist worker that ran it
        (several workers, and several machines sharing a tracking server, log into one session)."""
        all_tags = {**(tags or {}), RUN_NAME_TAG: name, WORKER_TAG: process_label(), HOST_TAG: socket.gethostname()}
        if self.session_run_id:
            all_tags[PARENT_RUN_TAG] = self.session_run_id
        run = self.client.create_run(self.ensure_experiment(), run_name=name, tags=all_tags)
        self.open_runs.add(run.info.run_id)
        return run.info.run_id

    def end_run(self, run_id: str, status: str) -> None:
        """status: FINISHED, FAILED or KILLED."""
        if run_id in self.open_runs:
            self.open_runs.discard(run_id)
            self.client.set_terminated(run_id, status=status)

    def kill_open_runs(self, status: str = "KILLED") -> None:
        for run_id in list(self.open_runs):
            try:
                self.end_run(run_id, status)
            except Exception:  # noqa: BLE001 - best effort at interpreter exit
                self.open_runs.discard(run_id)

    # -- logging -----------------------------------------------------------------------
    def log_batch(self, run_id: str, params: Mapping[str, Any] | None = None,
                  metrics: Mapping[str, float] | None = None, tags: Mapping[str, Any] | None = None,
                  step: int = 0) -> None:
        """Params, metrics (NaN dropped: MLflow cannot chart it) and tags in one request."""
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        finite = {k: float(v) for k, v in (metrics or {}).items() if v is not None and v == v}
        batch = dict(params=[Param(k, _stringify(v)) for k, v in (params or {}).items()],
                     metrics=[Metric(k, v, now, step) for k, v in finite.items()],
                     tags=[RunTag(k, _stringify(v)) for k, v in (tags or {}).items()])
        if any(batch.values()):
            self.client.log_batch(run_id, **batch)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        self.log_batch(run_id, params=params)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        self.log_batch(run_id, metrics=metrics, step=step)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self.log_batch(run_id, tags=tags)

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_bytes(self, run_id: str, name: str, data: bytes) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / name
            target.write_bytes(data)
            self.client.log_artifact(run_id, str(target))


def process_label() -> str:
    """``gw0``, ``gw1``, ... under pytest-xdist, ``main`` otherwise."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")
