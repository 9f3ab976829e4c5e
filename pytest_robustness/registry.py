"""A pytest session's registry of named attacks, defenses, architectures and datasets: the public extension API.

Filled once per session, at configure time, in this order: the built-ins (through
the same ``add_*`` calls a user makes), every ``pytest_robustness_register(registry)``
hook implementation (conftest.py files, plugins), then every entry point of the
``pytest_robustness`` group (installed packages). A name registered twice fails at
start-up naming both registrations. The registry lives on ``config.stash`` and is
in force (:mod:`registry_scope`) from configure until the session's cleanup, so
two in-process pytest runs never see each other's registrations.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from typing import Any, Callable, Mapping

import pytest

from . import registry_scope
from .attacks import ATTACKS, AttackSpec
from .attacks.base import Constraint, Deployer
from .attacks.define import Generate, define_attack
from .data.datasets import BUILTIN_DATASETS, DatasetSource
from .defenses.catalog import DEFENSES
from .defenses.defense import APPLY, Defense
from .errors import RobustnessUsageError
from .models.architectures import ARCHITECTURES, Architecture
from .models.recipes import register_recipe
from .params import Param, resolve

ENTRY_POINT_GROUP = "pytest_robustness"
REGISTRY_KEY = pytest.StashKey["Registry"]()
BUILTIN = "pytest-robustness (built-in)"
KINDS = ("attack", "defense", "architecture", "dataset", "recipe")
_HERE = os.path.dirname(os.path.abspath(__file__))

# train(session, model, architecture, training_params, *, params) -> metrics (or None)
Train = Callable[..., "Mapping[str, float] | None"]


def _caller() -> str:
    """file:line of the first frame outside this package's registry code: where a name was registered."""
    frame = sys._getframe(1)
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == _HERE \
            and os.path.basename(frame.f_code.co_filename) == "registry.py":
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else "?"


def _check_schema(owner: str, params: Mapping[str, Any] | None, where: str) -> dict[str, Param]:
    params = dict(params or {})
    bad = [name for name, p in params.items() if not isinstance(p, Param)]
    if bad:
        raise RobustnessUsageError(f"{owner} ({where}): parameter(s) {', '.join(bad)} are not Param schemas; "
                                   "build them with pytest_robustness.params numeric/choice/flag or Param")
    return params


class Registry:
    """What a session can name: ``add_attack``, ``add_defense``, ``add_architecture``, ``add_dataset``."""

    def __init__(self) -> None:
        self._tables: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        self._origins: dict[tuple[str, str], str] = {}
        self._context = ""  # e.g. the entry point being loaded

    # -- lookups ------------------------------------------------------------------------------
    def table(self, kind: str) -> dict[str, Any]:
        return self._tables[kind]

    @property
    def attacks(self) -> dict[str, AttackSpec]:
        return self._tables["attack"]

    @property
    def defenses(self) -> dict[str, Defense]:
        return self._tables["defense"]

    @property
    def architectures(self) -> dict[str, Architecture]:
        return self._tables["architecture"]

    @property
    def datasets(self) -> dict[str, DatasetSource]:
        return self._tables["dataset"]

    def origin(self, kind: str, name: str) -> str:
        return self._origins[(kind, name)]

    def _add(self, kind: str, name: str, entry: Any, where: str) -> Any:
        if not isinstance(name, str) or not name.isidentifier():
            raise RobustnessUsageError(f"{kind} {name!r} ({where}): a name must be an identifier, e.g. my_attack")
        if self._context == BUILTIN:
            where = BUILTIN
        elif self._context:
            where = f"{where} ({self._context})"
        if name in self._tables[kind]:
            raise RobustnessUsageError(f"{kind} {name!r} is registered twice: by {self._origins[(kind, name)]} "
                                       f"and by {where}")
        self._tables[kind][name] = entry
        self._origins[(kind, name)] = where
        return entry

    # -- registration ---------------------------------------------------------------------------
    def add_attack(self, name: "str | AttackSpec", params: Mapping[str, Param] | None = None,
                   generate: Generate | None = None, *, compiled: Generate | None = None,
                   deploy: Deployer | None = None, deploy_params: Mapping[str, Param] | None = None,
                   constraints: tuple[Constraint, ...] = (), generate_on: str = "eval", doc: str = "") -> AttackSpec:
        """Register an attack: ``generate(classifier, model, x, params)`` returns adversarial images
        (see :mod:`pytest_robustness.attacks.define`); ``params`` is its schema (taken from an
        ``art_attack`` when omitted). An :class:`AttackSpec` (``define_attack``) may be given instead."""
        where = _caller()
        if isinstance(name, AttackSpec):
            spec = name
        else:
            if params is None:
                params = getattr(generate, "params", None)
            schema = _check_schema(f"attack {name!r}", params, where)
            if generate is None or not callable(generate):
                raise RobustnessUsageError(f"attack {name!r} ({where}): generate must be a callable "
                                           "(classifier, model, x, params) -> adversarial images")
            if deploy is not None and not callable(deploy):
                raise RobustnessUsageError(f"attack {name!r} ({where}): deploy must be callable")
            spec = define_attack(name, schema, generate, compiled=compiled, deploy=deploy,
                                 deploy_params=_check_schema(f"attack {name!r}", deploy_params, where),
                                 constraints=tuple(constraints), generate_on=generate_on, doc=doc)
        spec.resolve({})  # the defaults themselves must be valid
        return self._add("attack", spec.name, spec, where)

    def add_defense(self, name: "str | Defense", params: Mapping[str, Param] | None = None, *,
                    preprocessor: Callable[[Mapping[str, Any]], Any] | None = None, train: Train | None = None,
                    compiled: Callable[[Mapping[str, Any]], Any] | None = None,
                    constraints: tuple = (), doc: str = "") -> Defense:
        """Register a defense: either ``preprocessor(params)`` returning an ART preprocessor (attached
        to the classifier; ``apply_fit``/``apply_predict`` are added to its schema), or a training
        defense ``train(session, model, architecture, training, *, params)`` that trains ``model``
        (compiled, fresh) and is registered as its own model, tagged with the defense's name.
        A preprocessor may give ``compiled(params)``: None, or a builder (no arguments) of its TensorFlow
        form ``x -> defended x``, which adaptive cells then attack with the compiled kernels (BPDA)."""
        where = _caller()
        if isinstance(name, Defense):
            defense = name
        else:
            if (preprocessor is None) == (train is None):
                raise RobustnessUsageError(f"defense {name!r} ({where}): give exactly one of preprocessor= or train=")
            if compiled is not None and preprocessor is None:
                raise RobustnessUsageError(f"defense {name!r} ({where}): compiled= is the TensorFlow form of a "
                                           "preprocessor; a training defense (train=) has none")
            schema = _check_schema(f"defense {name!r}", params, where)
            if preprocessor is not None:
                defense = Defense(name, {**schema, **{k: v for k, v in APPLY.items() if k not in schema}},
                                  preprocessor=preprocessor, compiled=compiled, constraints=tuple(constraints),
                                  doc=doc)
            else:
                defaults = {k: p.default for k, p in schema.items()}

                def trained(session, model, architecture, training, *, params, _train=train):
                    return dict(_train(session, model, architecture, training, params=params) or {})

                defense = Defense(name, schema, recipe=lambda resolved: register_recipe(name, trained, resolved, defaults),
                                  constraints=tuple(constraints), doc=doc)
        defense.resolve({})
        return self._add("defense", defense.name, defense, where)

    def add_architecture(self, name: "str | Architecture", build: Callable[..., Any] | None = None, *,
                         params: Mapping[str, Param] | None = None, slow: bool = False, doc: str = "",
                         training: Mapping[str, Any] | None = None, max_eval_samples: int | None = None) -> Architecture:
        """Register a model architecture: ``build(input_shape, n_classes, **params)`` returns a Keras model
        on the data's own images (pixels in [0, 1]) ending in softmax. ``training`` overrides the default
        ``--train`` values for it (explicit options win); ``slow`` marks its cells ``slow``."""
        where = _caller()
        if isinstance(name, Architecture):
            arch = name
        else:
            if build is None or not callable(build):
                raise RobustnessUsageError(f"architecture {name!r} ({where}): build must be a callable "
                                           "(input_shape, n_classes, **params) -> keras.Model")
            resolved = resolve(f"architecture {name}", _check_schema(f"architecture {name!r}", params, where), {})

            def head(x, n_classes, _weights_file, _build=build):
                return _build(tuple(x.shape[1:]), n_classes, **resolved)(x)

            arch = Architecture(name, head, slow=slow, doc=doc, training_overrides=tuple((training or {}).items()),
                                max_eval_samples=max_eval_samples)
        return self._add("architecture", arch.name, arch, where)

    def add_dataset(self, name: "str | DatasetSource", load: Callable[..., Any] | None = None, *,
                    params: Mapping[str, Param] | None = None, doc: str = "") -> DatasetSource:
        """Register a dataset for ``--dataset NAME``: ``load(seed, **params)`` returns a Dataset or a
        mapping with x_train, y_train, x_test, y_test (and optionally class_names)."""
        where = _caller()
        if isinstance(name, DatasetSource):
            source = name
        else:
            if load is None or not callable(load):
                raise RobustnessUsageError(f"dataset {name!r} ({where}): load must be a callable (seed, **params)")
            resolved = resolve(f"dataset {name}", _check_schema(f"dataset {name!r}", params, where), {})
            source = DatasetSource(name, load, resolved, doc)
        return self._add("dataset", source.name, source, where)


def register_builtins(registry: Registry) -> None:
    """The shipped attacks, defenses, architectures and datasets, through the public calls."""
    registry._context = BUILTIN
    for spec in ATTACKS.values():
        registry.add_attack(spec)
    for defense in DEFENSES.values():
        registry.add_defense(defense)
    for arch in ARCHITECTURES.values():
        registry.add_architecture(arch)
    for name, load in BUILTIN_DATASETS.items():
        registry.add_dataset(DatasetSource(name, lambda seed, _load=load: _load(seed), doc="built-in"))
    registry._context = ""


def load_entry_points(registry: Registry, pluginmanager: pytest.PytestPluginManager | None = None) -> None:
    """Each entry point of the ``pytest_robustness`` group names a ``register(registry)`` callable or a
    module with ``pytest_robustness_register``; one already registered as a pytest plugin is skipped
    (its hook has run)."""
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(entry, "dist", None)
        label = f"entry point {entry.name} = {entry.value}" + (f" of {dist.name} {dist.version}" if dist else "")
        try:
            target = entry.load()
        except Exception as exc:  # an installed package's import error: one line, naming it
            raise RobustnessUsageError(f"{label}: cannot be loaded ({type(exc).__name__}: {exc})") from None
        if pluginmanager is not None and pluginmanager.is_registered(target):
            continue
        register = target if callable(target) else getattr(target, "pytest_robustness_register", None)
        if register is None:
            raise RobustnessUsageError(f"{label}: expected a register(registry) callable or a module with "
                                       "pytest_robustness_register")
        registry._context = label
        try:
            register(registry)
        finally:
            registry._context = ""


def build_registry(config: pytest.Config) -> Registry:
    registry = Registry()
    register_builtins(registry)
    config.hook.pytest_robustness_register(registry=registry)
    load_entry_points(registry, config.pluginmanager)
    return registry


def activate_registry(config: pytest.Config) -> Registry:
    """Build this session's registry, put it on ``config.stash`` and in force until the session's
    cleanup; a marker for each registered architecture (``-m NAME``)."""
    registry = build_registry(config)
    config.stash[REGISTRY_KEY] = registry
    registry_scope.push(registry)
    config.add_cleanup(lambda: registry_scope.pop(registry))
    for name in registry.architectures:
        if name not in ARCHITECTURES:
            config.addinivalue_line("markers", f"{name}: cells on the registered {name} architecture")
    return registry


def registry_of(config: pytest.Config) -> Registry:
    return config.stash[REGISTRY_KEY]


__all__ = ["ENTRY_POINT_GROUP", "Registry", "activate_registry", "registry_of"]
