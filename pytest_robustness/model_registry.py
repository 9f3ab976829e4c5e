"""Registered models: reuse a version trained with the same parameters and data, else train and register.

Identity of a trained model is a digest of everything that determines its
weights (architecture, training parameters, defense, dataset digest, seed),
stored as a tag on the model version. A second session finds the tag and loads
the version instead of retraining; a file lock makes concurrent xdist workers
train each model once.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock

from .errors import RobustnessUsageError

DIGEST_TAG = "robustness.training_digest"
MODEL_URI_PATTERN = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+|latest)|@(?P<alias>[\w-]+))$")


@dataclass
class RegisteredModel:
    """A Keras model and where it lives in the registry."""

    name: str
    version: str
    model: Any
    trained_now: bool = False
    training_run_id: str | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def registered_model_name(experiment: str, architecture: str, tag: str | None = None) -> str:
    """Dioptra's naming: ``{experiment}_{architecture}`` or ``{experiment}_{tag}_{architecture}``."""
    return f"{experiment}_{tag}_{architecture}" if tag else f"{experiment}_{architecture}"


def training_digest(**identity: Any) -> str:
    blob = json.dumps(identity, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def parse_model_uri(uri: str, option: str = "--model-uri") -> tuple[str, str | None, str | None]:
    match = MODEL_URI_PATTERN.match(uri)
    if not match:
        raise RobustnessUsageError(
            f"{option} {uri}: expected models:/NAME/VERSION, models:/NAME/latest or models:/NAME@ALIAS"
        )
    return match["name"], match["version"], match["alias"]


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
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
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


def load_registered(name: str, version: str) -> RegisteredModel:
    import mlflow

    from . import keras_layers  # noqa: F401  (registers our custom layers for deserialisation)

    model = mlflow.tensorflow.load_model(f"models:/{name}/{version}")
    return RegisteredModel(name=name, version=version, model=model)


def find_version(client, name: str, digest: str):
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}'")
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
) -> RegisteredModel:
    """Load the version tagged with ``digest`` or call ``train`` (which logs and registers).

    ``train`` returns (keras model, the ModelInfo.registered_model_version) and
    runs inside the lock, so parallel workers never train the same model twice.
    """
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_dir / f"{name}-{digest}.lock")):
        existing = find_version(client, name, digest)
        if existing is not None:
            found = load_registered(name, str(existing.version))
            found.training_run_id = existing.run_id
            return found
        model, version, run_id = train()
        for key, value in {**tags, DIGEST_TAG: digest}.items():
            client.set_model_version_tag(name, str(version), key, str(value))
        return RegisteredModel(name=name, version=str(version), model=model, trained_now=True, training_run_id=run_id)
