"""The run's one plugin object: the state of a pytest run, and the order of its end-of-session work.

``entry_point.pytest_configure`` registers a ``RobustnessPlugin`` and
``pytest_unconfigure`` unregisters it, as pytest's junitxml does with ``LogXML``
and pytest-xdist with ``DSession``. It owns the settings, the thresholds, the
gate, this process's ``RobustnessSession`` (the tracker and the session run) and
the slot for the session's registry of attacks, defenses, architectures and
datasets. Fixtures reach it through ``config.stash[PLUGIN_KEY]``; nothing
reaches back into module-level state.

At the end of the session ``finish`` runs every step in one written order:
close this process's runs; on the controller the gate's verdicts and promotion
(and the summary artifacts), the sweep plots, the transfer matrix, then closing the session run with
the JUnit XML, the counts and the reuse line.
"""

from __future__ import annotations

import uuid
import warnings
from typing import Any

import pytest
from _pytest.junitxml import xml_key  # where junitxml keeps its LogXML (no public accessor)

from ..data.cache import ArrayCache
from ..engine.session import RobustnessSession
from ..options.settings import Settings
from ..options.thresholds import ThresholdTable
from ..reports import junit
from ..reports.ci_reports import append_step_summary, picture_extras
from ..reports.gating import Gate
from ..reports.session_run import (
    TOKEN_INPUT,
    close_session_run,
    find_session_run,
    is_worker,
    open_session,
    session_file,
    session_lines,
)
from ..reports.sweeps import write_sweep_plots
from ..reports.transfer_matrix import write_transfer_matrix
from ..tracking.server_health import GuardedClient, TrackingFault, TrackingUnavailable
from .cell_labels import label_marks, skip_not_applicable
from .interruption import SIGNAL_TAG, SignalGuard
from .ordering import fast_cells_first
from .ours import dependency_warnings_ignored, is_robustness_test, mark_dependency_warnings
from .transfer_pairs import SOURCE_ARGNAME, is_transfer_test, transfer_pairs

PLUGIN_KEY = pytest.StashKey["RobustnessPlugin"]()
PLUGIN_NAME = "robustness-run"
REPORTS_KEY = pytest.StashKey[dict]()
GUARD_NAME = "robustness-signals"
WRITE_FAULTS = "robustness_write_faults"  # a worker's writer faults, in its workeroutput


class RobustnessPlugin:
    def __init__(self, config: pytest.Config, settings: Settings, thresholds: ThresholdTable):
        self.config = config
        self.settings = settings
        self.thresholds = thresholds
        self.gate = Gate()
        # The session's registry of attacks, defenses, architectures and datasets (``registry``; it is
        # also on config.stash and in force through ``registry_scope`` until the config's cleanup).
        self.registry: Any = None
        self.token = config.workerinput[TOKEN_INPUT] if is_worker(config) else uuid.uuid4().hex
        self.session: RobustnessSession | None = None
        self.suite_level_xml = None  # pytest's LogXML, under an explicit junit_family=xunit2
        self.finished: tuple[str, str] | None = None  # (session run id, reuse line) once closed
        self.transfer_lines: list[str] = []  # the transfer matrix tables, once written
        self.faults: list[str] = []  # what the tracking store could not take at the end (a line each)
        # SIGTERM/SIGHUP end the session as Ctrl-C does, once there is robustness work (see ``interruption``)
        self.guard = SignalGuard(self.robustness_work_open, before_end=self.keep_unfinished_properties)
        self.unfinished: dict[str, pytest.TestReport] = {}  # call reports whose teardown report is yet to come

    @classmethod
    def of(cls, config: pytest.Config) -> "RobustnessPlugin":
        return config.stash[PLUGIN_KEY]

    def robustness_session(self) -> RobustnessSession:
        """This process's RobustnessSession, created (and the session run attached) on first use."""
        if self.session is None:
            self.session = open_session(self.config, self.settings, self.token, self.thresholds)
            self.guard_signals()
        return self.session

    def guard_signals(self) -> None:
        """From now on a SIGTERM or SIGHUP ends the session as Ctrl-C does (``interruption``)."""
        self.guard.install()
        if self.guard.previous and not self.config.pluginmanager.is_registered(self.guard):
            self.config.pluginmanager.register(self.guard, GUARD_NAME)

    def robustness_work_open(self) -> bool:
        """This process, or (xdist controller) one of its workers, opened a robustness session."""
        return self.session is not None or bool(self.gate.cells) or self.session_run_id() is not None

    def session_run_id(self) -> str | None:
        return find_session_run(self.settings, self.token, self.session)

    # -- start ------------------------------------------------------------------------------
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """After every pytest_configure: junitxml's LogXML exists, its family can still be chosen."""
        xml = self.config.stash.get(xml_key, None)
        if junit.testcase_properties_or_suite(self.config, xml):
            self.suite_level_xml = xml
        if self.config.pluginmanager.hasplugin("dsession"):  # an xdist controller: its workers run the tests
            self.guard_signals()

    def keep_unfinished_properties(self) -> None:
        """A signal ended the session while a test was in its teardown (under xdist, also: before its teardown
        report reached the controller): its metrics still go to the JUnit XML, from its call report."""
        xml = self.config.stash.get(xml_key, None)
        for report in self.unfinished.values() if xml is not None else ():
            junit.keep_call_properties(xml, report, self.suite_level_xml is not None)
        self.unfinished.clear()

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:
        """xdist controller: tell each worker which session it belongs to."""
        node.workerinput[TOKEN_INPUT] = self.token

    # -- collection: only robustness tests (see ``ours``) ----------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """A robustness test that asks for ``architecture`` runs once per selected architecture.

        Runs before ``@pytest.mark.parametrize`` so the architecture leads the test id
        (``test_fgm[le_net-linf-eps0.3]``); each cell carries its architecture marker,
        and ``slow`` for the large ones.
        """
        if "architecture" not in metafunc.fixturenames or not is_robustness_test(metafunc.fixturenames,
                                                                                  metafunc.definition):
            return
        if is_transfer_test(metafunc.fixturenames):  # (source, target) pairs, e.g. shallow_net-to-le_net
            metafunc.parametrize([SOURCE_ARGNAME, "architecture"], transfer_pairs(self.settings.architectures))
            return
        params = [pytest.param(name, id=name, marks=label_marks(name)) for name in self.settings.architectures]
        metafunc.parametrize("architecture", params)

    @pytest.hookimpl(trylast=True)  # after -m/-k deselection and other plugins' reordering
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        """Robustness tests get our warning filters and the ``gpu`` skip; then fast cells go first."""
        skip = pytest.mark.skip(reason="needs --gpu")
        ours = [item for item in items if is_robustness_test(getattr(item, "fixturenames", ()), item)]
        for item in ours:
            mark_dependency_warnings(item)
            if not self.settings.gpu and item.get_closest_marker("gpu") is not None:
                item.add_marker(skip)
        skip_not_applicable(self.settings, ours)  # e.g. pgd training on a given model: one line, not an error
        fast_cells_first(items)

    # -- each test ---------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call):
        """Per-phase reports, so the ``robustness`` fixture can tell how its test ended."""
        report = yield
        item.stash.setdefault(REPORTS_KEY, {})[report.when] = report
        if report.when == "call" and self._html_report():
            extras = picture_extras(self._staged_artifacts(item))
            if extras:  # pytest-html shows them with the test (its report.extras)
                report.extras = [*getattr(report, "extras", []), *extras]
        return report

    def _html_report(self) -> bool:
        """pytest-html is registered and writes a report in this run (``--html``)."""
        return self.config.pluginmanager.hasplugin("html") and bool(getattr(self.config.option, "htmlpath", None))

    def _staged_artifacts(self, item: pytest.Item):
        """The folder holding what this cell's MLflow run will upload (its evidence pictures), if any."""
        cell = getattr(item, "funcargs", {}).get("robustness")
        if self.session is None or getattr(cell, "run_id", None) is None:
            return None
        return self.session.tracker.staged_artifacts(cell.run_id)

    @pytest.hookimpl(tryfirst=True)  # before junitxml's LogXML reads the properties
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """On the controller every report passes here: first the gate reads it, then (explicit
        xunit2) its properties move to the suite level."""
        self.gate.observe(report)
        if report.when == "call":
            self.unfinished[report.nodeid] = report
        elif report.when == "teardown":
            self.unfinished.pop(report.nodeid, None)
        if self.suite_level_xml is not None:
            junit.move_to_suite_level(self.suite_level_xml, report)

    # -- end ---------------------------------------------------------------------------------
    @pytest.hookimpl(trylast=True)  # after junitxml has written the XML the session run attaches
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        with dependency_warnings_ignored():
            self.finish(exitstatus, session)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        """xdist controller: what a worker's writer could not write, reported with this session's faults."""
        self.faults += getattr(node, "workeroutput", {}).get(WRITE_FAULTS, [])

    def finish(self, exitstatus: int, session: pytest.Session | None = None) -> None:
        """The end-of-session work, in this order (Ctrl-C lands here too). A tracking server that went
        away costs one line each, never the session: what was computed is in the JUnit XML and the cache."""
        signalled = {SIGNAL_TAG: self.guard.signal_name} if self.guard.received is not None else {}
        if self.session is not None:  # 1. the background writer's queue, then this process's runs: KILLED if open
            def interrupted() -> bool:  # (a signal may come while the session waits for the writer)
                return self.guard.received is not None or exitstatus == pytest.ExitCode.INTERRUPTED

            self.session.tracker.kill_open_runs("KILLED", signalled, interrupted)
            self.faults += self.session.tracker.drain()
            self.session.cache.flush()  # the adversarial examples' background cache writes
        if is_worker(self.config):
            self.config.workeroutput[WRITE_FAULTS] = list(self.faults)
            return
        if self.faults and exitstatus == pytest.ExitCode.OK:  # a test's records were lost: as a test error would
            exitstatus = pytest.ExitCode.TESTS_FAILED
            if session is not None:
                session.exitstatus = exitstatus
        run_id = self.session_run_id()
        if run_id is None and not self.gate.cells:
            return
        from mlflow.tracking import MlflowClient

        client = GuardedClient(MlflowClient(self.settings.mlflow_uri), self.settings.mlflow_timeout)
        try:  # 2. verdicts, promotion, summary
            self.gate.conclude(client, self.settings.promote, run_id, exitstatus)
        except TrackingFault as exc:  # the server went away: say so once, promote nothing
            self.gate.decision = f"nothing promoted, no verdicts recorded: {exc.msg}"
        except OSError as exc:  # e.g. a full artifact store: the verdicts are recorded, the summary files are not
            self.gate.decision = "; ".join(filter(None, [self.gate.decision,
                                                         f"summary table not stored in MLflow: {exc}"]))
        try:  # 2b. the same table where CI shows it (GitHub Actions' job summary)
            append_step_summary(self.gate.cells, self.gate.decision)
        except OSError as exc:
            warnings.warn(f"pytest-robustness: job summary not written: {exc}", stacklevel=1)
        if run_id is None:
            return
        cache = ArrayCache(self.settings.cache_dir / "arrays", self.settings.cache_mode)
        try:  # 3. the accuracy-vs-eps plots, from what every process logged
            write_sweep_plots(client, run_id, cache)
        except TrackingUnavailable:
            pass  # the server is gone: closing the session run says so
        except Exception as exc:  # noqa: BLE001 - a missing plot must not turn a green session red
            warnings.warn(f"pytest-robustness: FGM sweep plots not written: {exc}", stacklevel=1)
        try:  # 4. the transfer matrix (heatmaps and CSVs), likewise from MLflow
            self.transfer_lines = write_transfer_matrix(client, run_id, cache)
        except TrackingUnavailable:
            pass
        except Exception as exc:  # noqa: BLE001 - a missing picture must not turn a green session red
            warnings.warn(f"pytest-robustness: transfer matrix not written: {exc}", stacklevel=1)
        try:  # 5. the session run: JUnit XML, counts, reuse line, status
            reuse = close_session_run(client, self.config, self.settings, self.token, run_id, exitstatus, self.faults,
                                      signalled)
        except TrackingFault as exc:  # the next session on this machine marks the run KILLED
            self.faults.append(f"MLflow session run {run_id} could not be closed: {exc.msg}")
            session_file(self.settings, self.token).unlink(missing_ok=True)
            return
        self.finished = (run_id, reuse)

    def pytest_terminal_summary(self, terminalreporter, exitstatus: int, config: pytest.Config) -> None:
        """The transfer matrix, the gate's table (and decision), then where the session run is and what was reused."""
        if self.transfer_lines:
            terminalreporter.write_sep("-", "transfer matrix")
            for line in self.transfer_lines:
                terminalreporter.write_line(line)
        lines = self.gate.terminal_lines()
        if lines:
            terminalreporter.write_sep("-", "robustness summary")
            for line in lines:
                terminalreporter.write_line(line)
        if self.finished is not None or self.faults:
            terminalreporter.write_sep("-", "pytest-robustness")
            for line in self.faults:
                terminalreporter.write_line(line)
            for line in session_lines(self.settings, *self.finished) if self.finished is not None else ():
                terminalreporter.write_line(line)


def phase_reports(item: pytest.Item) -> dict[str, pytest.TestReport]:
    return item.stash.get(REPORTS_KEY, {})
