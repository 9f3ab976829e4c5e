"""The built-in defenses by name: Dioptra's preprocessing defenses, PGD and patch adversarial training.

In a pytest session the registry's table is in force (built-ins first, then users' defenses); this one
is the fallback outside a session.
"""

from __future__ import annotations

from .. import registry_scope
from ..errors import RobustnessUsageError
from .defense import THREAT_MODELS, Defense, check_threat_model
from .patch_training import PATCH_TRAINING
from .pgd_training import PGD
from .preprocessors import PREPROCESSING_DEFENSES

DEFENSES: dict[str, Defense] = {d.name: d for d in (*PREPROCESSING_DEFENSES, PGD, PATCH_TRAINING)}


def get_defense(name: str) -> Defense:
    defenses = registry_scope.table("defense", DEFENSES)
    try:
        return defenses[name]
    except KeyError:
        raise RobustnessUsageError(f"defense {name!r}: unknown; choose from {', '.join(defenses)}") from None



__all__ = ["DEFENSES", "THREAT_MODELS", "Defense", "check_threat_model", "get_defense"]
