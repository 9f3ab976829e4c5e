"""What an attack is to the harness: a schema of parameters and one generator per backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import RobustnessUsageError
from ..params import Param, resolve

BACKENDS = ("compiled", "art")


@dataclass
class AttackTarget:
    """What an attack runs against: the ART classifier (with any defences) and its Keras model."""

    classifier: Any
    model: Any
    seed: int
    n_classes: int


@dataclass
class AttackOutput:
    x_adv: np.ndarray
    artifacts: dict[str, Any] = field(default_factory=dict)  # e.g. the patch image
    extra_params: dict[str, Any] = field(default_factory=dict)  # e.g. the drawn patch target


Generator = Callable[[AttackTarget, np.ndarray, Mapping[str, Any]], AttackOutput]


@dataclass(frozen=True)
class AttackSpec:
    name: str
    params: Mapping[str, Param]
    backends: Mapping[str, Generator]
    doc: str = ""

    def resolve(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return resolve(f"attack {self.name}", self.params, values)

    def generator(self, backend: str) -> Generator:
        if backend not in self.backends:
            # An attack without a compiled kernel falls back to ART, the reference.
            return self.backends["art"]
        return self.backends[backend]


def seed_everything(seed: int) -> None:
    """ART draws from numpy's global RNG and Keras from its own: seed both per attack."""
    import keras

    np.random.seed(seed % (2**32))
    keras.utils.set_random_seed(seed % (2**32))


def norm_value(norm: Any) -> float:
    """Dioptra passes norms as strings: 'inf', '1', '2'."""
    return {"inf": np.inf, "1": 1, "2": 2}[str(norm)]


def unknown_attack(name: str, known) -> RobustnessUsageError:
    return RobustnessUsageError(f"attack {name!r}: unknown; choose from {', '.join(known)}")
