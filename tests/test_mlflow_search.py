"""MLflow searches on a real sqlite store: names and values with quotes match, every page is read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pytest_robustness.errors import RobustnessUsageError
from pytest_robustness.models.registered import resolve_model_version
from pytest_robustness.tracking.search import equals, literal, search_runs, versions_of

PACKAGE = Path(__file__).resolve().parent.parent / "pytest_robustness"
VALUES = ["plain", "it's", 'say "hi"', "back\\slash", "tick`tock"]


def test_values_with_quotes_match_exactly(store):
    client = store.client
    experiment = client.create_experiment("quotes")
    for value in VALUES:
        client.create_run(experiment, tags={"robustness.cell_model": value})
    for value in VALUES:
        found = search_runs(client, [experiment], equals("tags", "robustness.cell_model", value))
        assert [r.data.tags["robustness.cell_model"] for r in found] == [value]
    with pytest.raises(RobustnessUsageError, match="contains both"):
        literal("both ' and \"")


def test_a_registered_model_named_with_a_quote_resolves(store):
    client = store.client
    run = client.create_run(client.create_experiment("bob's"))
    name = "bob's_shallow_net"
    client.create_registered_model(name)
    for _ in range(2):
        client.create_model_version(name, "runs:/x/model", run_id=run.info.run_id)
    assert resolve_model_version(client, f"models:/{name}/2") == (name, "2")
    assert resolve_model_version(client, f"models:/{name}/latest") == (name, "2")


def test_every_page_is_read(store):
    client = store.client
    experiment = client.create_experiment("pages")
    for i in range(5):
        client.create_run(experiment, tags={"i": str(i)})
    assert len(client.search_runs([experiment], max_results=2)) == 2  # one page, as MLflow returns it
    assert sorted(r.data.tags["i"] for r in search_runs(client, [experiment], page_size=2)) == list("01234")
    run = client.create_run(experiment)
    client.create_registered_model("paged")
    for _ in range(3):
        client.create_model_version("paged", "runs:/x/model", run_id=run.info.run_id)
    assert len(client.search_model_versions("name = 'paged'", max_results=1)) == 1
    assert sorted(int(v.version) for v in versions_of(client, "paged", page_size=1)) == [1, 2, 3]


def test_searches_go_through_the_paging_helpers():
    """Outside ``tracking.search`` a direct search may only ask for one result (the latest baseline run)."""
    direct = []
    helpers = PACKAGE / "tracking" / "search.py"
    assert helpers.is_file()
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == helpers:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            # ``client.search_runs(...)``: an attribute call (the helpers are called by name)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("search_runs", "search_model_versions"):
                if not any(k.arg == "max_results" and getattr(k.value, "value", None) == 1 for k in node.keywords):
                    direct.append(f"{path.name}:{node.lineno}")
    assert direct == []
