"""Session-level reporting: the MLflow session run, per-phase reports, JUnit properties.

The session run is created lazily by the first process that needs it (so a
pytest run without robustness tests leaves MLflow untouched); xdist workers
find it through a token the controller hands them and a file lock, so all
nested runs sit under one session run. The controller closes it with the
session's outcome and attaches the JUnit XML.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from . import __version__, tracking
from .errors import RobustnessUsageError
from .progress import terminal_progress
from .server_health import GuardedClient, TrackingFault, require_tracking_server

SESSION_KEY = pytest.StashKey["Any"]()
TOKEN_KEY = pytest.StashKey[str]()
REPORTS_KEY = pytest.StashKey[dict]()
SESSION_RUN_DONE = pytest.StashKey[tuple]()
SESSION_FAULT = pytest.StashKey[str]()
TOKEN_INPUT = "robustness_session_token"

EXIT_STATUS = {pytest.ExitCode.OK: "FINISHED", pytest.ExitCode.INTERRUPTED: "KILLED"}


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


# -- per-phase reports, so fixtures can tell how their test ended ----------------------
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    report = yield
    item.stash.setdefault(REPORTS_KEY, {})[report.when] = report
    return report


def phase_reports(item: pytest.Item) -> dict[str, pytest.TestReport]:
    return item.stash.get(REPORTS_KEY, {})


# -- the lazily created session state and session run -------------------------------------
@pytest.hookimpl(trylast=True)  # after junitxml has created its LogXML
def pytest_configure(config: pytest.Config) -> None:
    config.stash[TOKEN_KEY] = config.workerinput[TOKEN_INPUT] if is_worker(config) else uuid.uuid4().hex
    _prefer_testcase_properties(config)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """xdist controller: tell each worker which session it belongs to."""
    node.workerinput[TOKEN_INPUT] = node.config.stash[TOKEN_KEY]


def _session_file(config: pytest.Config) -> Path:
    from .plugin import settings_of

    return settings_of(config).cache_dir / "sessions" / f"{config.stash[TOKEN_KEY]}.json"


def robustness_session(config: pytest.Config):
    """This process's RobustnessSession, created on first use.

    TensorFlow is set up when the session first needs a model (never, when every
    result is cached), except with ``--gpu``: the GPU set-up picks the device now.
    """
    if SESSION_KEY in config.stash:
        return config.stash[SESSION_KEY]
    import mlflow

    from .plugin import settings_of
    from .session import RobustnessSession

    settings = settings_of(config)
    try:  # before anything is created; an MLFLOW_TRACKING_URI from the environment is first probed here
        require_tracking_server(settings.mlflow_uri, settings.mlflow_timeout, settings.mlflow_uri_source)
    except RobustnessUsageError as exc:
        if is_worker(config):
            pytest.fail(str(exc), pytrace=False)
        pytest.exit(str(exc), returncode=pytest.ExitCode.USAGE_ERROR)
    mlflow.set_tracking_uri(settings.mlflow_uri)
    tracker = tracking.Tracker(settings.mlflow_uri, settings.experiment, settings.mlflow_timeout)
    _attach_session_run(config, tracker, settings)
    from .gating import thresholds_of

    session = RobustnessSession(settings, tracker, "/CPU:0", thresholds_of(config), terminal_progress(config))
    if settings.gpu:
        session.tensorflow()
    config.stash[SESSION_KEY] = session
    return session


def _attach_session_run(config: pytest.Config, tracker: tracking.Tracker, settings) -> None:
    path = _session_file(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_suffix(".lock"))):
        if path.exists():
            data = json.loads(path.read_text())
            tracker.attach_session_run(data["run_id"], data["experiment_id"])
            return
        run_id = tracker.start_session_run(
            name=f"pytest {' '.join(config.invocation_params.args)[:200]}".strip(),
            params={"dataset": settings.dataset, "architectures": ",".join(settings.architectures),
                    "seed": settings.seed, "attack_backend": settings.attack_backend,
                    "model_uri": settings.model_uri or "", **{f"train.{k}": v for k, v in settings.training.as_dict().items()}},
            tags={"robustness.kind": "session", "robustness.version": __version__,
                  "robustness.command": " ".join([Path(sys.argv[0]).name, *config.invocation_params.args])[:5000]},
            # under xdist a worker creates it, and the controller (the worker's parent) closes it
            owner_pid=os.getppid() if is_worker(config) else None,
        )
        path.write_text(json.dumps({"run_id": run_id, "experiment_id": tracker.experiment_id}))


def session_run_id(config: pytest.Config) -> str | None:
    """The session run's id, from this process or the token file (None if no test created one)."""
    if SESSION_KEY in config.stash and config.stash[SESSION_KEY].tracker.session_run_id:
        return config.stash[SESSION_KEY].tracker.session_run_id
    try:
        return json.loads(_session_file(config).read_text())["run_id"]
    except (OSError, KeyError, ValueError):
        return None


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Close what this process opened (KILLED if a test never finished; Ctrl-C lands here too).

    The controller then closes the session run with the session's outcome and
    attaches the JUnit XML, which junitxml has written by now (we run last).
    """
    config = session.config
    if SESSION_KEY in config.stash:
        config.stash[SESSION_KEY].tracker.kill_open_runs("KILLED")
    if is_worker(config):
        return
    run_id = session_run_id(config)
    if run_id is None:
        return
    from mlflow.tracking import MlflowClient

    from .plugin import settings_of

    client = GuardedClient(MlflowClient(settings_of(config).mlflow_uri), settings_of(config).mlflow_timeout)
    try:
        _close_session_run(config, client, run_id, exitstatus)
    except TrackingFault as exc:  # the server went away: the next session marks the run KILLED
        config.stash[SESSION_FAULT] = f"MLflow session run {run_id} could not be closed: {exc.msg}"
        _session_file(config).unlink(missing_ok=True)


def _close_session_run(config: pytest.Config, client, run_id: str, exitstatus: int) -> None:
    from .orphans import close_orphaned_runs
    from .plugin import settings_of

    xmlpath = config.option.xmlpath if hasattr(config.option, "xmlpath") else None
    if xmlpath and Path(xmlpath).is_file():
        try:
            client.log_artifact(run_id, str(xmlpath))
        except Exception as exc:  # noqa: BLE001 - e.g. a full artifact store: the run is still closed
            client.set_tag(run_id, tracking.FAULT_TAG, f"JUnit XML not stored: {exc}"[:5000])
            config.stash[SESSION_FAULT] = f"MLflow session run {run_id}: the JUnit XML could not be stored ({exc})"
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        counts = {k: len(v) for k, v in reporter.stats.items() if k in ("passed", "failed", "error", "skipped")}
        for key, value in counts.items():
            client.log_metric(run_id, f"tests_{key}", value)
    reuse = reuse_summary(client, settings_of(config), run_id)
    client.set_tag(run_id, "robustness.exitstatus", int(exitstatus))
    client.set_tag(run_id, "robustness.reuse", reuse)
    client.set_terminated(run_id, status=EXIT_STATUS.get(exitstatus, "FAILED"))
    # an xdist worker that crashed (SIGKILL, out of memory) left its test's run open
    close_orphaned_runs(client, client.get_run(run_id).info.experiment_id)
    _session_file(config).unlink(missing_ok=True)
    config.stash[SESSION_RUN_DONE] = (run_id, settings_of(config), reuse)


def reuse_summary(client, settings, session_run_id: str) -> str:
    """What this session computed and what it reused, read back from its nested runs.

    Reading MLflow (rather than per-process counters) makes the line right
    under xdist and when several machines log to one tracking server.
    """
    from mlflow.entities import ViewType

    experiment = client.get_experiment_by_name(settings.experiment)
    children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{session_run_id}'",
                                  run_view_type=ViewType.ALL, max_results=50000)
    trained = sum(1 for r in children if r.data.tags.get("robustness.kind") == "training")
    tests = [r for r in children if r.data.tags.get("robustness.kind") == "test"]
    # the candidate, and the model a defense such as PGD adversarial training derived from it
    models = {r.data.params.get(name) for r in tests for name in ("model_uri", "defended_model_uri")} - {None}
    examples = [r.data.tags.get("robustness.examples", "computed") for r in tests]
    reused = sum(1 for e in examples if e in ("cache", "memory"))
    return (f"models: {trained} trained, {max(len(models) - trained, 0)} reused from the registry; "
            f"attack examples: {len(examples) - reused} computed, {reused} reused "
            f"({examples.count('cache')} from the cache, {examples.count('memory')} shared in-session)")


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if SESSION_FAULT in config.stash:
        terminalreporter.write_sep("-", "pytest-robustness")
        terminalreporter.write_line(config.stash[SESSION_FAULT])
    done = config.stash.get(SESSION_RUN_DONE, None)
    if done is None:
        return
    run_id, settings, reuse = done
    terminalreporter.write_sep("-", "pytest-robustness")
    terminalreporter.write_line(
        f"MLflow session run {run_id} in experiment '{settings.experiment}' at {settings.mlflow_uri}"
    )
    terminalreporter.write_line(f"reuse: {reuse}")


# -- JUnit properties ---------------------------------------------------------------------------
def _prefer_testcase_properties(config: pytest.Config) -> None:
    """Metrics are testcase <properties>: valid in xunit1/legacy, not in pytest's default xunit2.

    Unless the user chose a family, the report is written as xunit1, where they
    are valid; with an explicit xunit2 they go into the suite's properties as
    ``<nodeid>::<name>`` instead, keeping the file valid for the family it declares.
    """
    from _pytest.junitxml import xml_key

    xml = config.stash.get(xml_key, None)
    if xml is None or xml.family != "xunit2":
        return
    explicit = getattr(config, "_inicfg", {})  # what ini files and -o set, defaults excluded
    if "junit_family" not in explicit:
        xml.family = "xunit1"
    else:
        config.pluginmanager.register(_SuiteLevelProperties(xml), "robustness-xunit2-properties")


class _SuiteLevelProperties:
    def __init__(self, xml):
        self.xml = xml

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "teardown" and report.user_properties:
            for name, value in report.user_properties:
                self.xml.add_global_property(f"{report.nodeid}::{name}", value)
            report.user_properties = []
