"""Only public, stable API of pytest and MLflow: the explicit JUnit family, keyword calls to MLflow.

``config._inicfg`` is private (renamed across pytest releases) and
``validate_evaluation_results``'s positional order changed between MLflow 2 and 3:
the package must use neither way. Whether ``junit_family`` was chosen is read from
the ini file (``config.inipath``) and ``-o``, in every place pytest reads it from.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pytest_robustness"
SOURCES = {p.relative_to(PACKAGE).as_posix(): ast.parse(p.read_text()) for p in sorted(PACKAGE.rglob("*.py"))}


def test_no_private_pytest_config_attributes():
    private = [f"{name}:{node.lineno} {node.attr}" for name, tree in SOURCES.items() for node in ast.walk(tree)
               if isinstance(node, ast.Attribute) and node.attr in ("_inicfg", "_inipath", "_override_ini", "_parser")]
    private += [f"{name}:{node.lineno} getattr {node.args[1].value}" for name, tree in SOURCES.items()
                for node in ast.walk(tree)
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant) and str(node.args[1].value).startswith("_ini")]
    assert private == []


def test_mlflow_validation_is_called_by_keyword():
    calls = [(name, node) for name, tree in SOURCES.items() for node in ast.walk(tree)
             if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None))
             == "validate_evaluation_results"]
    assert calls, "thresholds are checked through mlflow.validate_evaluation_results"
    assert [f"{name}:{node.lineno}" for name, node in calls if node.args] == []
    assert all({k.arg for k in node.keywords} >= {"validation_thresholds", "candidate_result"} for _, node in calls)


PROBE = '''
import json
from pytest_robustness.reports.junit import ini_key_is_set


def pytest_configure(config):
    with open("explicit.json", "w") as handle:
        json.dump(ini_key_is_set(config, "junit_family"), handle)
'''

# The probe needs nothing but pytest: the other plugins only slow each inner run down.
BARE = ("-p", "no:cacheprovider", "-p", "no:robustness", "-p", "no:xdist", "-p", "no:hypothesispytest",
        "-p", "no:anyio")

CONFIGS = {
    "none": (None, ""),
    "pytest.ini": ("pytest.ini", "[pytest]\njunit_family = xunit2\n"),
    "tox.ini": ("tox.ini", "[pytest]\njunit_family = xunit2\n"),
    "setup.cfg": ("setup.cfg", "[tool:pytest]\njunit_family = xunit2\n"),
    "pyproject ini_options": ("pyproject.toml", '[tool.pytest.ini_options]\njunit_family = "xunit2"\n'),
    "pyproject other keys": ("pyproject.toml", '[tool.pytest.ini_options]\nxfail_strict = true\n'),
    "pytest.toml": ("pytest.toml", '[pytest]\njunit_family = "xunit2"\n'),
}


@pytest.mark.parametrize("case", CONFIGS)
def test_explicit_junit_family_is_found_where_pytest_reads_it(pytester, case):
    filename, text = CONFIGS[case]
    if filename:
        (pytester.path / filename).write_text(text)
    pytester.makeconftest(PROBE)
    pytester.makepyfile("def test_nothing():\n    pass\n")
    pytester.runpytest(*BARE)
    expected = case not in ("none", "pyproject other keys")
    assert json.loads((pytester.path / "explicit.json").read_text()) is expected


def test_explicit_junit_family_from_override_and_addopts(pytester, monkeypatch):
    pytester.makeconftest(PROBE)
    pytester.makepyfile("def test_nothing():\n    pass\n")
    pytester.runpytest(*BARE, "-o", "junit_family=xunit1")
    assert json.loads((pytester.path / "explicit.json").read_text()) is True
    monkeypatch.setenv("PYTEST_ADDOPTS", "-o junit_family=xunit2")
    pytester.runpytest(*BARE)
    assert json.loads((pytester.path / "explicit.json").read_text()) is True
    monkeypatch.delenv("PYTEST_ADDOPTS")
    pytester.runpytest(*BARE, "-o", "junit_suite_name=x")
    assert json.loads((pytester.path / "explicit.json").read_text()) is False


def test_old_import_paths_keep_working_or_say_where_they_went():
    """The README's ``pytest_robustness.classifiers`` is the new module; other pre-layout paths fail in one line."""
    import pytest_robustness.classifiers as old
    import pytest_robustness.models.classifiers as new

    assert old is new and old.make_classifier is new.make_classifier
    with pytest.raises(ModuleNotFoundError, match=r"^pytest_robustness\.session moved to "
                                                   r"pytest_robustness\.engine\.session: import it from there$"):
        import pytest_robustness.session  # noqa: F401
    with pytest.raises(ModuleNotFoundError, match="pytest_robustness.cells.masking"):
        from pytest_robustness.masking import GradientMaskingWarning  # noqa: F401
