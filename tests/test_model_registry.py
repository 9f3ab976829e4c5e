"""Registered models: trained once, registered as ``{experiment}_{architecture}``, reused by later sessions."""

from __future__ import annotations

import pytest

from helpers import FGM_SUITE, MODEL_NAME, run_robustness, session_run_id
from pytest_robustness.models.registered import DIGEST_TAG, parse_model_uri, registered_model_name

MODEL_SUITE = '''
def test_model(registered_model, architecture):
    assert architecture == "shallow_net"
    print("MODEL", registered_model.uri, registered_model.trained_now)
'''


def test_registered_model_names_follow_dioptra():
    assert registered_model_name("mnist", "le_net") == "mnist_le_net"
    assert registered_model_name("mnist", "le_net", "pgd") == "mnist_pgd_le_net"
    assert parse_model_uri("models:/mnist_le_net/3") == ("mnist_le_net", "3", None)
    assert parse_model_uri("models:/mnist_le_net@champion") == ("mnist_le_net", None, "champion")


def test_first_session_trains_and_registers(trained_store):
    (version,) = trained_store.versions()
    assert version.version == 1 and version.status == "READY"
    assert version.tags["architecture"] == "shallow_net" and version.tags["recipe"] == "standard"
    assert version.tags["seed"] == "0" and len(version.tags[DIGEST_TAG]) == 20
    (training,) = trained_store.training_runs()
    assert version.run_id == training.info.run_id
    assert training.info.status == "FINISHED"
    assert training.data.params["epochs"] == "1.0" and training.data.params["samples"] == "600"
    assert training.data.params["model_architecture"] == "shallow_net"
    assert 0.1 < training.data.metrics["test_accuracy"] <= 1.0


def test_second_session_reuses_the_registered_version(pytester, trained_store):
    pytester.makepyfile(test_suite=FGM_SUITE)
    trainings_before = len(trained_store.training_runs())
    result = run_robustness(pytester, store=trained_store)
    result.assert_outcomes(passed=2)

    assert [v.version for v in trained_store.versions()] == [1]
    assert len(trained_store.training_runs()) == trainings_before == 1
    tests = trained_store.children(session_run_id(result))
    assert len(tests) == 2
    assert {r.data.params["model_uri"] for r in tests} == {f"models:/{MODEL_NAME}/1"}
    result.stdout.fnmatch_lines(["reuse: models: 0 trained, 1 reused from the registry; *"])


def test_ini_training_settings_find_the_same_model(pytester, trained_store):
    """The same training parameters from [tool.pytest.ini_options] identify the same model."""
    pytester.makepyprojecttoml('''
        [tool.pytest.ini_options]
        robustness_architectures = "shallow_net"
        robustness_train = "epochs=1 samples=600"
        robustness_samples = "100"
        robustness_attack_backend = "art"
    ''')
    pytester.makepyfile(test_suite=FGM_SUITE)
    result = pytester.runpytest("--mlflow-uri", trained_store.uri, "-p", "no:cacheprovider",
                                "-W", "ignore::pytest.PytestAssertRewriteWarning")
    result.assert_outcomes(passed=2)
    assert [v.version for v in trained_store.versions()] == [1]
    tests = trained_store.children(session_run_id(result))
    assert {r.data.params["samples"] for r in tests} == {"100"}


def test_different_training_parameters_train_a_new_version(pytester, store):
    pytester.makepyfile(test_model=MODEL_SUITE)
    base = ("--architecture", "shallow_net", "-p", "no:cacheprovider", "-s", "--mlflow-uri", store.uri,
            "-W", "ignore::pytest.PytestAssertRewriteWarning", "--train", "samples=300")
    first = pytester.runpytest(*base, "--train", "epochs=1")
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines([f"*MODEL models:/{MODEL_NAME}/1 True*"])
    again = pytester.runpytest(*base, "--train", "epochs=1")
    again.stdout.fnmatch_lines([f"*MODEL models:/{MODEL_NAME}/1 False*"])
    other = pytester.runpytest(*base, "--train", "epochs=2")
    other.stdout.fnmatch_lines([f"*MODEL models:/{MODEL_NAME}/2 True*"])
    versions = store.versions()
    assert [v.version for v in versions] == [1, 2]
    assert versions[0].tags[DIGEST_TAG] != versions[1].tags[DIGEST_TAG]
    assert len(store.training_runs()) == 2
    # A different experiment is a different registered model.
    exp = pytester.runpytest(*base, "--train", "epochs=1", "--experiment", "other")
    exp.stdout.fnmatch_lines(["*MODEL models:/other_shallow_net/1 True*"])


@pytest.mark.parametrize("uri", [f"models:/{MODEL_NAME}/1", f"models:/{MODEL_NAME}@champion",
                                 f"models:/{MODEL_NAME}/latest"], ids=["version", "alias", "latest"])
def test_model_uri_loads_the_registered_model_instead_of_training(pytester, trained_store, uri):
    trained_store.client.set_registered_model_alias(MODEL_NAME, "champion", "1")
    trainings_before = len(trained_store.training_runs())
    pytester.makepyfile(test_suite=FGM_SUITE)
    # No --train and no --architecture: without --model-uri this would train a new (default) model.
    result = pytester.runpytest("--model-uri", uri, "--mlflow-uri", trained_store.uri, "--samples", "100",
                                "--attack-backend", "art", "-p", "no:cacheprovider",
                                "-W", "ignore::pytest.PytestAssertRewriteWarning")
    result.assert_outcomes(passed=2)
    assert [v.version for v in trained_store.versions()] == [1]
    assert len(trained_store.training_runs()) == trainings_before
    tests = trained_store.children(session_run_id(result))
    assert {r.data.params["model_uri"] for r in tests} == {f"models:/{MODEL_NAME}/1"}
    assert {r.data.tags["robustness.architecture"] for r in tests} == {"shallow_net"}



PGD_SUITE = '''
from pytest_robustness import attack_cases, defense_cases


@defense_cases([("pgd", dict(epochs=1, max_iter=2))], threat_models=["oblivious"])
@attack_cases("fgm", [dict(norm="inf", eps=0.3)])
def test_pgd_fgm(robustness, architecture, params, defense):
    result = robustness.attack("fgm", **params)
    robustness.defend(result, defense.name, defense.threat_model, **defense)
'''


def test_reuse_line_counts_the_models_a_defense_trains(pytester, store):
    """A PGD-trained variant is a registered model of its own: the reuse line counts it, trained or reused."""
    pytester.makepyfile(test_suite=PGD_SUITE)
    first = run_robustness(pytester, store=store)
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["reuse: models: 2 trained, 0 reused from the registry; *"])
    second = run_robustness(pytester, store=store)
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines(["reuse: models: 0 trained, 2 reused from the registry; *"])
