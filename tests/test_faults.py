"""Faults lose nothing: a tracking server that is not there, one that goes away mid-session, a full disk.

A server that is not there fails the session at start-up, in seconds, with one
line. One that dies mid-session (a real ``mlflow server``, SIGTERMed after the
first cell) costs each affected test one line, not minutes of retries; the JUnit
XML and the cache keep every result, and a re-run after the server is back logs
all of it without recomputing. A full artifact store (a real, tiny tmpfs) ends
the run FAILED, with one line saying what failed.
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from mlflow_server import MlflowServer, free_port, mlflow_executable, refuses

from helpers import EXPERIMENT, FGM_SUITE, MODEL_NAME, TINY, run_robustness, session_run_id, tmpfs
from pytest_robustness.tracking.orphans import CLOSED_TAG
from pytest_robustness.tracking.runs import FAULT_TAG

METRICS = ("clean_accuracy", "adversarial_accuracy", "attack_success_rate", "l_inf_norm")
PLAIN_TEST = "def test_plain():\n    pass\n"


def junit_cases(xml_path: Path) -> dict:
    return {case.get("name"): case for case in ET.parse(xml_path).getroot().iter("testcase")}


def properties(case) -> dict[str, str]:
    return {p.get("name"): p.get("value") for p in case.iter("property")}


def report_lines(result) -> list[str]:
    """The output above pytest's short summary, which repeats each error's message in full only on CI
    (where the CI environment variable lifts its truncation to the terminal width)."""
    lines = result.outlines
    header = next((i for i, line in enumerate(lines) if "short test summary info" in line), len(lines))
    return lines[:header]


def nothing_created(path: Path) -> bool:
    return not any((path / name).exists() for name in ("mlflow.db", "mlartifacts", ".robustness_cache"))


# -- a server that is not there ----------------------------------------------------------------------
def _usage_error(pytester, *args) -> tuple[str, float]:
    pytester.makepyfile(test_plain=PLAIN_TEST)
    started = time.monotonic()
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    seconds = time.monotonic() - started
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1, result.stderr.str()
    assert nothing_created(pytester.path)
    return errors[0], seconds


def test_nothing_listening_fails_at_start_up_in_seconds(pytester):
    line, seconds = _usage_error(pytester, "--mlflow-uri", "http://127.0.0.1:9")
    assert line == ("ERROR: --mlflow-uri http://127.0.0.1:9: no MLflow tracking server answered: connection "
                    "refused (probe timeout 5 s, --mlflow-timeout)")
    assert seconds < 10


def test_a_server_that_never_answers_fails_after_the_probe_timeout(pytester):
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        line, seconds = _usage_error(pytester, "--mlflow-uri", uri, "--mlflow-timeout", "1")
    assert line == (f"ERROR: --mlflow-uri {uri}: no MLflow tracking server answered: no answer within 1 s "
                    "(probe timeout 1 s, --mlflow-timeout)")
    assert seconds < 10


class _Unavailable(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_server_answering_with_an_error_status_names_it(pytester):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        line, seconds = _usage_error(pytester, "--mlflow-uri", uri)
    finally:
        server.shutdown()
    assert line.startswith(f"ERROR: --mlflow-uri {uri}: no MLflow tracking server answered: HTTP 503")
    assert seconds < 10


def test_probe_timeout_option_is_checked(pytester):
    line, _ = _usage_error(pytester, "--mlflow-timeout", "0")
    assert line == "ERROR: --mlflow-timeout '0': expected a number of seconds > 0"
    pytester.makeini("[pytest]\nrobustness_mlflow_timeout = soon\n")
    line, _ = _usage_error(pytester)
    assert line == "ERROR: robustness_mlflow_timeout 'soon': expected a number of seconds > 0"


def test_an_environment_tracking_uri_is_probed_only_when_a_test_needs_mlflow(pytester, monkeypatch):
    """A plain project with a dead server in $MLFLOW_TRACKING_URI sees what it would see without us."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    pytester.makepyfile(test_plain=PLAIN_TEST)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    pytester.makepyfile(test_cell="def test_cell(robustness):\n    robustness.attack('fgm', eps=0.1)\n")
    started = time.monotonic()
    result = run_robustness(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert time.monotonic() - started < 10
    assert ("MLFLOW_TRACKING_URI http://127.0.0.1:9: no MLflow tracking server answered: connection refused"
            in result.stdout.str())
    assert nothing_created(pytester.path)


# -- a server that goes away mid-session ----------------------------------------------------------------
KILL_AFTER_FIRST_TEST = '''
import os
import signal
import socket
import time

GROUP = os.environ.get("KILL_SERVER_GROUP")


def written(url):
    """Every test run in the store has ended: the session's background writer has written the first test."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(experiments, "tags.`robustness.kind` = 'test'")
    return found and all(run.info.status != "RUNNING" for run in found)


def pytest_runtest_logfinish(nodeid, location):
    """After the first test's records are written, SIGTERM the tracking server and wait until its port
    refuses connections."""
    global GROUP
    if not GROUP:
        return
    deadline = time.monotonic() + 60
    while not written(os.environ["KILL_SERVER_URL"]):
        assert time.monotonic() < deadline, "the first test's run was not written"
        time.sleep(0.1)
    os.killpg(int(GROUP), signal.SIGTERM)
    GROUP, port = None, int(os.environ["KILL_SERVER_PORT"])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.1)
    raise RuntimeError("the tracking server did not stop")
'''
THREE_CELLS = '''
import pytest

from pytest_robustness import attack_cases


@attack_cases("fgm", [dict(norm="inf", eps=0.1), dict(norm="inf", eps=0.2), dict(norm="inf", eps=0.3)])
def test_fgm(robustness, params):
    result = robustness.attack("fgm", **params)
    robustness.check(result, clean_accuracy=0.1)
'''


@pytest.fixture
def server(tmp_path):
    if mlflow_executable() is None:
        pytest.skip("the `mlflow` executable is not on PATH nor beside this Python")
    root = tmp_path / "server"
    root.mkdir()
    running = MlflowServer(root).start()
    yield running
    running.stop()


def test_server_going_away_mid_session_loses_nothing(pytester, server, monkeypatch):
    pytester.makeconftest(KILL_AFTER_FIRST_TEST)
    pytester.makepyfile(test_cells=THREE_CELLS)
    monkeypatch.setenv("KILL_SERVER_GROUP", str(server.process.pid))
    monkeypatch.setenv("KILL_SERVER_PORT", str(server.port))
    monkeypatch.setenv("KILL_SERVER_URL", server.url)
    # its own process, which ends like any CI job's: the next session finds its session run orphaned
    started = time.monotonic()
    first = pytester.runpytest_subprocess(*TINY, "--mlflow-uri", server.url, "--junitxml", "first.xml",
                                          timeout=200)  # MLflow's own retries would take 4 minutes per call
    first_seconds = time.monotonic() - started
    assert refuses(server.port)
    output = first.stdout.str()
    assert "Max retries exceeded" not in output  # no unguarded call retried, even at session end
    # The first cell was logged; the two after the server went away each report one line.
    assert first.ret == pytest.ExitCode.TESTS_FAILED
    first.assert_outcomes(passed=3, errors=2)
    gone = [line for line in report_lines(first) if f"{server.url} is not answering (connection refused)" in line]
    # one per affected test (in the error's section), the verdicts, the session run
    assert len(gone) == 2 + 1 + 1, output
    assert "Traceback" not in output and "Retrying" not in output
    assert sum("this test's run was never created" in line for line in gone) == 2
    assert sum(line.startswith("nothing promoted, no verdicts recorded: ") for line in gone) == 1
    assert sum(line.startswith("MLflow session run ") and "could not be closed" in line for line in gone) == 1
    cases = junit_cases(pytester.path / "first.xml")
    assert len(cases) == 3
    for name, case in cases.items():
        props = properties(case)
        assert all(metric in props for metric in METRICS), (name, props)  # every computed metric survives
        assert props["model_uri"] == f"models:/{MODEL_NAME}/1"
    affected = [case for case in cases.values() if case.find("error") is not None]
    assert len(affected) == 2
    for case in affected:
        assert "is not answering" in case.find("error").get("message")
        assert float(case.get("time")) < 20  # bounded retries, then at once: not minutes per test

    # the training and three cells, plus seconds of bounded retries once: not minutes of retries per call
    assert first_seconds < 150
    server.stop()
    server.start()  # the same store, on the same port
    monkeypatch.delenv("KILL_SERVER_GROUP")
    second = run_robustness(pytester, "--mlflow-uri", server.url, "--junitxml", "second.xml")
    assert second.ret == pytest.ExitCode.OK, second.stdout.str()
    second.assert_outcomes(passed=3)
    assert ("reuse: models: 0 trained, 1 reused from the registry; attack examples: 0 computed, 3 reused "
            "(3 from the cache, 0 shared in-session)") in second.stdout.str()

    client = MlflowClient(server.url)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL, max_results=100)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    logged = {r.data.tags["mlflow.runName"]: r for r in runs
              if r.data.tags.get("mlflow.parentRunId") == session_run_id(second)}
    assert set(logged) == set(cases)
    for name, case in cases.items():
        run = logged[name]
        assert run.info.status == "FINISHED" and run.data.tags["robustness.examples"] == "cache"
        for metric in METRICS:  # what the first session computed is what the second logged
            assert run.data.metrics[metric] == pytest.approx(float(properties(case)[metric]), abs=1e-6)
        assert {"adversarial_examples.npz", "samples.png"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    # The first session's run, left open when the server died, was closed by the second.
    first_session = [r for r in runs if r.data.tags.get("robustness.kind") == "session"
                     and r.info.run_id != session_run_id(second)]
    assert len(first_session) == 1 and first_session[0].info.status == "KILLED"
    assert "ended without closing it" in first_session[0].data.tags[CLOSED_TAG]
    assert [v.version for v in client.search_model_versions(f"name = '{MODEL_NAME}'")] == ["1"]


# -- a full artifact store ----------------------------------------------------------------------------
@pytest.fixture
def tiny_filesystem(tmp_path):
    """A real 64 KiB tmpfs: a full disk that root cannot write past (chmod would not stop root)."""
    with tmpfs(tmp_path / "tiny", "64k") as mount_point:
        yield mount_point


@pytest.mark.parametrize("sync", [True, False], ids=["sync-logging", "background-writer"])
def test_full_artifact_store_ends_runs_failed_and_keeps_the_metrics(pytester, trained_store, tiny_filesystem, sync):
    """With ``--robustness-sync-logging`` each test reports its run's fault as an error at once; with the
    background writer (the default) the tests have passed when the writes fail, so the session reports a line
    per run naming its test, and fails as a test error would make it."""
    experiment = f"full_disk_{'sync' if sync else 'background'}"
    client = trained_store.client
    client.create_experiment(experiment, artifact_location=tiny_filesystem.as_uri())
    pytester.makepyfile(test_suite=FGM_SUITE)
    args = ("--model-uri", f"models:/{MODEL_NAME}/1", "--experiment", experiment, "--junitxml", "report.xml",
            *(["--robustness-sync-logging"] if sync else []))
    first = run_robustness(pytester, *args, store=trained_store)
    assert first.ret == pytest.ExitCode.TESTS_FAILED
    first.assert_outcomes(passed=2, errors=2 if sync else 0)
    output = first.stdout.str()
    assert "Traceback" not in output
    lines = [line for line in report_lines(first) if "its artifacts could not be stored in" in line]
    assert len(lines) == 2, output
    assert all("No space left on device" in line and "ends FAILED" in line for line in lines)
    cases = junit_cases(pytester.path / "report.xml")
    if not sync:
        assert all(sum(f"end of {name}: MLflow run" in line for line in lines) == 1 for name in cases)  # named
    for name, case in cases.items():
        assert all(metric in properties(case) for metric in METRICS), name
        if sync:
            assert "No space left on device" in case.find("error").get("message")

    runs = {r.data.tags["mlflow.runName"]: r for r in trained_store.runs(experiment)}
    assert not [r for r in runs.values() if r.info.status == "RUNNING"]
    for name, case in cases.items():
        run = runs[name]
        assert run.info.status == "FAILED"
        assert "No space left on device" in run.data.tags[FAULT_TAG]
        for metric in METRICS:  # logged before the artifacts
            assert run.data.metrics[metric] == pytest.approx(float(properties(case)[metric]), abs=1e-6)

    # With room again, a re-run logs everything from the cache.
    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_filesystem)], check=True)
    second = run_robustness(pytester, *args, store=trained_store)
    second.assert_outcomes(passed=2)
    assert "attack examples: 0 computed, 2 reused (2 from the cache" in second.stdout.str()
    for run in trained_store.children(session_run_id(second), experiment):
        assert run.info.status == "FINISHED"
        assert "adversarial_examples.npz" in {a.path for a in client.list_artifacts(run.info.run_id)}
