"""Release gating end to end on a real sqlite MLflow store: weak candidate, promotion, regression."""

from __future__ import annotations

import textwrap

import pytest

SUITE = """
import pytest
from pytest_robustness import attack_cases

@pytest.mark.fgm
@attack_cases("fgm", [dict(norm="inf", eps=0.1), dict(norm="2", eps=1.5)])
def test_fgm(robustness, architecture, params):
    result = robustness.attack("fgm", **params)
    robustness.check(result, clean_accuracy=0.3)
"""

# Absolute floors a briefly trained shallow_net meets; a model trained on a sliver of an epoch does not.
THRESHOLDS = """
[[thresholds]]
attack = "fgm"
clean_accuracy = 0.5
adversarial_accuracy = 0.1
"""


@pytest.fixture
def gate(pytester: pytest.Pytester):
    pytester.makepyfile(test_gate_suite=SUITE)
    (pytester.path / "thresholds.toml").write_text(textwrap.dedent(THRESHOLDS))
    store = f"sqlite:///{pytester.path / 'mlflow.db'}"
    common = ["-p", "no:cacheprovider", "--architecture", "shallow_net", "--samples", "200",
              "--train", "samples=1500", "--experiment", "gate", "--mlflow-uri", store,
              "--thresholds", "thresholds.toml"]

    def run(*args: str):
        return pytester.runpytest(*common, *args)

    from mlflow.tracking import MlflowClient

    return run, MlflowClient(store)


def test_weak_candidate_fails_good_one_is_promoted_worse_one_regresses(gate):
    run, client = gate

    weak = run("--train", "epochs=0.05", "--promote", "champion")
    assert weak.ret == pytest.ExitCode.TESTS_FAILED
    weak.stdout.fnmatch_lines([
        "*test_fgm?shallow_net-linf-eps0.1?: clean_accuracy * < 0.5000 (thresholds.toml entry 1)*",
        "*test_fgm?shallow_net-l2-eps1.5?: clean_accuracy * < 0.5000 (thresholds.toml entry 1)*",
        "nothing promoted to @champion: 2 test(s) failed",
    ])
    assert client.get_model_version("gate_shallow_net", "1").tags["robustness.verdict"] == "failed"

    good = run("--train", "epochs=3", "--promote", "champion")
    assert good.ret == pytest.ExitCode.OK
    good.stdout.fnmatch_lines(["promoted models:/gate_shallow_net/2 -> @champion"])
    champion = client.get_model_version_by_alias("gate_shallow_net", "champion")
    assert str(champion.version) == "2" and champion.tags["robustness.verdict"] == "passed"

    # One epoch still meets every absolute floor, but is clearly worse than the champion.
    floors_only = run("--train", "epochs=1")
    assert floors_only.ret == pytest.ExitCode.OK
    worse = run("--train", "epochs=1", "--baseline-uri", "models:/gate_shallow_net@champion",
                "--promote", "champion", "--robustness-cache", "off")
    assert worse.ret == pytest.ExitCode.TESTS_FAILED
    worse.stdout.fnmatch_lines([
        "*: *_accuracy * vs baseline models:/gate_shallow_net/2 *: worse by * > max_regression 0.02 "
        "[[]--max-regression[]], significant: exact McNemar p=* on 200 paired images * < 0.05 [[]--significance[]]*",
        "*fgm linf-eps0.1 * (-0.* FAIL*",
        "nothing promoted to @champion: *",
    ])
    assert "thresholds.toml entry" not in worse.stdout.str()  # only the regression fails
    assert str(client.get_model_version_by_alias("gate_shallow_net", "champion").version) == "2"

    # The baseline's numbers came from the runs that gated it, not from a recomputation.
    runs = client.search_runs([client.get_experiment_by_name("gate").experiment_id],
                              "tags.`robustness.baseline_uri` = 'models:/gate_shallow_net/2'")
    champion_runs = client.search_runs([client.get_experiment_by_name("gate").experiment_id],
                                       "tags.`robustness.cell_model` = 'models:/gate_shallow_net/2'")
    assert len(runs) == 2 and champion_runs
    by_cell = {r.data.tags["robustness.cell_key"]: r.data.metrics["adversarial_accuracy"] for r in champion_runs}
    for r in runs:
        assert r.data.metrics["baseline_adversarial_accuracy"] == by_cell[r.data.tags["robustness.cell_key"]]


def test_summary_table_and_session_artifacts(gate):
    run, client = gate
    result = run("--train", "epochs=1")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*robustness summary*", "shallow_net: adversarial accuracy*",
                                 "  attack * none*", "  fgm linf-eps0.1 *0.*", "  fgm l2-eps1.5 *0.*"])
    session = client.search_runs([client.get_experiment_by_name("gate").experiment_id],
                                 "tags.`robustness.kind` = 'session'")[0]
    names = {a.path for a in client.list_artifacts(session.info.run_id)}
    assert {"robustness_summary.csv", "robustness_summary.html"} <= names
