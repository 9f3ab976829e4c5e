"""What a cell's model label means, for every suite at once.

A cell's ``architecture`` (and a transfer cell's ``source_architecture``) is a *label*: an architecture
the harness builds and trains (``le_net``, a registered one), or any name the user gave a model of their
own (``--model-uri cnn=models:/mnist_cnn/latest``, ``--model-file`` with ``--architecture cnn``). Code
that parametrises, marks or skips cells asks here instead of assuming a label is a built-in architecture,
so a suite added later works with users' models without special cases of its own:

- ``label_marks``: the label's marker (``-m cnn``) and ``slow`` for a slow architecture of the harness;
- ``not_applicable``: the one-line reason a cell cannot run on its models (a training-time defense such
  as ``pgd`` trains a model of its own from the architecture, which a given model does not have), used
  to skip the cell at collection instead of failing it.
"""

from __future__ import annotations

from typing import Iterable

import pytest

from ..cells.grid import DefenseCase
from ..models.architectures import known_architectures
from ..options.settings import Settings

LABEL_ARGNAMES = ("source_architecture", "architecture")


def label_marks(*labels: str) -> list[pytest.MarkDecorator]:
    """One marker per distinct label, and ``slow`` when one of them is a slow architecture of the harness."""
    known = known_architectures()
    marks = [getattr(pytest.mark, name) for name in dict.fromkeys(labels)]
    if any(name in known and known[name].slow for name in labels):
        marks.append(pytest.mark.slow)
    return marks


def not_applicable(settings: Settings, params: dict) -> str | None:
    """Why a cell with these parametrised values cannot run on its models, in one line; None if it can."""
    labels = dict.fromkeys(params[name] for name in LABEL_ARGNAMES if isinstance(params.get(name), str))
    for case in (value for value in params.values() if isinstance(value, DefenseCase) and value.trains):
        for label in labels:
            reason = settings.model.not_trainable(label, case.name)
            if reason is not None:
                return reason
    return None


def skip_not_applicable(settings: Settings, items: Iterable[pytest.Item]) -> None:
    """Mark every cell that cannot run on its models skipped, with its reason (before any fixture runs)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        reason = not_applicable(settings, callspec.params) if callspec is not None else None
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))
