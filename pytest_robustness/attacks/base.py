"""What an attack is to the harness: a schema of parameters and one generator per backend."""

from __future__ import annotations

import random
import sys
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


@dataclass
class Deployed:
    """An attack's output put onto the evaluation set (e.g. patches pasted onto images).

    ``x[i]`` derives from clean image ``source_index[i]``; ``modified[i]`` says
    whether it carries the attack or is a clean copy (augment keeps the originals,
    an application rate below 1 leaves some images clean).
    """

    x: np.ndarray
    source_index: np.ndarray
    modified: np.ndarray


Generator = Callable[[AttackTarget, np.ndarray, Mapping[str, Any]], AttackOutput]
# (what the generator produced, clean images, all resolved parameters, seed) -> the evaluated set
Deployer = Callable[[np.ndarray, np.ndarray, Mapping[str, Any], int], Deployed]
# Checks across parameters (e.g. scale_min < scale_max): a message naming them, or None.
Constraint = Callable[[Mapping[str, Any]], "str | None"]


@dataclass(frozen=True)
class AttackSpec:
    """An attack: generation parameters and backends; optionally a deployment step.

    Evasion attacks (FGM) generate the adversarial examples themselves. Attacks
    with a ``deploy`` step (the patch) generate an artefact once per model and
    generation parameters, which is then deployed per cell with
    ``deploy_params`` (cheap, seeded); only generation parameters key the
    memo and the disk cache.
    """

    name: str
    params: Mapping[str, Param]
    backends: Mapping[str, Generator]
    doc: str = ""
    deploy_params: Mapping[str, Param] = field(default_factory=dict)
    deploy: Deployer | None = None
    constraints: tuple[Constraint, ...] = ()
    # Which images the generator learns from: "eval" (the attacked images) or "train".
    generate_on: str = "eval"
    # Code version of each backend's generator (default 1): bump it when what the backend
    # produces changes (a kernel fix, a new ART workaround): it keys the cache.
    versions: Mapping[str, int] = field(default_factory=dict)
    # Each image's example depends on that image (and the seed) alone, so a data set larger than memory can
    # be attacked batch by batch (``--stream-batch``). Random starts are drawn per batch there: a streamed
    # PGD with random init draws other starts than the whole set would (deterministic attacks: the same).
    per_image: bool = False

    @property
    def schema(self) -> dict[str, Param]:
        """Every parameter a cell can set: generation, then deployment."""
        return {**self.params, **self.deploy_params}

    def resolve(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return resolve(f"attack {self.name}", self.schema, values, self.constraints)

    def generation_params(self, resolved: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters that determine what the generator produces (the memo/cache key)."""
        return {name: resolved[name] for name in self.params}

    def code_version(self, backend: str) -> str:
        """What produced the examples for ``backend``: the generator that runs and its version."""
        runs = backend if backend in self.backends else "art"
        return f"{self.name}/{runs}/{self.versions.get(runs, 1)}"

    def generator(self, backend: str) -> Generator:
        if backend not in self.backends:
            # An attack without a compiled kernel falls back to ART, the reference.
            return self.backends["art"]
        return self.backends[backend]


_pending_seed: int | None = None


def seed_everything(seed: int) -> None:
    """ART draws from numpy's global RNG and Keras from its own: seed both per attack.

    Without Keras loaded yet (a warm session that needed no model so far), Python's
    and numpy's RNGs are seeded now and TensorFlow's when it loads
    (``apply_pending_seed``): the same states as seeding everything now.
    """
    global _pending_seed
    seed = seed % (2**32)
    if "keras" in sys.modules:
        import keras

        keras.utils.set_random_seed(seed)  # python's random, numpy's, TensorFlow's, Keras's
        _pending_seed = None
    else:
        random.seed(seed)
        np.random.seed(seed)
        _pending_seed = seed


def apply_pending_seed() -> None:
    """Give TensorFlow and Keras the seed ``seed_everything`` set before they were loaded,
    leaving Python's and numpy's RNGs where they are now."""
    global _pending_seed
    if _pending_seed is None:
        return
    import keras

    python_state, numpy_state = random.getstate(), np.random.get_state()
    keras.utils.set_random_seed(_pending_seed)
    random.setstate(python_state)
    np.random.set_state(numpy_state)
    _pending_seed = None


def norm_value(norm: Any) -> float:
    """Dioptra passes norms as strings: 'inf', '1', '2'."""
    return {"inf": np.inf, "1": 1, "2": 2}[str(norm)]


def unknown_attack(name: str, known) -> RobustnessUsageError:
    return RobustnessUsageError(f"attack {name!r}: unknown; choose from {', '.join(known)}")
