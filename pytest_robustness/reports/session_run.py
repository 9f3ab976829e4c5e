"""The MLflow session run: created lazily, shared by xdist workers, closed by the controller.

The session run is created by the first process that needs it (so a pytest run
without robustness tests leaves MLflow untouched); xdist workers find it through
a token the controller hands them and a file lock, so all nested runs sit under
one session run. The controller closes it with the session's outcome, the JUnit
XML, the test counts and the reuse line. No hooks here: the run's plugin object
(``robustness_plugin``) calls these functions in its own order.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
from pathlib import Path

import pytest
from filelock import FileLock

from ..engine.progress import terminal_progress
from ..engine.session import RobustnessSession
from ..errors import RobustnessUsageError
from ..options.settings import Settings
from ..options.thresholds import ThresholdTable
from ..tracking import runs, uninterrupted
from ..tracking.orphans import close_orphaned_runs
from ..tracking.search import equals, search_runs
from ..tracking.store_checks import require_tracking_store

TOKEN_INPUT = "robustness_session_token"
EXIT_STATUS = {pytest.ExitCode.OK: "FINISHED", pytest.ExitCode.INTERRUPTED: "KILLED"}


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def session_file(settings: Settings, token: str) -> Path:
    """Where the session run's id waits for the workers of this pytest session."""
    return settings.cache_dir / "sessions" / f"{token}.json"


def open_session(config: pytest.Config, settings: Settings, token: str, thresholds: ThresholdTable) -> RobustnessSession:
    """This process's RobustnessSession, attached to (or creating) the session run.

    TensorFlow is set up when the session first needs a model (never, when every
    result is cached), except with ``--gpu``: the GPU set-up picks the device now.
    """
    import mlflow

    try:  # before anything is created; an MLFLOW_TRACKING_URI from the environment is first probed here
        require_tracking_store(settings.mlflow_uri, settings.mlflow_timeout, settings.mlflow_uri_source)
    except RobustnessUsageError as exc:
        if is_worker(config):
            pytest.fail(str(exc), pytrace=False)
        pytest.exit(str(exc), returncode=pytest.ExitCode.USAGE_ERROR)
    mlflow.set_tracking_uri(settings.mlflow_uri)
    runs.prepare_sqlite_store(settings.mlflow_uri)  # xdist workers must not migrate a new database at once
    tracker = runs.Tracker(settings.mlflow_uri, settings.experiment, settings.mlflow_timeout,
                           synchronous_writes=settings.sync_logging)
    _attach_session_run(config, tracker, settings, token)
    session = RobustnessSession(settings, tracker, "/CPU:0", thresholds, terminal_progress(config))
    if settings.gpu:
        session.tensorflow()
    return session


def _attach_session_run(config: pytest.Config, tracker: runs.Tracker, settings: Settings, token: str) -> None:
    path = session_file(settings, token)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a signal waits until the run exists and the file names it: else nobody would close the run
    with FileLock(str(path.with_suffix(".lock"))), uninterrupted.section():
        if path.exists():
            data = json.loads(path.read_text())
            tracker.attach_session_run(data["run_id"], data["experiment_id"])
            return
        run_id = tracker.start_session_run(
            name=f"pytest {' '.join(config.invocation_params.args)[:200]}".strip(),
            params={"dataset": settings.dataset, "architectures": ",".join(settings.architectures),
                    "seed": settings.seed, "attack_backend": settings.attack_backend,
                    "model_uri": settings.model_uri or "", **{f"train.{k}": v for k, v in settings.training.as_dict().items()}},
            tags={"robustness.kind": "session", "robustness.version": importlib.metadata.version("pytest-robustness"),
                  "robustness.command": " ".join([Path(sys.argv[0]).name, *config.invocation_params.args])[:5000]},
            # under xdist a worker creates it, and the controller (the worker's parent) closes it
            owner_pid=os.getppid() if is_worker(config) else None,
        )
        path.write_text(json.dumps({"run_id": run_id, "experiment_id": tracker.experiment_id}))


def find_session_run(settings: Settings, token: str, session: RobustnessSession | None) -> str | None:
    """The session run's id, from this process or the token file (None if no test created one)."""
    if session is not None and session.tracker.session_run_id:
        return session.tracker.session_run_id
    try:
        return json.loads(session_file(settings, token).read_text())["run_id"]
    except (OSError, KeyError, ValueError):
        return None


def close_session_run(client, config: pytest.Config, settings: Settings, token: str, run_id: str,
                      exitstatus: int, faults: list[str], tags: dict[str, str] | None = None) -> str:
    """Controller: attach the JUnit XML (written by now), log the counts, close the run; the reuse line.
    What could not be stored is said in ``faults`` (a line each), the run still closes."""
    xmlpath = getattr(config.option, "xmlpath", None)
    if xmlpath and Path(xmlpath).is_file():
        try:
            client.log_artifact(run_id, str(xmlpath))
        except Exception as exc:  # noqa: BLE001 - e.g. a full artifact store: the run is still closed
            client.set_tag(run_id, runs.FAULT_TAG, f"JUnit XML not stored: {exc}"[:5000])
            faults.append(f"MLflow session run {run_id}: the JUnit XML could not be stored ({exc})")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        counts = {k: len(v) for k, v in reporter.stats.items() if k in ("passed", "failed", "error", "skipped")}
        for key, value in counts.items():
            client.log_metric(run_id, f"tests_{key}", value)
    reuse = reuse_summary(client, settings, run_id)
    for key, value in (tags or {}).items():  # e.g. robustness.signal: the signal that ended the session
        client.set_tag(run_id, key, value)
    client.set_tag(run_id, "robustness.exitstatus", int(exitstatus))
    client.set_tag(run_id, "robustness.reuse", reuse)
    client.set_terminated(run_id, status=EXIT_STATUS.get(exitstatus, "FAILED"))
    # an xdist worker that crashed (SIGKILL, out of memory) left its test's run open
    close_orphaned_runs(client, client.get_run(run_id).info.experiment_id)
    session_file(settings, token).unlink(missing_ok=True)
    return reuse


def reuse_summary(client, settings: Settings, session_run_id: str) -> str:
    """What this session computed and what it reused, read back from its nested runs.

    Reading MLflow (rather than per-process counters) makes the line right
    under xdist and when several machines log to one tracking server.
    """
    from mlflow.entities import ViewType

    experiment = client.get_experiment_by_name(settings.experiment)
    children = search_runs(client, [experiment.experiment_id], equals("tags", "mlflow.parentRunId", session_run_id),
                           run_view_type=ViewType.ALL)
    trained = sum(1 for r in children if r.data.tags.get("robustness.kind") == "training")
    # a test a signal interrupted (KILLED) computed nothing it logged: not counted
    tests = [r for r in children if r.data.tags.get("robustness.kind") == "test" and r.info.status != "KILLED"]
    # the candidate, and the model a defense such as PGD adversarial training derived from it
    models = {r.data.params.get(name) for r in tests for name in ("model_uri", "defended_model_uri")} - {None}
    examples = [r.data.tags.get("robustness.examples", "computed") for r in tests]
    reused = sum(1 for e in examples if e in ("cache", "memory", "mlflow"))
    return (f"models: {trained} trained, {max(len(models) - trained, 0)} reused from the registry; "
            f"attack examples: {len(examples) - reused} computed, {reused} reused "
            f"({examples.count('cache')} from the cache, {examples.count('memory')} shared in-session"
            + (f", {examples.count('mlflow')} read back from MLflow runs)" if "mlflow" in examples else ")"))


def session_lines(settings: Settings, run_id: str, reuse: str) -> list[str]:
    return [f"MLflow session run {run_id} in experiment '{settings.experiment}' at {settings.mlflow_uri}",
            f"reuse: {reuse}"]
