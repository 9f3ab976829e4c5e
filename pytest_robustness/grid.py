"""Parametrisation helpers for suites: attack grids validated at collection, with readable ids."""

from __future__ import annotations

import itertools
from typing import Any, Iterable, Mapping

import pytest

from .attacks import get_attack
from .params import case_id


class AttackCase(dict):
    """Attack parameters of one cell; a dict that knows its attack and its test id."""

    def __init__(self, attack: str, values: Mapping[str, Any]):
        super().__init__(values)
        self.attack = attack

    @property
    def id(self) -> str:
        return case_id(get_attack(self.attack).params, self) or "defaults"


def attack_cases(attack: str, cases: Iterable[Mapping[str, Any]], argname: str = "params") -> pytest.MarkDecorator:
    """``parametrize`` over explicit cases; every value is range-checked now, at collection."""
    spec = get_attack(attack)
    checked = [AttackCase(attack, {k: v for k, v in spec.resolve(case).items() if k in case}) for case in cases]
    return pytest.mark.parametrize(argname, [pytest.param(c, id=c.id) for c in checked])


def attack_grid(attack: str, argname: str = "params", **axes: Iterable[Any]) -> pytest.MarkDecorator:
    """``parametrize`` over the cross product of ``axes`` (e.g. ``eps=[0.1, 0.3], norm=["inf", "2"]``)."""
    names = list(axes)
    return attack_cases(attack, [dict(zip(names, combo)) for combo in itertools.product(*axes.values())], argname)
