"""Typed, range-checked parameters shared by the attack and defense registries.

A parameter knows its default, what values are allowed (as a sentence for the
error message) and how it reads in a test id, so every registry entry validates
the same way and bad values fail at collection naming the parameter and range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from .errors import RobustnessUsageError


@dataclass(frozen=True)
class Param:
    default: Any
    allowed: str
    valid: Callable[[Any], bool] = lambda value: True
    id: Callable[[Any], str] | None = None
    doc: str = ""

    def check(self, owner: str, name: str, value: Any) -> Any:
        try:
            ok = bool(self.valid(value))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise RobustnessUsageError(f"{owner}: {name}={value!r} is invalid; expected {self.allowed}")
        return value


def number_in(low: float | None = None, high: float | None = None, *, low_open=False, high_open=False) -> tuple[Callable[[Any], bool], str]:
    """A validator and its sentence for a number in an (optionally open) interval."""

    def valid(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        if low is not None and (v <= low if low_open else v < low):
            return False
        return not (high is not None and (v >= high if high_open else v > high))

    if low is not None and high is not None:
        text = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        text = f"a number {'>' if low_open else '>='} {low:g}"
    else:
        text = "a number"
    return valid, text


def numeric(default: Any, low=None, high=None, *, low_open=False, high_open=False, id_prefix: str | None = None,
            integer=False, doc="") -> Param:
    valid, text = number_in(low, high, low_open=low_open, high_open=high_open)
    if integer:
        base = valid
        valid = lambda v: isinstance(v, int) and base(v)  # noqa: E731
        text = text.replace("a number", "an integer")
    return Param(default, text, valid, (lambda v: f"{id_prefix}{v:g}") if id_prefix is not None else None, doc)


def choice(default: Any, options: tuple, *, id_format: Callable[[Any], str] | None = None, doc="") -> Param:
    return Param(default, f"one of {', '.join(map(str, options))}", lambda v: v in options, id_format, doc)


def flag(default: bool, *, on_id: str | None = None, off_id: str | None = None, doc="") -> Param:
    ident = (lambda v: on_id if v else off_id) if on_id or off_id else None
    return Param(default, "true or false", lambda v: isinstance(v, bool), ident, doc)


def resolve(owner: str, schema: Mapping[str, Param], values: Mapping[str, Any],
            constraints: Iterable[Callable[[Mapping[str, Any]], str | None]] = ()) -> dict[str, Any]:
    """Defaults filled in; unknown names, out-of-range values and violated constraints
    across parameters (e.g. scale_min < scale_max) rejected."""
    unknown = sorted(set(values) - set(schema))
    if unknown:
        raise RobustnessUsageError(f"{owner}: unknown parameter(s) {', '.join(unknown)}; allowed: {', '.join(schema)}")
    resolved = {name: param.check(owner, name, values.get(name, param.default)) for name, param in schema.items()}
    for constraint in constraints:
        problem = constraint(resolved)
        if problem:
            raise RobustnessUsageError(f"{owner}: {problem}")
    return resolved


def case_id(schema: Mapping[str, Param], values: Mapping[str, Any]) -> str:
    """Readable id from the parameters that have an id format, in schema order."""
    parts = [param.id(values[name]) for name, param in schema.items() if param.id is not None and name in values]
    return "-".join(p for p in parts if p)
