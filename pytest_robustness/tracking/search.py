"""MLflow searches done right: quoted literals in filter strings, and every page of the results.

MLflow's filter parser has no escape sequences: a literal is quoted with ``'``
or ``"``, whichever it does not contain (``it's`` needs ``"it's"``). And
``search_runs``/``search_model_versions`` return one page (``max_results`` at
most, and the store caps it): the rest is behind ``page_token``.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..errors import RobustnessUsageError

PAGE_SIZE = 1000  # results per request; every page is read


def literal(value: Any) -> str:
    """``value`` as a filter-string literal, in the quote character it does not contain."""
    text = str(value)
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    raise RobustnessUsageError(f"{text!r}: contains both ' and \"; MLflow's filter strings cannot match it "
                               "(rename the experiment, model or tag value)")


def key(name: str) -> str:
    """A tag, param or metric key in backticks (keys with dots, such as ``robustness.kind``)."""
    if "`" in name:
        raise RobustnessUsageError(f"{name!r}: MLflow's filter strings cannot name a key containing a backtick")
    return f"`{name}`"


def equals(entity: str, name: str, value: Any) -> str:
    """``tags.`name` = 'value'`` (``entity`` is ``tags``, ``params``, ``attributes`` ...)."""
    return f"{entity}.{key(name)} = {literal(value)}"


def all_of(*conditions: str) -> str:
    return " and ".join(conditions)


def search_runs(client, experiment_ids: Iterable[str], filter_string: str = "", *, page_size: int | None = None,
                **kwargs: Any) -> list:
    """Every run matching ``filter_string``, page after page."""
    runs, token = [], None
    while True:
        page = client.search_runs(list(experiment_ids), filter_string, max_results=page_size or PAGE_SIZE,
                                  page_token=token, **kwargs)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def search_model_versions(client, filter_string: str, *, page_size: int | None = None, **kwargs: Any) -> list:
    """Every model version matching ``filter_string``, page after page."""
    versions, token = [], None
    while True:
        page = client.search_model_versions(filter_string, max_results=page_size or PAGE_SIZE, page_token=token,
                                            **kwargs)
        versions.extend(page)
        token = page.token
        if not token:
            return versions


def versions_of(client, name: str, *, page_size: int | None = None) -> list:
    """Every version of the registered model ``name``."""
    return search_model_versions(client, f"name = {literal(name)}", page_size=page_size)
