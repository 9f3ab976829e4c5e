"""Installed in an environment, the plugin changes nothing for a project that does not use it.

The project below has its own ``architecture`` fixture, a ``gpu``-marked test, a
test warning exactly what the plugin filters for its own tests, and a failing
test: with and without the plugin (``-p no:robustness``) it must give the same
outcomes, the same warnings summary, and leave no MLflow store or cache behind.
"""

from __future__ import annotations

import re

import pytest

FOREIGN_CONFTEST = '''
import pytest


@pytest.fixture(params=["cnn", "mlp"])
def architecture(request):
    return request.param
'''

FOREIGN_TESTS = '''
import warnings

import pytest


def test_own_architecture(architecture):
    assert architecture in ("cnn", "mlp")


@pytest.mark.gpu
def test_marked_gpu():
    pass


def test_warns_like_our_dependencies():
    warnings.warn("__array__ implementation doesn't accept a copy keyword, so passing copy=False failed",
                  DeprecationWarning)


def test_fails():
    assert 1 == 2
'''

OUR_SUITE = '''
import warnings

import pytest

pytestmark = pytest.mark.robustness


@pytest.mark.gpu
def test_ours_on_gpu():
    pass


def test_ours_warns():
    warnings.warn("__array__ implementation doesn't accept a copy keyword, so passing copy=False failed",
                  DeprecationWarning)
'''


def outcome_lines(result: pytest.RunResult) -> list[str]:
    """``-rA`` lines (outcome and test id), and the warnings summary, without timings."""
    text = result.stdout.str()
    summary = re.findall(r"^(PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS) (\S+)", text, re.M)
    warnings_section = text.partition("warnings summary")[2].partition("-- Docs")[0]
    return [*(f"{outcome} {test}" for outcome, test in summary), *warnings_section.strip().splitlines()]


def test_a_project_that_does_not_use_the_plugin_sees_what_it_would_without_it(pytester):
    pytester.makeini("[pytest]\nmarkers =\n    gpu: this project's own GPU tests\n")
    pytester.makeconftest(FOREIGN_CONFTEST)
    pytester.makepyfile(test_foreign=FOREIGN_TESTS)

    # Fresh interpreters, as a project's CI would run them (the plugin comes from its pytest11 entry point).
    without = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", "-p", "no:robustness")
    with_plugin = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA")

    assert without.parseoutcomes() == {"passed": 4, "failed": 1, "warnings": 1}
    assert with_plugin.parseoutcomes() == without.parseoutcomes()
    assert outcome_lines(with_plugin) == outcome_lines(without)
    assert "PASSED test_foreign.py::test_own_architecture[cnn]" in outcome_lines(with_plugin)
    assert "PASSED test_foreign.py::test_marked_gpu" in outcome_lines(with_plugin)
    assert "DeprecationWarning: __array__ implementation" in with_plugin.stdout.str()
    assert not (pytester.path / "mlflow.db").exists() and not (pytester.path / ".robustness_cache").exists()


def test_robustness_tests_get_the_skips_and_filters(pytester):
    """The same marks and warnings in a robustness suite: skipped without --gpu, our filter applies."""
    pytester.makepyfile(test_ours=OUR_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rA")
    assert result.parseoutcomes() == {"passed": 1, "skipped": 1}
    result.stdout.fnmatch_lines(["SKIPPED * needs --gpu"])


def test_architecture_is_ours_only_beside_our_fixtures(pytester):
    pytester.makeconftest(FOREIGN_CONFTEST)
    pytester.makepyfile(test_mixed='''
        def test_theirs(architecture):
            pass

        def test_ours(architecture, robustness_settings):
            pass
    ''')
    result = pytester.runpytest("--co", "-q", "-p", "no:cacheprovider", "--architecture", "le_net")
    collected = [line for line in result.outlines if "::" in line]
    assert collected == ["test_mixed.py::test_theirs[cnn]", "test_mixed.py::test_theirs[mlp]",
                         "test_mixed.py::test_ours[le_net]"]
