"""Reports: JUnit properties (valid for the family the file declares) and the MLflow run tree."""

from __future__ import annotations

import signal
import xml.etree.ElementTree as ET

import pytest

from helpers import FAILING_SUITE, FGM_SUITE, MODEL_NAME, TINY, run_robustness, session_run_id
from pytest_robustness.data.adversarial_sets import read_examples
from pytest_robustness.tracking.orphans import CLOSED_TAG, OWNER_TAG, owner_tag

TERMINAL = {"FINISHED", "FAILED", "KILLED"}


def junit_cases(xml_path):
    root = ET.parse(xml_path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    return suite, {case.get("name"): case for case in suite.iter("testcase")}


def case_properties(case) -> dict[str, str]:
    return {p.get("name"): p.get("value") for p in case.iter("property")}


@pytest.fixture
def reported(pytester, trained_store):
    """One session: two passing FGM cells and one failing its floor, with a JUnit XML report."""
    pytester.makepyfile(test_suite=FGM_SUITE, test_floor=FAILING_SUITE)
    result = run_robustness(pytester, "--junitxml", "report.xml", store=trained_store)
    result.assert_outcomes(passed=2, failed=1)
    return result, pytester.path / "report.xml", trained_store


def test_junit_testcases_carry_metrics_and_parameters(reported):
    result, xml_path, _ = reported
    assert "warnings" not in result.parseoutcomes()
    suite, cases = junit_cases(xml_path)
    assert set(cases) == {"test_fgm[shallow_net-linf-eps0.1]", "test_fgm[shallow_net-l2-eps1.5-minimal]",
                          "test_fgm_floor[shallow_net]"}
    props = case_properties(cases["test_fgm[shallow_net-linf-eps0.1]"])
    assert props["attack"] == "fgm" and props["fgm.eps"] == "0.1" and props["fgm.norm"] == "inf"
    assert props["model_uri"] == f"models:/{MODEL_NAME}/1" and props["samples"] == "100"
    for metric in ("clean_accuracy", "adversarial_accuracy", "attack_success_rate", "l_inf_norm", "l_2_norm",
                   "cosine_similarity", "wasserstein_distance"):
        assert 0.0 <= float(props[metric]) <= 100.0, metric
    assert float(props["l_inf_norm"]) == pytest.approx(0.1, abs=1e-6)
    assert "adversarial_accuracy" in case_properties(cases["test_fgm_floor[shallow_net]"])
    assert suite.find("properties") is None  # nothing at suite level in the default (xunit1) report


def test_explicit_xunit2_keeps_properties_at_suite_level(pytester, trained_store):
    pytester.makepyfile(test_suite=FGM_SUITE)
    result = run_robustness(pytester, "--junitxml", "report.xml", "-o", "junit_family=xunit2", store=trained_store)
    result.assert_outcomes(passed=2)
    assert "warnings" not in result.parseoutcomes()
    suite, cases = junit_cases(pytester.path / "report.xml")
    # xunit2 allows <properties> only in <testsuite>: none inside test cases.
    assert all(case.find("properties") is None for case in cases.values())
    suite_props = {p.get("name"): p.get("value") for p in suite.find("properties").iter("property")}
    nodeid = "test_suite.py::test_fgm[shallow_net-linf-eps0.1]"
    assert suite_props[f"{nodeid}::attack"] == "fgm"
    assert float(suite_props[f"{nodeid}::l_inf_norm"]) == pytest.approx(0.1, abs=1e-6)
    assert f"{nodeid}::adversarial_accuracy" in suite_props
    assert set(suite.attrib) <= {"name", "errors", "failures", "skipped", "tests", "time", "timestamp", "hostname"}


def test_explicit_xunit2_still_gates_summarises_and_promotes(pytester, trained_store):
    """The gate reads each report's properties before they move to the suite level."""
    pytester.makepyfile(test_suite=FGM_SUITE)
    result = run_robustness(pytester, "--junitxml", "report.xml", "-o", "junit_family=xunit2",
                            "--promote", "xunit2_gate", store=trained_store)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*robustness summary*", "shallow_net: adversarial accuracy*",
                                 "  fgm linf-eps0.1 *0.*", f"promoted models:/{MODEL_NAME}/1 -> @xunit2_gate"])
    version = trained_store.client.get_model_version_by_alias(MODEL_NAME, "xunit2_gate")
    assert str(version.version) == "1" and version.tags["robustness.verdict"] == "passed"
    names = {a.path for a in trained_store.client.list_artifacts(session_run_id(result))}
    assert {"robustness_summary.csv", "robustness_summary.html", "report.xml"} <= names
    suite, cases = junit_cases(pytester.path / "report.xml")
    assert all(case.find("properties") is None for case in cases.values())


def test_mlflow_session_run_with_one_nested_run_per_test(reported, tmp_path):
    result, _, store = reported
    session_id = session_run_id(result)
    session = store.client.get_run(session_id)
    assert session.data.tags["robustness.kind"] == "session"
    assert session.info.status == "FAILED"  # one test failed
    assert session.data.params["architectures"] == "shallow_net" and session.data.params["train.epochs"] == "1.0"
    assert session.data.metrics["tests_passed"] == 2 and session.data.metrics["tests_failed"] == 1
    assert "report.xml" in [a.path for a in store.client.list_artifacts(session_id)]

    tests = {r.data.tags["robustness.nodeid"]: r for r in store.children(session_id)}
    assert set(tests) == {"test_suite.py::test_fgm[shallow_net-linf-eps0.1]",
                          "test_suite.py::test_fgm[shallow_net-l2-eps1.5-minimal]",
                          "test_floor.py::test_fgm_floor[shallow_net]"}
    for nodeid, run in tests.items():
        failed = "floor" in nodeid
        assert run.info.status == ("FAILED" if failed else "FINISHED")
        assert run.data.tags["robustness.outcome"] == ("failed" if failed else "passed")
        assert run.data.tags["mlflow.parentRunId"] == session_id
        assert run.data.params["model_uri"] == f"models:/{MODEL_NAME}/1"
        assert run.data.params["attack"] == "fgm" and run.data.params["architecture"] == "shallow_net"
        artifacts = {a.path for a in store.client.list_artifacts(run.info.run_id)}
        assert artifacts == {"adversarial_examples.npz", "distance_metrics.csv", "samples.png", "correctness.npz"}
    params = tests["test_suite.py::test_fgm[shallow_net-l2-eps1.5-minimal]"].data.params
    assert (params["fgm.norm"], params["fgm.eps"], params["fgm.eps_step"], params["fgm.minimal"],
            params["fgm.batch_size"]) == ("2", "1.5", "0.5", "true", "32")
    run = tests["test_suite.py::test_fgm[shallow_net-linf-eps0.1]"]
    examples = read_examples(store.download(run.info.run_id, "adversarial_examples.npz", tmp_path))
    assert examples["x_clean"].shape == examples["x_adv"].shape == (100, 28, 28, 1)
    assert examples["y_true"].shape == (100,)
    assert all(r.info.status in TERMINAL for r in store.runs())


INTERRUPTED_SUITE = '''
def test_first(robustness):
    robustness.attack("fgm", eps=0.1)

def test_interrupted(robustness):
    robustness.attack("fgm", eps=0.2)
    raise KeyboardInterrupt

def test_never_run(robustness):
    robustness.attack("fgm", eps=0.3)
'''


def test_keyboard_interrupt_leaves_runs_killed_not_running(pytester, trained_store):
    pytester.makepyfile(test_interrupt=INTERRUPTED_SUITE)
    result = run_robustness(pytester, store=trained_store, no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    session_id = session_run_id(result)
    assert trained_store.client.get_run(session_id).info.status == "KILLED"
    statuses = {r.data.tags["robustness.nodeid"].split("::")[1]: r.info.status
                for r in trained_store.children(session_id)}
    assert statuses == {"test_first[shallow_net]": "FINISHED", "test_interrupted[shallow_net]": "KILLED"}
    assert all(r.info.status in TERMINAL for r in trained_store.runs())


def test_session_without_robustness_tests_leaves_mlflow_untouched(pytester):
    pytester.makepyfile("def test_plain():\n    pass\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert not (pytester.path / "mlflow.db").exists()


CRASHING_SUITE = '''
import os
import signal


def test_crashes(robustness):
    robustness.attack("fgm", eps=0.1)
    os.kill(os.getpid(), signal.SIGKILL)  # what the OOM killer does: no hook runs
'''


def test_runs_a_killed_process_left_running_are_closed_by_the_next_session(pytester, store):
    pytester.makepyfile(test_crash=CRASHING_SUITE)
    crashed = pytester.runpytest_subprocess(*TINY, f"--mlflow-uri={store.uri}")
    assert crashed.ret == -signal.SIGKILL
    left_open = [r for r in store.runs() if r.info.status == "RUNNING"]
    assert sorted(r.data.tags["robustness.kind"] for r in left_open) == ["session", "test"]
    assert all(r.data.tags[OWNER_TAG] for r in left_open)
    # a run whose owner is alive (this process) must stay open
    client = store.client
    alive = client.create_run(left_open[0].info.experiment_id, tags=owner_tag()).info.run_id

    pytester.makepyfile(test_crash="def test_fine(robustness):\n    robustness.attack('fgm', eps=0.1)\n")
    run_robustness(pytester, store=store).assert_outcomes(passed=1)
    for run in left_open:
        after = client.get_run(run.info.run_id)
        assert after.info.status == "KILLED"
        assert "ended without closing it" in after.data.tags[CLOSED_TAG]
    assert client.get_run(alive).info.status == "RUNNING"
    client.set_terminated(alive)
    assert all(r.info.status in TERMINAL for r in store.runs())
