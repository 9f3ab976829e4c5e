"""Which registry is in force: the one of the pytest session that is running, else the built-ins.

A stack, not a global: an in-process pytest run (pytester) inside another pushes
its own session's registry at configure and pops it at unconfigure, so neither
sees the other's registrations. This module imports nothing, so the lookup
functions (``get_attack``, ``get_defense``, ...) can live beside the built-in
tables they fall back to.
"""

from __future__ import annotations

from typing import Any, Mapping

_ACTIVE: list[Any] = []


def push(registry: Any) -> None:
    _ACTIVE.append(registry)


def pop(registry: Any) -> None:
    if registry in _ACTIVE:
        _ACTIVE.remove(registry)


def active() -> Any | None:
    """The running session's registry, or None outside a session."""
    return _ACTIVE[-1] if _ACTIVE else None


def table(kind: str, builtins: Mapping[str, Any]) -> Mapping[str, Any]:
    """The named ``kind`` (``attack``, ``defense``, ``architecture``, ``dataset``) in force."""
    registry = active()
    return builtins if registry is None else registry.table(kind)
