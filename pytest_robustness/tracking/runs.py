"""MLflow bookkeeping: one parent run per session, one nested run per test.

Uses ``MlflowClient`` with explicit run ids rather than the fluent API's
global active-run stack, so xdist workers can log nested runs under the
controller's session run, and every run this process opened is closed as
FINISHED, FAILED or KILLED, never left RUNNING.

A test's nested run is *buffered*: its params, metrics, tags and artifacts are
collected in memory (artifacts in a staging folder) and written when the run
ends, in one ``log_batch`` (chunked to MLflow's batch limits) and one
``log_artifacts``: a few round trips to the store per test instead of dozens.

Faults (see ``server_health``): every call goes through a ``GuardedClient``. A
test whose run cannot be created because the server is gone keeps a local
buffer and creates the run when it ends if the server is back; a run whose
records cannot be written ends FAILED where the store still answers, and the
test reports one line saying what failed (its numbers are in the JUnit XML and
the cache, so a re-run logs them without recomputing).

A buffered run's slow part (artifact files, upload, end) runs on the session's ``writer`` thread, in order,
so the next test starts at once; its faults take the same path there and are reported at the session's
end (``drain``, which ``kill_open_runs`` calls first: a run the writer is to end is not in ``open_runs``).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from . import uninterrupted
from .orphans import close_orphaned_runs, owner_tag
from .server_health import GuardedClient, TrackingFault, TrackingUnavailable
from .store_checks import sqlite_lock
from .writer import Writer

PARENT_RUN_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
WORKER_TAG = "robustness.worker"
HOST_TAG = "robustness.host"
# MLflow 3's experiment kind (its UI reads it): a classic ML experiment opens the runs/models view, not GenAI's.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
MAX_PARAM_LENGTH = 6000
# MLflow's log_batch limits: 100 params or tags, 1000 entities in all per request.
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
OFFLINE_PREFIX = "offline-"  # a buffered run not created yet: the server was gone when it started
FAULT_TAG = "robustness.logging_error"
_STAGING_LOCK = threading.Lock()


def _stringify(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:MAX_PARAM_LENGTH]


@dataclass
class RunBuffer:
    """What a buffered run logged so far, written when it ends."""

    params: dict[str, str] = field(default_factory=dict)
    metrics: list = field(default_factory=list)  # mlflow.entities.Metric, in logging order
    tags: dict[str, str] = field(default_factory=dict)
    staging: tempfile.TemporaryDirectory | None = None
    pending: dict[str, Any] | None = None  # offline: create_run's arguments, for when the server is back
    name: str = ""  # the run's name, for what the writer reports

    def stage(self, name: str, artifact_path: str | None = None) -> Path:
        """Where an artifact ``name`` (under ``artifact_path``) goes before the run's one upload."""
        with _STAGING_LOCK:  # the main thread and the writer's may both stage
            if self.staging is None:
                self.staging = tempfile.TemporaryDirectory(prefix="robustness-run-")
        folder = Path(self.staging.name, *(artifact_path.split("/") if artifact_path else ()))
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / name
        target.unlink(missing_ok=True)  # a later artifact of the same name replaces the earlier, as in MLflow
        return target


class Tracker:
    """The MLflow client of one pytest process, with the runs it opened."""

    def __init__(self, tracking_uri: str, experiment: str, probe_timeout: float | None = None,
                 synchronous_writes: bool = False):
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = GuardedClient(MlflowClient(tracking_uri), probe_timeout)
        self.experiment_name = experiment
        self.experiment_id: str | None = None
        self.session_run_id: str | None = None
        self.open_runs: set[str] = set()
        self.buffers: dict[str, RunBuffer] = {}
        self.writer = Writer(synchronous_writes)
        self.abandoned: set[str] = set()  # runs ended KILLED while the writer still had their work
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
                if EXPERIMENT_KIND_TAG not in existing.tags:  # e.g. made by an older version of this plugin
                    self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
                return self.experiment_id
            try:
                self.experiment_id = self.client.create_experiment(
                    self.experiment_name, artifact_location=self._local_artifact_location(),
                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
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

    def start_session_run(self, name: str, params: Mapping[str, Any], tags: Mapping[str, str],
                          owner_pid: int | None = None) -> str:
        """The session's run, owned by ``owner_pid`` (the process that will close it; default this one).

        First closes the runs that dead processes on this machine left RUNNING (see ``orphans``)."""
        close_orphaned_runs(self.client, self.ensure_experiment())
        run = self.client.create_run(self.ensure_experiment(), run_name=name, tags={**tags, **owner_tag(owner_pid)})
        self.session_run_id = run.info.run_id
        self.open_runs.add(self.session_run_id)
        self.log_params(self.session_run_id, params)
        return self.session_run_id

    def attach_session_run(self, run_id: str, experiment_id: str) -> None:
        """An xdist worker logs under the controller's session run."""
        self.session_run_id = run_id
        self.experiment_id = experiment_id

    # -- nested runs -------------------------------------------------------------------
    def start_child_run(self, name: str, tags: Mapping[str, str] | None = None, buffered: bool = False) -> str:
        """A run nested under the session run, tagged with the machine and xdist worker that ran it
        (several workers, and several machines sharing a tracking server, log into one session).

        ``buffered``: everything logged to it is written when it ends (see the module's doc)."""
        all_tags = {**(tags or {}), RUN_NAME_TAG: name, WORKER_TAG: process_label(), HOST_TAG: socket.gethostname(),
                    **owner_tag()}
        if self.session_run_id:
            all_tags[PARENT_RUN_TAG] = self.session_run_id
        try:
            run_id = self.client.create_run(self.ensure_experiment(), run_name=name, tags=all_tags).info.run_id
        except TrackingUnavailable:
            if not buffered:
                raise
            # The test goes on (its results do not need the server); the run is created when it ends.
            run_id = f"{OFFLINE_PREFIX}{uuid.uuid4().hex}"
            pending = dict(run_name=name, tags=all_tags, start_time=int(time.time() * 1000))
            self.buffers[run_id] = RunBuffer(pending=pending)
        self.open_runs.add(run_id)
        if buffered:
            self.buffers.setdefault(run_id, RunBuffer()).name = name
        return run_id

    def end_run(self, run_id: str, status: str) -> str:
        """status: FINISHED, FAILED or KILLED. A buffered run's records are written first; if that
        fails, the run still ends (FAILED, where the store answers) and a ``TrackingFault`` says
        in one line what failed. Returns the run's id (an offline run gets its real one here)."""
        if run_id not in self.open_runs:
            return run_id
        buffer = self.buffers.get(run_id)
        if (buffer is not None and not self.writer.synchronous and not self.writer.closed and buffer.pending is None
                and self.client.health.gone is None):  # (a fault known now is reported by the test, at once)
            self.open_runs.discard(run_id)
            self.writer.submit(run_id, f"records and end of {buffer.name or run_id}", lambda: self._end_run(run_id, status),
                               ends_run=True)
            return run_id
        self.writer.wait(run_id)  # its artifacts first
        with uninterrupted.section():  # a signal waits until the run's records are written
            return self._end_run(run_id, status)

    def drain(self, interrupted: Callable[[], bool] = lambda: False) -> list[str]:
        """Wait for the writer, then close it (once ``interrupted()``, a bounded time: ``Writer.close``); what it could
        not finish is dropped, those runs end KILLED, saying so. A line per fault of the writer, for the session."""
        if not self.writer.close(interrupted):
            for run_id, labels in self.writer.abandon().items():
                line = f"interrupted before the writer finished: {'; '.join(labels)}"
                self.abandoned.add(run_id)
                buffer = self.buffers.pop(run_id, None) or RunBuffer()
                if buffer.staging is not None:
                    buffer.staging.cleanup()
                if run_id and not run_id.startswith(OFFLINE_PREFIX):
                    with contextlib.suppress(Exception, TrackingFault):  # its tags (outcome, signal) and why
                        tags = {**buffer.tags, FAULT_TAG: line[:MAX_PARAM_LENGTH]}
                        self.set_tags(run_id, dict(list(tags.items())[-MAX_PARAMS_TAGS_PER_BATCH:]))
                        self.client.set_terminated(run_id, status="KILLED")
                self.writer.faults.append(f"MLflow run {run_id} ends KILLED, {line}")
        for run_id in [r for r in self.writer.failed if r not in self.open_runs]:  # no end to come: said here
            self.writer.faults.append(self.writer.failed.pop(run_id))
        faults, self.writer.faults = self.writer.faults, []
        return faults

    def _end_run(self, run_id: str, status: str) -> str:
        from mlflow.exceptions import MlflowException

        self.open_runs.discard(run_id)
        if run_id.startswith(OFFLINE_PREFIX):
            run_id = self._create_offline_run(run_id)
        try:
            self.flush(run_id)
            if run_id in self.writer.failed:  # a file of this run the writer could not write
                raise TrackingFault(self.writer.failed.pop(run_id))
        except BaseException as exc:
            failed = "KILLED" if status == "KILLED" else "FAILED"
            line = exc.msg if isinstance(exc, TrackingFault) else " ".join(f"{type(exc).__name__}: {exc}".split())
            with contextlib.suppress(Exception, TrackingFault):  # the store may be gone too
                if run_id not in self.abandoned:
                    self.client.set_tag(run_id, FAULT_TAG, line[:MAX_PARAM_LENGTH])
                    self.client.set_terminated(run_id, status=failed)
            if isinstance(exc, (TrackingFault, MlflowException)):
                raise TrackingFault(f"MLflow run {run_id} ends {failed}: {line[:500]}") from None
            raise
        if run_id not in self.abandoned:  # (an interruption's deadline ended it KILLED meanwhile)
            self.client.set_terminated(run_id, status=status)
        return run_id

    def _create_offline_run(self, offline_id: str) -> str:
        """Create, now, the run a test started while the server was gone; else one line saying so."""
        buffer = self.buffers.pop(offline_id)
        try:
            run_id = self.client.create_run(self.ensure_experiment(), **buffer.pending).info.run_id
        except TrackingUnavailable as exc:
            if buffer.staging is not None:
                buffer.staging.cleanup()
            raise TrackingUnavailable(f"{exc.msg}: this test's run was never created; its metrics are in the "
                                      "JUnit XML and its results in the cache, which a re-run logs without "
                                      "recomputing") from None
        buffer.pending = None
        self.buffers[run_id] = buffer
        return run_id

    def flush(self, run_id: str) -> None:
        """Write what a buffered run collected: params, metrics and tags in as few batches as
        MLflow's limits allow, then its artifacts in one upload."""
        buffer = self.buffers.pop(run_id, None)
        if buffer is None:
            return
        try:
            from mlflow.entities import Param, RunTag

            params = [Param(k, v) for k, v in buffer.params.items()]
            tags = [RunTag(k, v) for k, v in buffer.tags.items()]
            metrics = list(buffer.metrics)
            while params or tags or metrics:
                take_params, params = params[:MAX_PARAMS_TAGS_PER_BATCH], params[MAX_PARAMS_TAGS_PER_BATCH:]
                take_tags, tags = tags[:MAX_PARAMS_TAGS_PER_BATCH], tags[MAX_PARAMS_TAGS_PER_BATCH:]
                room = MAX_ENTITIES_PER_BATCH - len(take_params) - len(take_tags)
                take_metrics, metrics = metrics[:room], metrics[room:]
                self.client.log_batch(run_id, metrics=take_metrics, params=take_params, tags=take_tags)
            if buffer.staging is not None:
                try:
                    self.client.log_artifacts(run_id, buffer.staging.name)
                except TrackingFault:
                    raise
                except Exception as exc:
                    raise TrackingFault(self._artifact_fault(run_id, exc)) from None
        finally:
            if buffer.staging is not None:
                buffer.staging.cleanup()

    def _artifact_fault(self, run_id: str, exc: Exception) -> str:
        """One line: which artifact store refused this run's artifacts, and why."""
        where = "the artifact store"
        with contextlib.suppress(Exception, TrackingFault):
            where = self.client.get_run(run_id).info.artifact_uri
        if isinstance(exc, OSError):
            target = exc.filename2 or exc.filename  # shutil's copy: filename is the source, filename2 the target
            reason = f"{exc.strerror or exc}" + (f": {target}" if target else "")
        else:
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        return (f"its artifacts could not be stored in {where} ({reason}); its params and metrics are logged, "
                "and are in the JUnit XML and the cache")

    def kill_open_runs(self, status: str = "KILLED", tags: Mapping[str, Any] | None = None,
                       interrupted: Callable[[], bool] = lambda: True) -> None:
        """End every run this process still has open (``tags`` first, e.g. the signal that ended the session),
        after the writer's queue (``drain``; its faults stay for the caller's ``drain``)."""
        self.writer.faults[:0] = self.drain(interrupted)
        for run_id in list(self.open_runs):
            try:
                if tags:
                    self.set_tags(run_id, tags)
                self.end_run(run_id, status)
            except (Exception, TrackingFault):  # noqa: BLE001 - best effort at session end and exit
                self.open_runs.discard(run_id)

    # -- logging -----------------------------------------------------------------------
    def log_batch(self, run_id: str, params: Mapping[str, Any] | None = None,
                  metrics: Mapping[str, float] | None = None, tags: Mapping[str, Any] | None = None,
                  step: int = 0) -> None:
        """Params, metrics (NaN dropped: MLflow cannot chart it) and tags in one request."""
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        finite = {k: float(v) for k, v in (metrics or {}).items() if v is not None and v == v}
        buffer = self.buffers.get(run_id)
        if buffer is not None:
            for k, v in (params or {}).items():
                value = _stringify(v)
                if buffer.params.setdefault(k, value) != value:  # MLflow refuses to change a param
                    from mlflow.exceptions import MlflowException

                    raise MlflowException(f"param {k!r} of run {run_id} already logged as "
                                          f"{buffer.params[k]!r}; cannot change it to {value!r}")
            buffer.metrics.extend(Metric(k, v, now, step) for k, v in finite.items())
            buffer.tags.update({k: _stringify(v) for k, v in (tags or {}).items()})
            return
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

    def staged_artifacts(self, run_id: str) -> Path | None:
        """The folder of a buffered run's artifacts, before its upload (None when it staged none)."""
        self.writer.wait(run_id)  # what the writer still has to stage
        buffer = self.buffers.get(run_id)
        return Path(buffer.staging.name) if buffer is not None and buffer.staging is not None else None

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        """For a buffered run, ``path`` is staged (hard-linked when it can be: cache files are
        replaced, never rewritten in place) and uploaded when the run ends."""
        buffer = self.buffers.get(run_id)
        if buffer is None:
            self.client.log_artifact(run_id, str(path), artifact_path)
            return
        target = buffer.stage(Path(path).name, artifact_path)
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)

    def log_bytes(self, run_id: str, name: str, data: bytes) -> None:
        buffer = self.buffers.get(run_id)
        if buffer is not None:
            buffer.stage(name).write_bytes(data)
            return
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / name
            target.write_bytes(data)
            self.client.log_artifact(run_id, str(target))


def process_label() -> str:
    """``gw0``, ``gw1``, ... under pytest-xdist, ``main`` otherwise."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def prepare_sqlite_store(tracking_uri: str) -> None:
    """Create (or migrate) a ``sqlite:///`` store under a lock before any client of this process uses it.

    MLflow creates and migrates a sqlite database the first time a client opens it; two xdist workers
    opening a new database at once race in that migration (alembic's ``_alembic_tmp_*`` tables) and
    leave it broken. Other stores are left to MLflow.
    """
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return
    from mlflow.tracking import MlflowClient

    with sqlite_lock(Path(tracking_uri[len(prefix):])):  # the lock the start-up check takes too
        MlflowClient(tracking_uri).search_experiments(max_results=1)
