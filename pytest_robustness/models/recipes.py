"""The one table of training recipes: how a freshly built, compiled model becomes a trained one.

``""`` is plain training, the session's own. Every other recipe is registered by a training
defense while its parameters resolve (``pgd`` adversarial training, ``patch_training``, a
preprocessing defense with ``apply_fit``) and trains a model registered under its own name,
tagged with the recipe. The baseline is not a recipe: it is a model slot (``slot.BASELINE``).
The defenses (which register recipes) and the engine (which runs them) both import this table;
neither imports the other.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any, Callable, Mapping

from .. import registry_scope
from .training import TrainingParams, fit

PLAIN = ""

# (session, model, architecture, training parameters) -> metrics of the training run.
# The session is the engine's RobustnessSession: recipes use its dataset, settings and models.
Recipe = Callable[[Any, Any, str, TrainingParams], "Mapping[str, float] | None"]

# Recipes registered outside a pytest session (in a session: its registry's table).
RECIPES: dict[str, tuple[Recipe, dict[str, Any]]] = {}


def plain_training(session, model, architecture: str, params: TrainingParams) -> dict[str, float]:
    data = session.dataset
    return fit(model, data.x_train, data.y_train, params, data.n_classes, session.settings.seed,
               progress=lambda epoch, loss, seconds: session.progress(
                   f"training {architecture}: epoch {epoch}/{params.epochs:g}, loss {loss:.4f}, {seconds:.1f} s"))


def register_recipe(tag: str, train: Callable, resolved: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    """Register ``train`` with these parameters as a training recipe: named ``tag`` for the defaults,
    else ``tag-<digest of the parameters>``; the name tags the registered model it trains."""
    resolved = dict(resolved)
    name = tag
    if resolved != dict(defaults):
        name = f"{tag}-" + hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:8]
    registry_scope.table("recipe", RECIPES).setdefault(name, (functools.partial(train, params=resolved), resolved))
    return name


def get_recipe(name: str) -> tuple[Recipe, dict[str, Any]]:
    """The recipe ``name`` and its parameters: plain training, or one a defense registered."""
    if name == PLAIN:
        return plain_training, {}
    return registry_scope.table("recipe", RECIPES)[name]
