"""A cell's MLflow writes (its artifacts, their upload, the end of its run) do not hold up the next cell.

A real sqlite store whose experiment keeps its artifacts in a *slow artifact store*: MLflow's own local
artifact repository, registered under the scheme ``slow`` by the inner session's conftest, whose uploads
take ``SLOW_STORE_SECONDS`` and log when they start and end (and the conftest logs when each test's call
starts). With the background writer (the default) the next test starts while the previous one's upload is
still running; with ``--robustness-sync-logging`` it starts only after it ended; and both leave the same
params, metrics and artifacts in the store, every run FINISHED. A session interrupted (SIGTERM) while an
upload hangs waits a bounded time, then ends that run KILLED, tagged and reported with what was not written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.entities import ViewType

from helpers import MODEL_NAME, TINY, run_robustness, session_run_id
from pytest_robustness.data.adversarial_sets import read_examples
from pytest_robustness.plugin.interruption import GRACE_S
from pytest_robustness.tracking import writer as writer_module
from pytest_robustness.tracking.runs import FAULT_TAG, Tracker
from pytest_robustness.tracking.writer import Writer

SLOW_STORE = '''
import json
import os
import time

from mlflow.store.artifact.artifact_repository_registry import _artifact_repository_registry
from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository


def note(**event):
    with open(os.environ["SLOW_STORE_LOG"], "a") as log:
        log.write(json.dumps(event) + "\\n")


class SlowArtifactRepository(LocalArtifactRepository):
    """MLflow's local artifact store under ``slow:///PATH``, whose uploads take SLOW_STORE_SECONDS."""

    def __init__(self, artifact_uri, *args, **kwargs):
        super().__init__("file://" + artifact_uri.removeprefix("slow://"), *args, **kwargs)

    def log_artifacts(self, local_dir, artifact_path=None):
        started = time.time()
        time.sleep(float(os.environ["SLOW_STORE_SECONDS"]))
        super().log_artifacts(local_dir, artifact_path)
        note(upload=self.artifact_uri.split("/")[-2], started=started, ended=time.time())


_artifact_repository_registry.register("slow", SlowArtifactRepository)


def pytest_runtest_call(item):
    note(call=item.name, started=time.time())
'''
THREE_CELLS = '''
from pytest_robustness import attack_cases


@attack_cases("fgm", [dict(norm="inf", eps=0.1), dict(norm="inf", eps=0.2), dict(norm="inf", eps=0.3)])
def test_fgm(robustness, params):
    result = robustness.attack("fgm", **params)
    robustness.check(result, clean_accuracy=0.1)
'''
SLOW_S = 3.0
VARYING_TAGS = ("robustness.seconds.", "robustness.attack_seconds", "robustness.examples", "robustness.owner", "mlflow.")


def events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def slow_session(pytester, store, monkeypatch, experiment: str, *args: str):
    """The three cells against ``experiment``, whose artifacts go to the slow store: (result, runs by name, log)."""
    store.client.create_experiment(experiment, artifact_location=f"slow://{pytester.path / experiment}")
    log = pytester.path / f"{experiment}.jsonl"
    monkeypatch.setenv("SLOW_STORE_LOG", str(log))
    monkeypatch.setenv("SLOW_STORE_SECONDS", str(SLOW_S))
    result = run_robustness(pytester, "--model-uri", f"models:/{MODEL_NAME}/1", "--experiment", experiment,
                            *args, store=store)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.assert_outcomes(passed=3)
    runs = {r.info.run_name: r for r in store.children(session_run_id(result), experiment)}
    return result, runs, events(log)


def overlapped(runs: dict, log: list[dict]) -> dict[str, bool]:
    """For each test but the last: did the next test's call start before this test's upload ended?"""
    calls = sorted((e["started"], e["call"]) for e in log if "call" in e)
    uploads = {e["upload"]: e for e in log if "upload" in e}
    return {name: started < uploads[runs[name].info.run_id]["ended"]
            for (_, name), (started, _) in zip(calls, calls[1:])}


def stored(store, run, tmp: Path) -> dict:
    """What a test's run holds, less what differs from one session to the next (times, reuse, owner)."""
    files = {}
    root = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(tmp / run.info.run_id),
                                                    tracking_uri=store.uri))
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = str(path.relative_to(root))
        if name.endswith("adversarial_examples.npz"):
            files[name] = {k: v.tobytes() for k, v in read_examples(path).items()}
        elif name.endswith(".npz"):
            with np.load(path) as data:
                files[name] = {k: data[k].tobytes() for k in data.files}
        else:
            files[name] = path.read_bytes()
    tags = {k: v for k, v in run.data.tags.items() if not k.startswith(VARYING_TAGS)}
    return dict(status=run.info.status, params=run.data.params, metrics=run.data.metrics, tags=tags, files=files)


def test_a_slow_artifact_upload_does_not_delay_the_next_cell(pytester, trained_store, monkeypatch, tmp_path):
    pytester.makeconftest(SLOW_STORE)
    pytester.makepyfile(test_cells=THREE_CELLS)
    _, background, background_log = slow_session(pytester, trained_store, monkeypatch, "slow_background")
    _, sync, sync_log = slow_session(pytester, trained_store, monkeypatch, "slow_sync", "--robustness-sync-logging")

    # The background writer: each next test started while the previous test's upload still ran ...
    assert overlapped(background, background_log) == {name: True for name in sorted(background)[:2]}
    # ... and the synchronous mode, where it waited for it (so the check above can fail)
    assert overlapped(sync, sync_log) == {name: False for name in sorted(sync)[:2]}
    assert all(float(run.data.tags["robustness.seconds.log"]) < SLOW_S for run in background.values())

    # The same records in the store either way, every artifact written, every run FINISHED.
    assert set(background) == set(sync) and len(background) == 3
    for name in background:
        written = stored(trained_store, background[name], tmp_path)
        assert written == stored(trained_store, sync[name], tmp_path), name
        assert written["status"] == "FINISHED"
        assert {"adversarial_examples.npz", "distance_metrics.csv", "samples.png"} <= set(written["files"])
        assert written["metrics"]["adversarial_accuracy"] >= 0


# -- an interruption while an upload hangs ---------------------------------------------------------
CANCELLED = '''
import os
import pathlib
import time

from pytest_robustness import attack_cases


@attack_cases("fgm", [dict(norm="inf", eps=0.1), dict(norm="inf", eps=0.2)])
def test_fgm(robustness, params):
    if params["eps"] == 0.2:  # the first test's upload hangs on the writer; this one is cancelled
        robustness.ensure_run()
        pathlib.Path(os.environ["CANCEL_FLAG"]).write_text(str(os.getpid()))
        time.sleep(300)
    result = robustness.attack("fgm", **params)
    robustness.check(result, clean_accuracy=0.1)
'''
FIRST, SECOND = "test_fgm[shallow_net-linf-eps0.1]", "test_fgm[shallow_net-linf-eps0.2]"


def test_sigterm_while_an_upload_hangs_ends_its_run_killed_saying_what_was_not_written(pytester, trained_store):
    experiment = "hanging_store"
    trained_store.client.create_experiment(experiment, artifact_location=f"slow://{pytester.path / experiment}")
    pytester.makeconftest(SLOW_STORE)
    pytester.makepyfile(test_cancelled=CANCELLED)
    flag, log = pytester.path / "second-cell-running", pytester.path / "output.log"
    env = {**os.environ, "CANCEL_FLAG": str(flag), "SLOW_STORE_SECONDS": "600",
           "SLOW_STORE_LOG": str(pytester.path / "events.jsonl"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent),
                                                       os.environ.get("PYTHONPATH")]))}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "pytest", *TINY, "-v", "-p", "no:xdist", "--mlflow-uri", trained_store.uri,
               "--model-uri", f"models:/{MODEL_NAME}/1", "--experiment", experiment]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=pytester.path, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            deadline = time.monotonic() + 240
            while not (flag.exists() and f"{FIRST} PASSED" in log.read_text()):
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
            process.send_signal(signal.SIGTERM)
            returncode = process.wait(timeout=GRACE_S + 40)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    output = log.read_text()
    assert returncode == 128 + signal.SIGTERM, output[-3000:]
    assert "did not end within" not in output, output[-3000:]  # the writer's deadline comes before the grace's
    client = trained_store.client
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id],
                              run_view_type=ViewType.ALL, max_results=100)
    assert not [r for r in runs if r.info.status == "RUNNING"], [(r.info.run_name, r.info.status) for r in runs]
    by_name = {r.info.run_name: r for r in runs}
    hung = by_name[FIRST]
    assert hung.info.status == "KILLED"
    line = f"interrupted before the writer finished: records and end of {FIRST}"
    assert hung.data.tags[FAULT_TAG] == line
    assert f"MLflow run {hung.info.run_id} ends KILLED, {line}" in output
    assert "adversarial_accuracy" in hung.data.metrics  # written before its artifacts' upload hung
    assert by_name[SECOND].info.status == "KILLED"


# -- the writer itself -------------------------------------------------------------------------------
def test_the_writer_runs_jobs_in_order_and_keeps_every_fault():
    writer, done = Writer(), []
    release = threading.Event()
    writer.submit("a", "first of a", lambda: (release.wait(5), done.append(1)))
    writer.submit("b", "only of b", lambda: done.append(2))
    writer.submit("a", "end of a", lambda: 1 / 0)
    writer.submit("d", "end of d", lambda: 1 / 0, ends_run=True)
    assert [job.label for job in writer.pending("a")] == ["first of a", "end of a"]
    release.set()
    assert writer.close()
    assert done == [1, 2]
    assert writer.failed == {"a": "end of a: ZeroDivisionError: division by zero"}  # said by a's end
    assert writer.faults == ["end of d: ZeroDivisionError: division by zero"]
    writer.submit("c", "after close", lambda: done.append(3))  # in the caller, at once
    assert done == [1, 2, 3]


def test_an_interrupted_close_waits_a_bounded_time_and_gives_up_what_is_left(monkeypatch):
    monkeypatch.setattr(writer_module, "AFTER_INTERRUPTION_S", 0.2)
    writer, hang = Writer(), threading.Event()
    writer.submit("a", "upload of a", lambda: hang.wait(30))
    writer.submit("b", "end of b", lambda: None)
    started = time.monotonic()
    assert not writer.close(interrupted=lambda: True)
    assert time.monotonic() - started < 5
    assert writer.abandon() == {"a": ["upload of a"], "b": ["end of b"]}
    hang.set()


def test_a_file_the_writer_could_not_write_ends_its_run_failed_saying_which(store):
    tracker = Tracker(store.uri, "writer_faults")
    run_id = tracker.start_child_run("test_cell", buffered=True)
    tracker.log_metrics(run_id, {"adversarial_accuracy": 0.5})

    def unwritable() -> None:
        raise OSError(28, "No space left on device", "/cache/samples.png")

    tracker.writer.submit(run_id, "samples.png of test_cell", unwritable)
    tracker.end_run(run_id, "FINISHED")
    assert run_id not in tracker.open_runs  # the writer ends it
    faults = tracker.drain()
    run = store.client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.metrics == {"adversarial_accuracy": 0.5}
    assert run.data.tags[FAULT_TAG] == "samples.png of test_cell: OSError: [Errno 28] No space left on device: " \
                                       "'/cache/samples.png'"
    assert faults == [f"records and end of test_cell: MLflow run {run_id} ends FAILED: {run.data.tags[FAULT_TAG]}"]
