"""Where a cell's metrics go in the JUnit XML: testcase ``<properties>``, valid for the family declared.

Testcase properties are valid in xunit1 (and legacy), not in xunit2, pytest's
default. Unless the user chose a family, the report is written as xunit1; with
an explicit ``junit_family=xunit2`` they go into the suite's properties as
``<nodeid>::<name>`` instead, keeping the file valid for the family it declares.

Whether the family was chosen is read through public API: ``config.inipath``
(parsed here) and the ``-o``/``--override-ini`` options (which also carry
``addopts`` and ``PYTEST_ADDOPTS``); ``config.getini`` cannot tell an explicit
``xunit2`` from the default.
"""

from __future__ import annotations

import configparser
import tomllib
from pathlib import Path

import pytest

# The tables pytest reads its configuration from, per kind of file.
TOML_TABLES = {"pyproject.toml": (("tool", "pytest", "ini_options"), ("tool", "pytest"))}
TOML_DEFAULT_TABLES = (("pytest",), ("tool", "pytest", "ini_options"), ("tool", "pytest"))
INI_SECTIONS = ("pytest", "tool:pytest")


def ini_file_keys(path: Path) -> set[str]:
    """The configuration keys the ini file ``path`` sets (pytest.ini, tox.ini, setup.cfg, *.toml)."""
    try:
        if path.suffix == ".toml":
            with open(path, "rb") as handle:
                document = tomllib.load(handle)
            keys: set[str] = set()
            for table_path in TOML_TABLES.get(path.name, TOML_DEFAULT_TABLES):
                table = document
                for part in table_path:
                    table = table.get(part, {}) if isinstance(table, dict) else {}
                keys |= {k for k, v in table.items() if not isinstance(v, dict)} if isinstance(table, dict) else set()
            return keys
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.read(path, encoding="utf-8")
        return {k for section in INI_SECTIONS if parser.has_section(section) for k in parser.options(section)}
    except (OSError, tomllib.TOMLDecodeError, configparser.Error):
        return set()


def ini_key_is_set(config: pytest.Config, name: str) -> bool:
    """Whether ``name`` was given by the ini file or ``-o`` (not left to its default)."""
    for override in config.getoption("override_ini", None) or ():
        if override.partition("=")[0].strip() == name:
            return True
    return config.inipath is not None and name in ini_file_keys(Path(config.inipath))


def testcase_properties_or_suite(config: pytest.Config, xml) -> bool:
    """Choose the family for pytest's LogXML ``xml``; True when properties must go to the suite level."""
    if xml is None or xml.family != "xunit2":
        return False
    if not ini_key_is_set(config, "junit_family"):
        xml.family = "xunit1"
        return False
    return True


def move_to_suite_level(xml, report: pytest.TestReport) -> None:
    """xunit2: the test's properties become suite properties ``<nodeid>::<name>``, and leave the testcase."""
    if report.when == "teardown" and report.user_properties:
        for name, value in report.user_properties:
            xml.add_global_property(f"{report.nodeid}::{name}", value)
        report.user_properties = []


def keep_call_properties(xml, report: pytest.TestReport, suite_level: bool) -> None:
    """A test whose teardown report never came (a signal ended the session during its teardown): the
    properties its call report carries, where junitxml would have put the teardown report's."""
    for name, value in report.user_properties:
        if suite_level:
            xml.add_global_property(f"{report.nodeid}::{name}", value)
        else:
            xml.node_reporter(report).add_property(name, str(value))
