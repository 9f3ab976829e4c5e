"""A suite under pytest-xdist against a real ``mlflow server``: one session, models trained once, nothing lost.

A module-scoped fixture starts ``mlflow server`` on 127.0.0.1 (sqlite backend
store, artifacts proxied by the server into a local folder). A tiny FGM suite
runs with two xdist workers against it by URI; then the same suite runs
serially, with the example cache off, and must give the same numbers per test.
"""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator

# Imported here, not in the tests: pytester drops modules first imported during a test, and
# numpy/scipy extension modules cannot be loaded twice in one process.
import mlflow.artifacts
import numpy as np
import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from mlflow_server import MlflowServer, mlflow_executable

from pytest_robustness.data.adversarial_sets import read_examples
from pytest_robustness.tracking.runs import Tracker

SUITE = """
import pytest

from pytest_robustness import attack_cases


@attack_cases("fgm", [dict(norm="inf", eps=0.1), dict(norm="inf", eps=0.3), dict(norm="2", eps=1.5)])
def test_fgm(robustness, params):
    result = robustness.attack("fgm", **params)
    robustness.check(result, clean_accuracy=0.15)  # one epoch on 600 images: above chance
"""
CASES = 3
EXPERIMENT = "mnist"
MODEL_NAME = "mnist_shallow_net"
SUITE_ARGS = ("--architecture", "shallow_net", "--train", "epochs=1", "--train", "samples=600", "--samples", "100",
              "-p", "no:randomly", "-p", "no:cacheprovider")
@pytest.fixture(scope="module")
def server_root(tmp_path_factory) -> Path:
    """The server's own folder: its sqlite store, its artifact store and its log."""
    return tmp_path_factory.mktemp("mlflow-server")


@pytest.fixture(scope="module")
def tracking_server(server_root: Path) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1; yields its URL and always stops it."""
    if mlflow_executable() is None:
        pytest.skip("the `mlflow` executable is not on PATH nor beside this Python")
    server = MlflowServer(server_root).start()
    try:
        yield server.url
    finally:
        server.stop()


def _snapshot(client: MlflowClient) -> dict:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL, max_results=1000)
    return {"runs": runs, "versions": client.search_model_versions(f"name = '{MODEL_NAME}'")}


def _session_run_id(result) -> str:
    line = next(l for l in result.outlines if l.startswith("MLflow session run "))
    return line.split()[3]


@pytest.fixture(scope="module")
def parallel(tracking_server):
    """The ``-n 2`` run, made once by whichever test needs it first (pytester is per test)."""
    return {}


def _run_parallel(pytester, url: str, memo: dict) -> dict:
    if not memo:
        pytester.makepyfile(test_suite=SUITE)
        xml = pytester.path / "parallel.xml"
        started = time.perf_counter()
        result = pytester.runpytest_subprocess("-n", "2", "--mlflow-uri", url, "--junitxml", str(xml), *SUITE_ARGS)
        memo.update(result=result, xml=xml, seconds=time.perf_counter() - started, path=pytester.path,
                    state=_snapshot(MlflowClient(url)))  # the store right after it, whatever runs next
    return memo


def test_xdist_suite_logs_everything_to_the_server(pytester, tracking_server, server_root, parallel):
    run = _run_parallel(pytester, tracking_server, parallel)
    result = run["result"]
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=CASES)
    client = MlflowClient(tracking_server)

    runs = run["state"]["runs"]
    sessions = [r for r in runs if r.data.tags.get("robustness.kind") == "session"]
    assert len(sessions) == 1 and sessions[0].info.run_id == _session_run_id(result)
    session = sessions[0]
    assert session.info.status == "FINISHED"
    assert session.data.metrics["tests_passed"] == CASES
    others = [r for r in runs if r is not session]
    assert others and all(r.data.tags.get("mlflow.parentRunId") == session.info.run_id for r in others)

    # Trained and registered once, although both workers ran tests and needed the model.
    assert {r.data.tags["robustness.worker"] for r in others if r.data.tags.get("robustness.kind") == "test"} \
        == {"gw0", "gw1"}
    training = [r for r in others if r.data.tags.get("robustness.kind") == "training"]
    assert len(training) == 1 and training[0].info.status == "FINISHED"
    assert [v.version for v in run["state"]["versions"]] == ["1"]
    assert run["state"]["versions"][0].run_id == training[0].info.run_id

    tests = [r for r in others if r.data.tags.get("robustness.kind") == "test"]
    assert len(tests) == CASES == len(others) - 1
    assert len({r.data.tags["mlflow.runName"] for r in tests}) == CASES
    for test_run in tests:
        assert test_run.info.status == "FINISHED"
        assert 0.0 <= test_run.data.metrics["adversarial_accuracy"] <= 1.0
        assert test_run.data.params["model_uri"] == f"models:/{MODEL_NAME}/1"
        names = {a.path for a in client.list_artifacts(test_run.info.run_id)}
        assert {"adversarial_examples.npz", "distance_metrics.csv", "samples.png"} <= names, names
    # Artifacts went through the server (proxied) into its own store, and come back intact.
    assert client.get_experiment_by_name(EXPERIMENT).artifact_location.startswith("mlflow-artifacts:")
    stored = {p.parent.parent.name for p in (server_root / "artifacts").rglob("adversarial_examples.npz")}
    assert {r.info.run_id for r in tests} <= stored
    npz = client.download_artifacts(tests[0].info.run_id, "adversarial_examples.npz", str(pytester.path))
    arrays = read_examples(npz)
    assert {"x_clean", "x_adv", "y_true"} <= set(arrays)
    assert arrays["x_adv"].shape == arrays["x_clean"].shape == (100, 28, 28, 1) and arrays["y_true"].shape == (100,)
    assert np.abs(arrays["x_adv"] - arrays["x_clean"]).max() > 0
    # So did the registered model (a worker that did not train it loaded it from there).
    model_dir = mlflow.artifacts.download_artifacts(client.get_model_version_download_uri(MODEL_NAME, "1"),
                                                    dst_path=str(pytester.path / "model"), tracking_uri=tracking_server)
    mlmodel = next(Path(model_dir).rglob("MLmodel"))
    assert "tensorflow" in mlmodel.read_text()

    # The JUnit XML: on the session run, and with every test case and its properties.
    assert run["xml"].name in {a.path for a in client.list_artifacts(session.info.run_id)}
    cases = ET.parse(run["xml"]).getroot().findall(".//testcase")
    assert len(cases) == CASES
    by_run_name = {r.data.tags["mlflow.runName"]: r for r in tests}
    for case in cases:
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        test_run = by_run_name[case.get("name")]
        assert properties["model_uri"] == test_run.data.params["model_uri"]
        for metric in ("clean_accuracy", "adversarial_accuracy", "attack_success_rate"):
            assert float(properties[metric]) == pytest.approx(test_run.data.metrics[metric], abs=1e-6)


def test_serial_run_gives_the_same_numbers_as_xdist(pytester, tracking_server, parallel, monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # this test may itself run on an xdist worker
    first = _run_parallel(pytester, tracking_server, parallel)
    assert first["result"].ret == 0, first["result"].stdout.str()
    if pytester.path != first["path"]:
        pytester.makepyfile(test_suite=SUITE)
    serial = pytester.runpytest_subprocess("-p", "no:xdist", "--robustness-cache", "off", "--mlflow-uri",
                                           tracking_server, *SUITE_ARGS)
    assert serial.ret == 0, serial.stdout.str()
    serial.assert_outcomes(passed=CASES)

    client = MlflowClient(tracking_server)
    experiment = client.get_experiment_by_name(EXPERIMENT)

    def tests_of(session_run_id: str) -> dict:
        runs = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{session_run_id}' "
                                  "and tags.`robustness.kind` = 'test'")
        return {r.data.tags["mlflow.runName"]: r for r in runs}

    parallel_runs, serial_runs = tests_of(_session_run_id(first["result"])), tests_of(_session_run_id(serial))
    assert len(parallel_runs) == CASES and parallel_runs.keys() == serial_runs.keys()
    for name, run in serial_runs.items():
        assert run.data.tags["robustness.examples"] == "computed", name  # recomputed, not read from a cache
        assert run.data.tags["robustness.worker"] == "main"
        for metric in ("clean_accuracy", "adversarial_accuracy"):
            assert run.data.metrics[metric] == parallel_runs[name].data.metrics[metric], (name, metric)
    # The serial session reused the registered model: still one version.
    assert [v.version for v in client.search_model_versions(f"name = '{MODEL_NAME}'")] == ["1"]


def test_jobs_racing_to_create_the_experiment_share_it(tracking_server):
    """CI jobs starting together on a fresh server all look the experiment up, miss it and create it."""
    jobs = 8
    start, ids, errors = threading.Barrier(jobs), [], []

    def job():
        tracker = Tracker(tracking_server, "race")
        start.wait()
        try:
            ids.append(tracker.ensure_experiment())
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")

    threads = [threading.Thread(target=job) for _ in range(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert len(ids) == jobs and set(ids) == {MlflowClient(tracking_server).get_experiment_by_name("race").experiment_id}



def test_two_workers_share_a_new_sqlite_store(pytester: pytest.Pytester, tmp_path: Path):
    """Two xdist workers opening a brand-new sqlite store at once used to race in MLflow's migration
    (alembic's ``_alembic_tmp_*`` tables) and leave the database broken."""
    pytester.makepyfile(test_fgm_suite=SUITE)
    db = tmp_path / "fresh" / "mlflow.db"
    db.parent.mkdir()
    result = pytester.runpytest_subprocess("-n", "2", "--mlflow-uri", f"sqlite:///{db}", *SUITE_ARGS)
    result.assert_outcomes(passed=CASES)
    versions = MlflowClient(f"sqlite:///{db}").search_model_versions(f"name = '{MODEL_NAME}'")
    assert len(versions) == 1
