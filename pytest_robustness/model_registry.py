"""Registered models: reuse a version trained with the same parameters and data, else train and register.

Identity of a trained model is a digest of everything that determines its
weights (architecture, training parameters, defense, dataset digest, seed),
stored as a tag on the model version. A second session finds the tag and reuses
the version instead of retraining; a file lock makes concurrent xdist workers
train each model once.

Each version also carries the digest of its weights (a tag set when it is
registered, or the first time a version without it is loaded). Caches key on
that digest, so a session whose every result is cached never loads the Keras
model, nor imports TensorFlow: ``RegisteredModel.model`` loads it on first use,
and checks the weights against the tag.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
from filelock import FileLock

from .errors import RobustnessUsageError
from .mlflow_search import versions_of
from .model_uris import MODEL_URI_PATTERN, parse_model_uri  # noqa: F401  (re-exported)

DIGEST_TAG = "robustness.training_digest"
WEIGHTS_TAG = "robustness.weights_digest"


def weights_digest(model) -> str:
    """Content address of a model: its weights, whatever registry version number it got."""
    h = hashlib.sha256()
    for w in model.weights:
        h.update(np.ascontiguousarray(w.numpy()).tobytes())
    return h.hexdigest()[:16]


class RegisteredModel:
    """A registered model version and its weights digest; the Keras model is loaded on first use."""

    def __init__(self, name: str, version: str, model: Any = None, *, loader: Callable[[], Any] | None = None,
                 weights_digest: str = "", trained_now: bool = False, training_run_id: str | None = None):
        if model is None and loader is None:
            raise ValueError("RegisteredModel needs a model or a loader")
        self.name, self.version = name, str(version)
        self._model, self._loader = model, loader
        self._weights_digest = weights_digest
        self.trained_now = trained_now
        self.training_run_id = training_run_id

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def model(self):
        """The Keras model, loaded now if it was not; its weights must match the recorded digest."""
        if self._model is None:
            model = self._loader()
            digest = weights_digest(model)
            if self._weights_digest and digest != self._weights_digest:
                raise RuntimeError(f"{self.uri}: its weights digest is {digest}, but the version's "
                                   f"{WEIGHTS_TAG} tag says {self._weights_digest}: the tag is stale; "
                                   "delete it (it is set again on the next load)")
            self._model, self._weights_digest = model, digest
        return self._model

    @property
    def weights_digest(self) -> str:
        """What caches key on: from the version's tag, else computed from the (loaded) weights."""
        if not self._weights_digest:
            self._weights_digest = weights_digest(self.model)
        return self._weights_digest


def registered_model_name(experiment: str, architecture: str, tag: str | None = None) -> str:
    """Dioptra's naming: ``{experiment}_{architecture}`` or ``{experiment}_{tag}_{architecture}``."""
    return f"{experiment}_{tag}_{architecture}" if tag else f"{experiment}_{architecture}"


def training_digest(**identity: Any) -> str:
    blob = json.dumps(identity, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for other stores)."""
    prefix = "sqlite:///"
    return Path(tracking_uri[len(prefix):]) if tracking_uri.startswith(prefix) else None


def resolve_model_version(client, uri: str, option: str = "--model-uri") -> tuple[str, str]:
    """``models:/NAME@ALIAS`` or ``/VERSION`` -> (name, concrete version), with a one-line error."""
    from mlflow.exceptions import MlflowException

    name, version, alias = parse_model_uri(uri, option)

    def missing(reason: str) -> RobustnessUsageError:
        return RobustnessUsageError(f"{option} {uri}: not found in the MLflow registry at {client.tracking_uri}: {reason}")

    try:
        model = client.get_registered_model(name)
    except MlflowException:
        raise missing(f"no registered model named {name}") from None
    versions = sorted(int(v.version) for v in versions_of(client, name))
    if alias:
        try:
            return name, str(client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            raise missing(f"{name} has no alias @{alias} (aliases: {', '.join(sorted(model.aliases)) or 'none'})") from None
    if version == "latest" and versions:
        return name, str(versions[-1])
    if version != "latest" and int(version) in versions:
        return name, version
    raise missing(f"{name} has no version {version} (versions: {', '.join(map(str, versions)) or 'none'})")


def check_model_uri(uri: str, tracking_uri: str, option: str = "--model-uri") -> None:
    """Start-up check that ``uri`` names a registered version, without creating a sqlite store that is not there."""
    db = sqlite_file(tracking_uri)
    if db is not None and not db.is_file():
        raise RobustnessUsageError(f"{option} {uri}: not found in the MLflow registry at {tracking_uri} "
                                   "(no such database file)")
    from mlflow.tracking import MlflowClient

    resolve_model_version(MlflowClient(tracking_uri), uri, option)


def load_keras_model(name: str, version: str):
    import mlflow

    from . import keras_layers  # noqa: F401  (registers our custom layers for deserialisation)

    return mlflow.tensorflow.load_model(f"models:/{name}/{version}")


def record_weights_digest(client, name: str, version: str, digest: str) -> None:
    """Tag the version with its weights digest; best effort (a read-only registry keeps loading it)."""
    from mlflow.exceptions import MlflowException

    try:
        client.set_model_version_tag(name, str(version), WEIGHTS_TAG, digest)
    except MlflowException:
        pass


def load_registered(client, name: str, version: str, prepare: Callable[[], Any] = lambda: None,
                    tags: dict[str, str] | None = None) -> RegisteredModel:
    """The version, loaded lazily when its weights digest is tagged; else loaded now and tagged.

    ``prepare`` runs before any load (the session's TensorFlow set-up)."""
    if tags is None:
        tags = dict(client.get_model_version(name, str(version)).tags)

    def load():
        prepare()
        return load_keras_model(name, str(version))

    found = RegisteredModel(name, str(version), loader=load, weights_digest=tags.get(WEIGHTS_TAG, ""))
    if not tags.get(WEIGHTS_TAG):
        record_weights_digest(client, name, str(version), found.weights_digest)  # loads the model
    return found


def find_version(client, name: str, digest: str):
    from mlflow.exceptions import MlflowException

    try:
        versions = versions_of(client, name)
    except MlflowException:
        return None
    matching = [v for v in versions if v.tags.get(DIGEST_TAG) == digest and v.status == "READY"]
    return max(matching, key=lambda v: int(v.version), default=None)


def find_or_train(
    client,
    *,
    name: str,
    digest: str,
    lock_dir: Path,
    train: Callable[[], tuple[Any, str]],
    tags: dict[str, str],
    prepare: Callable[[], Any] = lambda: None,
) -> RegisteredModel:
    """The version tagged with ``digest`` (loaded lazily) or ``train`` (which logs and registers).

    ``train`` returns (keras model, the ModelInfo.registered_model_version, run id) and
    runs inside the lock, so parallel workers never train the same model twice.
    """
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_dir / f"{name}-{digest}.lock")):
        existing = find_version(client, name, digest)
        if existing is not None:
            found = load_registered(client, name, str(existing.version), prepare, dict(existing.tags))
            found.training_run_id = existing.run_id
            return found
        model, version, run_id = train()
        trained = RegisteredModel(name, str(version), model, weights_digest=weights_digest(model), trained_now=True,
                                  training_run_id=run_id)
        for key, value in {**tags, WEIGHTS_TAG: trained.weights_digest, DIGEST_TAG: digest}.items():
            client.set_model_version_tag(name, str(version), key, str(value))
        return trained
