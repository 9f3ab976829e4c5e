"""Fast cells first: the robustness cells that train a model of their own (``slow``) run last.

A gate's first verdict should come in seconds, not after minutes of adversarial training,
so among the items that use the ``robustness`` fixture the ``slow`` ones move behind the
others (stable: the order within each group is pytest's). Every other item keeps its place,
so a project's own tests run in exactly the order they would without the plugin.
Called by ``RobustnessPlugin.pytest_collection_modifyitems`` (trylast: after -m/-k deselection).
"""

from __future__ import annotations

import pytest

CELL_FIXTURE = "robustness"


def is_slow_cell(item: pytest.Item) -> bool:
    return CELL_FIXTURE in getattr(item, "fixturenames", ()) and item.get_closest_marker("slow") is not None


def fast_cells_first(items: list[pytest.Item]) -> None:
    """Reorder ``items`` in place: in the slots our cells occupy, the fast cells, then the slow ones."""
    slots = [i for i, item in enumerate(items) if CELL_FIXTURE in getattr(item, "fixturenames", ())]
    cells = [items[i] for i in slots]
    ordered = [c for c in cells if not is_slow_cell(c)] + [c for c in cells if is_slow_cell(c)]
    for slot, item in zip(slots, ordered):
        items[slot] = item
