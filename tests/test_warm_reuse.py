"""A warm re-run: everything from the cache, no model and no TensorFlow, the very same records.

The runs are subprocesses (``runpytest_subprocess``): only a fresh interpreter can
tell whether TensorFlow was imported. They share the session's trained store.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from helpers import MODEL_NAME, TINY, run_robustness, session_run_id
from pytest_robustness.data.datasets import load_builtin_mnist
from pytest_robustness.models.registered import WEIGHTS_TAG

SUITE = '''
def test_fgm(robustness):
    result = robustness.attack("fgm", eps=0.2)
    robustness.check(result, clean_accuracy=0.1)


def test_jpeg_oblivious(robustness):
    result = robustness.attack("fgm", eps=0.2)
    defended = robustness.defend(result, "jpeg_compression", "oblivious")
    robustness.check(defended, clean_accuracy=0.1)


def test_noise_adaptive(robustness):
    result = robustness.attack("fgm", eps=0.1)
    defended = robustness.defend(result, "gaussian_augmentation", "adaptive")
    robustness.check(defended, clean_accuracy=0.1)


def test_patch(robustness):
    result = robustness.attack("patch", max_iter=2, patch_scale=0.4, patch_deployment_method="corrupt")
    robustness.check(result, clean_accuracy=0.1)
'''

# Written by the inner session when it ends: which heavy modules it imported.
MODULES_CONFTEST = '''
import json
import sys


def pytest_sessionfinish(session):
    with open("modules.json", "w") as handle:
        json.dump({name: name in sys.modules for name in ("tensorflow", "keras", "art")}, handle)
'''


def _run(pytester: pytest.Pytester, store, cache: Path, xml: Path, *args: str) -> pytest.RunResult:
    # One token per option: a path given as its own argument would move pytest's rootdir (and the node ids).
    return pytester.runpytest_subprocess(*TINY, f"--mlflow-uri={store.uri}", f"--robustness-cache-dir={cache}",
                                         f"--junitxml={xml}", *args)


def _cells(store, result: pytest.RunResult) -> dict:
    """nodeid -> (status, params, metrics, {artifact: bytes}) of the session's test runs."""
    cells = {}
    for run in store.children(session_run_id(result)):
        if run.data.tags.get("robustness.kind") != "test":
            continue
        root = Path(run.info.artifact_uri.removeprefix("file://"))
        artifacts = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
        cells[run.data.tags["robustness.nodeid"]] = (run.info.status, run.data.params, run.data.metrics, artifacts)
    return cells


def _junit_properties(xml: Path) -> dict:
    return {case.get("name"): [(p.get("name"), p.get("value")) for p in case.iter("property")]
            for case in ET.parse(xml).getroot().iter("testcase")}


def test_warm_run_needs_no_model_and_logs_the_same_records(pytester, trained_store, tmp_path):
    pytester.makepyfile(test_suite=SUITE)
    pytester.makeconftest(MODULES_CONFTEST)
    cache = tmp_path / "cache"

    cold = _run(pytester, trained_store, cache, tmp_path / "cold.xml")
    cold.assert_outcomes(passed=4)
    assert json.loads((pytester.path / "modules.json").read_text())["tensorflow"]
    assert len(trained_store.versions()[0].tags[WEIGHTS_TAG]) == 16  # keys the cache without loading the model

    warm = _run(pytester, trained_store, cache, tmp_path / "warm.xml")
    warm.assert_outcomes(passed=4)
    assert json.loads((pytester.path / "modules.json").read_text()) == {
        "tensorflow": False, "keras": False, "art": False}
    warm.stdout.fnmatch_lines(["reuse: models: 0 trained, 1 reused from the registry; "
                               "attack examples: 0 computed, 4 reused (3 from the cache, 1 shared in-session)"])

    cold_cells, warm_cells = _cells(trained_store, cold), _cells(trained_store, warm)
    assert len(cold_cells) == 4 and cold_cells.keys() == warm_cells.keys()
    for nodeid, (status, params, metrics, artifacts) in cold_cells.items():
        warm_status, warm_params, warm_metrics, warm_artifacts = warm_cells[nodeid]
        assert status == warm_status == "FINISHED", nodeid
        assert params == warm_params, nodeid
        assert metrics == warm_metrics, nodeid  # identical, not merely close
        assert artifacts.keys() == warm_artifacts.keys() and artifacts == warm_artifacts, nodeid
        assert {"adversarial_examples.npz", "distance_metrics.csv", "samples.png"} <= artifacts.keys(), nodeid
    assert "patch.png" in cold_cells["test_suite.py::test_patch[shallow_net]"][3]
    assert "defended_samples.png" in cold_cells["test_suite.py::test_noise_adaptive[shallow_net]"][3]
    assert _junit_properties(tmp_path / "cold.xml") == _junit_properties(tmp_path / "warm.xml")


def test_another_seed_misses_the_cache(pytester, trained_store, tmp_path):
    """Same model (--model-uri), same data (an .npz: the seed does not split it), another seed: recomputed."""
    data = load_builtin_mnist(0)
    npz = tmp_path / "digits.npz"
    np.savez(npz, x_train=data.x_train[:200], y_train=data.y_train[:200], x_test=data.x_test[:100],
             y_test=data.y_test[:100])
    pytester.makepyfile(test_suite=SUITE)
    args = (f"--robustness-cache-dir={tmp_path / 'cache'}", f"--dataset={npz}", "-k", "test_fgm",
            f"--model-uri=models:/{MODEL_NAME}/1")
    first = run_robustness(pytester, *args, store=trained_store)
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["reuse: models: 0 trained*; attack examples: 1 computed, 0 reused*"])
    again = run_robustness(pytester, *args, store=trained_store)
    again.stdout.fnmatch_lines(["reuse: models: 0 trained*; attack examples: 0 computed, 1 reused (1 from the cache*"])
    other = run_robustness(pytester, *args, "--robustness-seed=1", store=trained_store)
    other.assert_outcomes(passed=1)
    other.stdout.fnmatch_lines(["reuse: models: 0 trained*; attack examples: 1 computed, 0 reused*"])


def test_a_stale_weights_tag_is_refused(pytester, trained_store, tmp_path):
    """A tag that does not match the version's weights keys nothing: the load checks it and fails."""
    pytester.makepyfile(test_suite=SUITE)
    version = trained_store.versions()[0]
    good = version.tags[WEIGHTS_TAG]
    trained_store.client.set_model_version_tag(MODEL_NAME, version.version, WEIGHTS_TAG, "0" * 16)
    try:
        result = run_robustness(pytester, f"--robustness-cache-dir={tmp_path / 'cache'}", "-k", "test_fgm",
                                store=trained_store)
    finally:
        trained_store.client.set_model_version_tag(MODEL_NAME, version.version, WEIGHTS_TAG, good)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*models:/{MODEL_NAME}/1: its weights digest is {good}, but the version's "
                                 f"{WEIGHTS_TAG} tag says {'0' * 16}*"])
