"""``--model-file``: a Keras file (e.g. a pretrained ``keras.applications`` model) registered once, then tested.

Dioptra's ``init_model`` registers a pretrained model before it is attacked.
Here the file is loaded in Keras' safe mode, its weights digested, and registered
as ``{experiment}_{architecture}`` (``{experiment}_{tag}_{architecture}`` with
``--model-tag``) with ``mlflow.keras.log_model``; a version of that name whose
weights digest tag matches is reused instead, so the same weights are registered
once whatever the file is called.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from filelock import FileLock

from .loading import SIGNATURE_TAG, encode_signature, file_digest, load_keras_file, model_signature
from .registered import (
    PIP_REQUIREMENTS,
    WEIGHTS_TAG,
    RegisteredModel,
    find_version,
    registered_model_name,
    weights_digest,
)


class ModelFileContext(Protocol):
    """What registering a model file needs of the session: its options, its tracker, TensorFlow set up."""

    settings: Any  # options.settings.Settings
    tracker: Any  # tracking.runs.Tracker

    def tensorflow(self) -> None: ...

log = logging.getLogger("pytest_robustness")

FILE_TAG = "robustness.model_file_digest"


def register_model_file(session: ModelFileContext, architecture: str) -> RegisteredModel:
    """The registered version holding the file's weights: found by its weights digest, else logged now."""
    options, client = session.settings.model, session.tracker.client
    path = options.model_file
    name = registered_model_name(session.settings.experiment, architecture, options.model_tag)
    session.tensorflow()
    model, needs_code = load_keras_file(path, f"--model-file {path}", options.trust_code)
    digest = weights_digest(model)
    lock_dir = session.settings.cache_dir / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_dir / f"{name}-{digest}.lock")):
        existing = find_version(client, name, digest, WEIGHTS_TAG)
        if existing is not None:
            log.info("--model-file %s: weights already registered as models:/%s/%s", path, name, existing.version)
            return RegisteredModel(name, str(existing.version), model, weights_digest=digest,
                                   training_run_id=existing.run_id)
        version, run_id = _log(session, name, model, path)
        tags = {WEIGHTS_TAG: digest, FILE_TAG: file_digest(path), "architecture": architecture,
                "recipe": "model_file", SIGNATURE_TAG: encode_signature(model_signature(model, needs_code))}
        for key, value in tags.items():
            client.set_model_version_tag(name, str(version), key, value)
    return RegisteredModel(name, str(version), model, weights_digest=digest, trained_now=True, training_run_id=run_id)


def _log(session: ModelFileContext, name: str, model, path) -> tuple[str, str]:
    """Log ``model`` with mlflow.keras in a nested ``register`` run; (version, run id)."""
    import mlflow
    import mlflow.keras

    tracker = session.tracker
    run_id = tracker.start_child_run(f"register {name}", {"robustness.kind": "registration"})
    try:
        tracker.log_params(run_id, {"model_file": str(path), "model_file_digest": file_digest(path)})
        mlflow.set_tracking_uri(session.settings.mlflow_uri)
        with mlflow.start_run(run_id=run_id):
            info = mlflow.keras.log_model(model, name="model", registered_model_name=name,
                                          pip_requirements=PIP_REQUIREMENTS)
    except BaseException:
        tracker.end_run(run_id, "FAILED")
        raise
    tracker.end_run(run_id, "FINISHED")
    log.info("--model-file %s registered as models:/%s/%s", path, name, info.registered_model_version)
    return str(info.registered_model_version), run_id
