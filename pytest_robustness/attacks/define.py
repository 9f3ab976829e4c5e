"""Building an attack from a user's callable: the public form every attack, built-in or not, is written in.

An attack's callable is ``generate(classifier, model, x, params)``: the ART
classifier (with any defences attached, for the adaptive threat model), the Keras
model, the images to attack (read-only) and the resolved parameters. It returns
the adversarial images (an array), or an :class:`AttackOutput` (extra artefacts
and logged parameters). A callable that also takes a ``seed`` keyword gets the
session seed (numpy's and TensorFlow's global RNGs are already seeded with it).

An attack with a ``deploy`` step (the patch) returns an artefact instead, and
``deploy(artefact, x, params, seed)`` puts it onto the evaluation images
(a :class:`Deployed`), once per cell.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, Mapping

import numpy as np

from ..params import Param
from .base import AttackOutput, AttackSpec, AttackTarget, Constraint, Deployer, Generator, norm_value

Generate = Callable[..., Any]  # (classifier, model, x, params[, seed=]) -> np.ndarray | AttackOutput


def adapt(generate: Generate) -> Generator:
    """The harness's generator (target, x, params) for a public ``generate`` callable."""
    try:
        takes_seed = "seed" in inspect.signature(generate).parameters
    except (TypeError, ValueError):
        takes_seed = False

    def generator(target: AttackTarget, x: np.ndarray, params: Mapping[str, Any]) -> AttackOutput:
        extra = {"seed": target.seed} if takes_seed else {}
        out = generate(target.classifier, target.model, x, params, **extra)
        return out if isinstance(out, AttackOutput) else AttackOutput(np.asarray(out, dtype=np.float32))

    generator.__wrapped__ = generate
    return generator


def define_attack(name: str, params: Mapping[str, Param], generate: Generate, *, compiled: Generate | None = None,
                  deploy: Deployer | None = None, deploy_params: Mapping[str, Param] | None = None,
                  constraints: tuple[Constraint, ...] = (), generate_on: str = "eval", doc: str = "",
                  versions: Mapping[str, int] | None = None, per_image: bool = False) -> AttackSpec:
    """An :class:`AttackSpec` from public callables: ``generate`` is the ``art`` backend (the reference),
    ``compiled`` an optional faster kernel used by ``--attack-backend compiled``; ``versions`` (per
    backend, default 1) keys the cache: bump one when what that backend produces changes. ``per_image``: each
    image's example depends on that image alone (FGM, PGD; not a universal patch): streamable."""
    if not callable(generate):
        raise TypeError(f"attack {name!r}: generate must be callable, got {generate!r}")
    if generate_on not in ("eval", "train"):
        raise ValueError(f"attack {name!r}: generate_on must be 'eval' or 'train', got {generate_on!r}")
    backends = {"art": adapt(generate)}
    if compiled is not None:
        backends["compiled"] = adapt(compiled)
    return AttackSpec(name, dict(params), backends, doc=doc or getattr(generate, "doc", ""),
                      deploy_params=dict(deploy_params or {}), deploy=deploy, constraints=tuple(constraints),
                      generate_on=generate_on, versions=dict(versions or {}), per_image=per_image)


class art_attack:  # noqa: N801 (used like a function: art_attack(DeepFool, params={...}))
    """Any ART evasion attack class as an attack callable, in one line.

    ``art_attack(DeepFool, params={"max_iter": numeric(50, 1, integer=True)}, verbose=False)``: each
    parameter of the schema is passed to the class under its own name (``norm`` as ART's number),
    ``fixed`` keywords as given, and ``generate(x=images)`` makes the examples. The class may be named
    by its import path (``"art.attacks.evasion.DeepFool"``) so that ART is imported only when it runs.
    """

    def __init__(self, attack_class: type | str, params: Mapping[str, Param] | None = None, **fixed: Any):
        self.attack_class = attack_class
        self.params = dict(params or {})
        self.fixed = fixed
        self.doc = f"ART {self.class_name}"

    @property
    def class_name(self) -> str:
        cls = self.attack_class
        return cls.rsplit(".", 1)[-1] if isinstance(cls, str) else cls.__name__

    def resolve_class(self) -> type:
        if isinstance(self.attack_class, str):
            module, _, name = self.attack_class.rpartition(".")
            self.attack_class = getattr(importlib.import_module(module), name)
        return self.attack_class

    def __call__(self, classifier, model, x, params):
        kwargs = {k: (norm_value(v) if k == "norm" else v) for k, v in params.items()}
        return self.resolve_class()(classifier, **kwargs, **self.fixed).generate(x=x)

    def __repr__(self) -> str:
        return f"art_attack({self.class_name})"
