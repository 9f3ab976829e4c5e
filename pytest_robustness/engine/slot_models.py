"""Which registered model fills a session's model slot (architecture, recipe): the user's own
(``--model-uri``, ``--model-file``), the ``--baseline-uri`` one, or one this harness trains and registers.

Training is found again by its digest (architecture, recipe, training parameters, data, seed) in the
registry, so one model is trained once per configuration whatever the number of processes.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from ..errors import NotApplicable
from ..models.architectures import get_architecture, recipe_image_size
from ..models.files import register_model_file
from ..models.loading import file_digest
from ..models.recipes import get_recipe
from ..models.registered import (
    PIP_REQUIREMENTS,
    RegisteredModel,
    find_or_train,
    load_registered,
    registered_model_name,
    resolve_model_version,
    training_digest,
)
from ..models.slot import BASELINE
from ..models.training import compile_model
from ..tracking.server_health import health


class SlotContext(Protocol):
    """What filling a model slot needs of the session (the engine's ``RobustnessSession`` is one); recipes
    receive it as their first argument and may use more of it (``attack_run``, ``deployment``)."""

    settings: Any  # options.settings.Settings
    tracker: Any  # tracking.runs.Tracker
    dataset: Any  # data.datasets.Dataset
    training_seconds: float

    def tensorflow(self) -> None: ...

log = logging.getLogger("pytest_robustness")

def load_or_train(session: SlotContext, architecture: str, recipe: str) -> RegisteredModel:
    """The registered model of slot (``architecture``, ``recipe``): the ``--baseline-uri`` or ``--model-uri``
    version, the ``--model-file`` registered, else one trained by the recipe (found again by its digest)."""
    client = session.tracker.client
    trust = session.settings.model.trust_code
    if recipe == BASELINE:
        name, version = resolve_model_version(client, session.settings.baseline_uri_for(architecture), "--baseline-uri")
        return load_registered(client, name, version, session.tensorflow, trust_code=trust)
    if session.settings.model_uri_for(architecture) and not recipe:
        name, version = resolve_model_version(client, session.settings.model_uri_for(architecture))
        return load_registered(client, name, version, session.tensorflow, trust_code=trust)
    if session.settings.model.model_file is not None and not recipe:
        return register_model_file(session, architecture)
    reason = session.settings.model.not_trainable(architecture, recipe)
    if reason is not None:  # a suite that asks for it without defense_cases (which skips at collection)
        raise NotApplicable(reason)
    recipe_fn, recipe_params = get_recipe(recipe)  # plain training, else a recipe a defense registered
    params = session.settings.training_for(architecture)
    data = session.dataset
    name = registered_model_name(session.settings.experiment, architecture, recipe or None)
    identity = dict(architecture=architecture, recipe=recipe, recipe_params=recipe_params,
                    training=params.as_dict(), dataset=data.digest, seed=session.settings.seed)
    base_weights = session.settings.model.base_weights_for(architecture)
    if base_weights is not None:  # a pretrained base (frozen): its file's content is part of the identity
        identity["base_weights"] = file_digest(base_weights)
    if recipe:  # a recipe's trainer (ART's or the compiled one) makes other weights
        identity["trainer"] = session.settings.attack_backend
    size = trained_image_size(session, architecture)
    if size != trained_image_size(session, architecture, on_gpu=True):  # resized for the CPU: another model
        identity["recipe_image_size"] = size
    digest = training_digest(**identity)

    def train():
        started = time.perf_counter()
        try:
            return train_and_register(session, name, architecture, recipe, recipe_fn, params)
        finally:
            session.training_seconds += time.perf_counter() - started

    return find_or_train(
        session.tracker.client, name=name, digest=digest, lock_dir=session.settings.cache_dir / "locks", train=train,
        tags={"architecture": architecture, "recipe": recipe or "standard", "dataset_digest": data.digest,
              "seed": str(session.settings.seed)},
        prepare=session.tensorflow,
    )


def trained_image_size(session: SlotContext, architecture: str, on_gpu: bool | None = None) -> str:
    """``HxW``, the size the recipe trains ``architecture`` at (``recipe_image_size``) on this session's device,
    or on a GPU (``on_gpu=True``): the data's own size, which keeps the identity models had before the rule."""
    gpu = bool(session.settings.gpu) if on_gpu is None else on_gpu
    height, width = recipe_image_size(get_architecture(architecture), session.dataset.input_shape, on_gpu=gpu)
    return f"{height}x{width}"


def train_and_register(session: SlotContext, name, architecture, recipe, recipe_fn, params):
    """Train ``architecture`` by ``recipe_fn`` in a child run and register it (``mlflow.tensorflow``)."""
    session.tensorflow()
    import keras
    import mlflow

    data = session.dataset
    run_id = session.tracker.start_child_run(f"train {name}", {"robustness.kind": "training"})
    started = time.perf_counter()
    log.info("training %s (%s recipe): %s on %d images", name, recipe or "standard", params, len(data.x_train))
    try:
        keras.utils.set_random_seed(session.settings.seed)
        base_weights = session.settings.model.base_weights_for(architecture)
        model = get_architecture(architecture).build(data.input_shape, data.n_classes,
                                                     str(base_weights) if base_weights else None,
                                                     on_gpu=bool(session.settings.gpu))
        compile_model(model, params)
        session.tracker.log_params(run_id, {**params.as_dict(), "model_architecture": architecture,
                                            "recipe_image_size": trained_image_size(session, architecture),
                                            "recipe_device": "gpu" if session.settings.gpu else "cpu",
                                            "recipe": recipe or "standard", **data.params,
                                            "dataset_digest": data.digest, "seed": session.settings.seed})
        metrics = recipe_fn(session, model, architecture, params)
        x_test, y_test = data.x_test, keras.utils.to_categorical(data.y_test, data.n_classes)
        loss, acc = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
        session.tracker.log_metrics(run_id, {**metrics, "test_loss": loss, "test_accuracy": acc})
        mlflow.set_tracking_uri(session.settings.mlflow_uri)
        with health(session.settings.mlflow_uri).guard(f"could not register {name}"), mlflow.start_run(run_id=run_id):
            info = mlflow.tensorflow.log_model(model, name="model", registered_model_name=name,
                                               pip_requirements=PIP_REQUIREMENTS)
    except BaseException as exc:  # Ctrl-C or a signal (see ``interruption``): KILLED, as the cell's run
        session.tracker.end_run(run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    session.tracker.end_run(run_id, "FINISHED")
    log.info("trained %s in %.1f s (test accuracy %.3f); registered as version %s",
             name, time.perf_counter() - started, acc, info.registered_model_version)
    return model, info.registered_model_version, run_id
