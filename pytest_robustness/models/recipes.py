"""Registry of training recipes: how a freshly built, compiled model becomes a trained one.

``""`` is plain training; other recipes (e.g. ``pgd`` adversarial training,
registered by the ``pgd`` defense while its parameters resolve) become their own
registered model, tagged with the recipe name. The defenses (which register
recipes) and the session (which runs them) both import this registry; neither
imports the other.
"""

from __future__ import annotations

from typing import Any, Callable

from .training import TrainingParams, fit

# (session, model, architecture, training parameters) -> metrics of the training run.
# The session is the engine's RobustnessSession: recipes use its dataset, settings and models.
Recipe = Callable[[Any, Any, str, TrainingParams], dict[str, float]]


def plain_training(session, model, architecture: str, params: TrainingParams) -> dict[str, float]:
    data = session.dataset
    return fit(model, data.x_train, data.y_train, params, data.n_classes, session.settings.seed,
               progress=lambda epoch, loss, seconds: session.progress(
                   f"training {architecture}: epoch {epoch}/{params.epochs:g}, loss {loss:.4f}, {seconds:.1f} s"))


TRAINING_RECIPES: dict[str, tuple[Recipe, dict[str, Any]]] = {"": (plain_training, {})}


def register_recipe(name: str, recipe: Recipe, params: dict[str, Any]) -> str:
    """Register ``recipe`` under ``name`` (a second registration of a name keeps the first)."""
    TRAINING_RECIPES.setdefault(name, (recipe, params))
    return name
