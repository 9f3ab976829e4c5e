"""Which tests are ours: the plugin parametrises, skips and filters warnings only for them.

A pytest plugin installed through ``pytest11`` runs in every project of its
environment; a project that does not use it must see exactly what it would see
without it. A test is a *robustness test* when

- it uses one of our fixtures (``robustness``, ``registered_model``, ``art_classifier``,
  ``robustness_dataset``, ``robustness_device``, ``robustness_settings``,
  ``robustness_session_state``), directly or through its own fixtures, or
- it carries the ``robustness`` marker (on the test, its class, or its module's ``pytestmark``).

``architecture`` alone does not make a test ours (projects have fixtures of that
name): it is parametrised only for robustness tests. Our markers stay registered
(registering changes nothing for a project that does not use them); ``gpu``
skips and our dependency-warning filters apply to robustness tests only.
"""

from __future__ import annotations

import builtins
import contextlib
import warnings
from typing import Iterable, Iterator

import pytest

SUITE_MARKER = "robustness"
OUR_FIXTURES = frozenset({"robustness", "registered_model", "art_classifier", "robustness_dataset",
                          "robustness_device", "robustness_settings", "robustness_session_state"})

# Noise from our dependencies, not from the user's code (pytest's filterwarnings syntax).
DEPENDENCY_WARNINGS = (
    "ignore:PyTorch not found:UserWarning",
    "ignore:The ``noload`` loader strategy is deprecated",
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning",
)


def is_robustness_test(fixturenames: Iterable[str], node: pytest.Item | pytest.Collector) -> bool:
    """The rule above, for a collected item or a test function being parametrised (its definition)."""
    return bool(OUR_FIXTURES.intersection(fixturenames)) or node.get_closest_marker(SUITE_MARKER) is not None


def mark_dependency_warnings(item: pytest.Item) -> None:
    """Our filters as the item's own ``filterwarnings`` marks: they apply to this test only."""
    for line in DEPENDENCY_WARNINGS:
        item.add_marker(pytest.mark.filterwarnings(line), append=False)  # the test's own marks still win


@contextlib.contextmanager
def dependency_warnings_ignored() -> Iterator[None]:
    """Our filters around our own session-level work (start-up checks, closing the session run)."""
    with warnings.catch_warnings():
        for line in DEPENDENCY_WARNINGS:
            action, message, category = (line.split(":") + ["", ""])[:3]
            warnings.filterwarnings(action, message=message, category=getattr(builtins, category or "Warning"))
        yield
