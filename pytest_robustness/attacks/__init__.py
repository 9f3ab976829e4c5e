"""Registry of named attacks. Adding an attack is one module and one line here."""

from __future__ import annotations

from .base import BACKENDS, AttackOutput, AttackSpec, AttackTarget, Deployed, unknown_attack
from .fgm import FGM
from .patch import PATCH

ATTACKS: dict[str, AttackSpec] = {spec.name: spec for spec in (FGM, PATCH)}


def get_attack(name: str) -> AttackSpec:
    try:
        return ATTACKS[name]
    except KeyError:
        raise unknown_attack(name, ATTACKS) from None


__all__ = ["ATTACKS", "BACKENDS", "AttackOutput", "AttackSpec", "AttackTarget", "Deployed", "get_attack"]
