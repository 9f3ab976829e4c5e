"""pytest glue of property cells: Hypothesis settings for ``@given`` tests on the ``robustness`` fixture, and
the one log of an item's examples after its call.

Hypothesis reads a test's settings, seed and database key from the test function when it is
called, as its own pytest plugin sets them per item; so does this hook, for the tests that use the
``robustness`` fixture only (every other test is left as it is):

- the database: the cell's counterexamples on its registered model (``tracking.example_database``), keyed by
  the cell (file and test name), not by the function's source, so an edit keeps them;
- the seed: the session's ``--seed`` unless the test has its own ``@seed``: same seed, same search;
- no deadline and no health check on the function-scoped fixture or slow examples: every example
  predicts a batch of images, and the fixture is meant to be shared by the item's examples.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from ..cells.cell import Robustness

DATABASE_KEY = b"pytest-robustness"
SUPPRESSED = (HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.differing_executors)


def cell_name(item: pytest.Item) -> str:
    return f"{Path(str(item.fspath)).name}::{item.name}"


def configure_hypothesis(item: pytest.Item, cell: Robustness) -> None:
    test = getattr(item.obj, "__func__", item.obj)
    if not hasattr(test, "_robustness_user_settings"):  # what the suite chose, before any item of ours
        test._robustness_user_settings = getattr(test, "_hypothesis_internal_use_settings", None)
        test._robustness_user_seed = getattr(test, "_hypothesis_internal_use_seed", None)
    chosen = test._robustness_user_settings or hypothesis_settings.default
    test._hypothesis_internal_use_settings = hypothesis_settings(
        chosen, database=cell.properties.example_database(cell_name(item)), deadline=None,
        suppress_health_check=sorted({*chosen.suppress_health_check, *SUPPRESSED}, key=lambda h: h.value))
    test._hypothesis_internal_database_key = DATABASE_KEY
    test._hypothesis_internal_use_seed = test._robustness_user_seed if test._robustness_user_seed is not None \
        else cell.seed


@pytest.hookimpl(wrapper=True, tryfirst=True)  # around Hypothesis's own wrapper, which checks the health
def pytest_runtest_call(item: pytest.Item):
    cell = getattr(item, "funcargs", {}).get("robustness")
    if not isinstance(cell, Robustness):
        return (yield)
    if getattr(item.obj, "is_hypothesis_test", False):
        configure_hypothesis(item, cell)
    try:
        return (yield)
    finally:
        cell.properties.finish()
