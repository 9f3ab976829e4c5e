"""Parametrisation helpers for suites: attack grids validated at collection, with readable ids."""

from __future__ import annotations

import itertools
from typing import Any, Iterable, Mapping

import pytest

from ..attacks import get_attack
from ..defenses.catalog import THREAT_MODELS, check_threat_model, get_defense
from ..params import case_id


class AttackCase(dict):
    """Attack parameters of one cell; a dict that knows its attack and its test id."""

    def __init__(self, attack: str, values: Mapping[str, Any]):
        super().__init__(values)
        self.attack = attack

    @property
    def id(self) -> str:
        return case_id(get_attack(self.attack).schema, self) or "defaults"


def attack_cases(attack: str, cases: Iterable[Mapping[str, Any]], argname: str = "params") -> pytest.MarkDecorator:
    """``parametrize`` over explicit cases; every value is range-checked now, at collection."""
    spec = get_attack(attack)
    checked = [AttackCase(attack, {k: v for k, v in spec.resolve(case).items() if k in case}) for case in cases]
    return pytest.mark.parametrize(argname, [pytest.param(c, id=c.id) for c in checked])


def attack_grid(attack: str, argname: str = "params", **axes: Iterable[Any]) -> pytest.MarkDecorator:
    """``parametrize`` over the cross product of ``axes`` (e.g. ``eps=[0.1, 0.3], norm=["inf", "2"]``)."""
    names = list(axes)
    return attack_cases(attack, [dict(zip(names, combo)) for combo in itertools.product(*axes.values())], argname)


class DefenseCase(dict):
    """A defense's parameters in one cell, with its name and threat model."""

    def __init__(self, name: str, values: Mapping[str, Any], threat_model: str):
        super().__init__(values)
        self.name = name
        self.threat_model = threat_model

    @property
    def id(self) -> str:
        return "-".join(p for p in (self.name, case_id(get_defense(self.name).params, self), self.threat_model) if p)

    @property
    def trains(self) -> bool:
        """A training-time defense (``pgd``, a preprocessing defense with ``apply_fit``): its cells train a
        model of their own from the architecture."""
        spec = get_defense(self.name)
        return spec.recipe is not None or (spec.preprocessor is not None and bool(self.get("apply_fit")))


def defense_cases(defenses: Iterable[str | tuple[str, Mapping[str, Any]]], threat_models: Iterable[str] | None = None,
                  argname: str = "defense") -> pytest.MarkDecorator:
    """``parametrize`` over defenses x threat models, validated now; ids like ``jpeg_compression-adaptive``.

    Each cell is marked ``defense`` (and ``slow`` for training defenses such as ``pgd``).
    """
    params = []
    for entry in defenses:
        name, values = (entry, {}) if isinstance(entry, str) else entry
        spec = get_defense(name)
        given = {k: v for k, v in spec.resolve(values).items() if k in values}
        for threat_model in threat_models or THREAT_MODELS:
            case = DefenseCase(name, given, check_threat_model(threat_model))
            marks = [pytest.mark.defense] + ([pytest.mark.slow] if case.trains else [])
            params.append(pytest.param(case, id=case.id, marks=marks))
    return pytest.mark.parametrize(argname, params)
