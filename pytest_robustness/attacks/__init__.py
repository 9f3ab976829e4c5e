"""The built-in attacks (one module each, written with the public ``define_attack``) and the lookup.

``get_attack`` reads the running session's registry (:mod:`pytest_robustness.registry`),
where the built-ins are registered through the same hook as a user's attacks;
outside a session it reads the built-ins.
"""

from __future__ import annotations

from .. import registry_scope
from .apgd import APGD
from .autoattack import AUTOATTACK
from .base import BACKENDS, AttackOutput, AttackSpec, AttackTarget, Deployed, unknown_attack
from .carlini import CARLINI_L2
from .deepfool import DEEPFOOL
from .define import art_attack, define_attack
from .fgm import FGM
from .patch import PATCH
from .pgd import PGD
from .square import SQUARE

# The shipped attacks, in the order the registry lists them.
ATTACKS: dict[str, AttackSpec] = {spec.name: spec for spec in (FGM, PATCH, PGD, CARLINI_L2, DEEPFOOL, SQUARE, APGD, AUTOATTACK)}


def get_attack(name: str) -> AttackSpec:
    attacks = registry_scope.table("attack", ATTACKS)
    try:
        return attacks[name]
    except KeyError:
        raise unknown_attack(name, attacks) from None


__all__ = ["ATTACKS", "BACKENDS", "AttackOutput", "AttackSpec", "AttackTarget", "Deployed", "art_attack",
           "define_attack", "get_attack"]
