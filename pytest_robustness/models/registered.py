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

from ..errors import RobustnessUsageError
from ..tracking.search import versions_of
from ..tracking.server_health import health
from ..tracking.training_claims import training_claim
from .loading import SIGNATURE_TAG, decode_signature, encode_signature, load_registered_keras, model_signature
from .uris import MODEL_URI_PATTERN, parse_model_uri  # noqa: F401  (re-exported)

DIGEST_TAG = "robustness.training_digest"
# Weights and layer structure (its predecessor, robustness.weights_digest, hashed the weights only:
# a saturated-softmax or quantised copy of a model shared its cache entries).
WEIGHTS_TAG = "robustness.model_digest"
PIP_REQUIREMENTS = ["tensorflow-cpu>=2.21,<2.22", "keras>=3.10,<4"]  # what our registered models need


# Layer settings that change what a model computes without changing its weights.
STRUCTURE_KEYS = ("activation", "scale", "offset", "units", "filters", "kernel_size", "strides", "padding",
                  "pool_size", "rate", "axis", "height", "width", "interpolation", "data_format")


def _structure(model) -> list:
    """Each layer's class and computing settings, nested models flattened: two models with the same
    weights but another head (a softmax on logits x 100) or an extra layer (an input quantiser) differ."""
    found = []
    for layer in getattr(model, "layers", ()):
        config = layer.get_config() if hasattr(layer, "get_config") else {}
        found.append((type(layer).__name__, {k: config[k] for k in STRUCTURE_KEYS if k in config}))
        found.extend(_structure(layer))
    return found


def weights_digest(model) -> str:
    """Content address of a model: its weights and layer structure, whatever registry version number it got."""
    h = hashlib.sha256(json.dumps(_structure(model), sort_keys=True, default=str).encode())
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
        self.signature: dict[str, Any] | None = None  # input shape, outputs, softmax (model_loading), once known

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
    def output_kind(self) -> str:
        """``probabilities`` when the model ends in a softmax, else ``logits``: from its signature tag, else
        from the (loaded) model."""
        if self.signature is None:
            self.signature = model_signature(self.model, needs_code=False)
        return "probabilities" if self.signature.get("softmax") else "logits"

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


def record_tag(client, name: str, version: str, key: str, value: str) -> None:
    """Tag the version; best effort (a read-only registry keeps loading it)."""
    from mlflow.exceptions import MlflowException

    try:
        client.set_model_version_tag(name, str(version), key, value)
    except MlflowException:
        pass


def record_weights_digest(client, name: str, version: str, digest: str) -> None:
    record_tag(client, name, version, WEIGHTS_TAG, digest)


def load_registered(client, name: str, version: str, prepare: Callable[[], Any] = lambda: None,
                    tags: dict[str, str] | None = None, trust_code: bool = False) -> RegisteredModel:
    """The version, loaded lazily when its weights digest is tagged; else loaded now and tagged.

    Any Keras flavor loads, in Keras' safe mode unless ``trust_code``; the first load
    also records what start-up checks need (``SIGNATURE_TAG``). ``prepare`` runs
    before any load (the session's TensorFlow set-up)."""
    if tags is None:
        tags = dict(client.get_model_version(name, str(version)).tags)

    def load():
        prepare()
        with health(client.tracking_uri).guard(f"could not load models:/{name}/{version}"):
            model, needs_code = load_registered_keras(client.tracking_uri, name, str(version), trust_code)
        if SIGNATURE_TAG not in tags:
            record_tag(client, name, str(version), SIGNATURE_TAG, encode_signature(model_signature(model, needs_code)))
        return model

    found = RegisteredModel(name, str(version), loader=load, weights_digest=tags.get(WEIGHTS_TAG, ""))
    found.signature = decode_signature(tags.get(SIGNATURE_TAG))
    if not tags.get(WEIGHTS_TAG):
        record_weights_digest(client, name, str(version), found.weights_digest)  # loads the model
    return found


def find_version(client, name: str, digest: str, tag: str = DIGEST_TAG):
    """The newest READY version of ``name`` whose ``tag`` is ``digest`` (a training digest by default;
    ``WEIGHTS_TAG`` finds the version of given weights), or None."""
    from mlflow.exceptions import MlflowException

    try:
        versions = versions_of(client, name)
    except MlflowException:
        return None
    matching = [v for v in versions if v.tags.get(tag) == digest and v.status == "READY"]
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
    runs inside the lock, so parallel workers never train the same model twice, and
    inside a claim in the registry (``training_claims``), so machines sharing it never do.
    """
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_dir / f"{name}-{digest}.lock")), \
            training_claim(client, name, digest, lambda: find_version(client, name, digest)) as existing:
        if existing is not None:
            found = load_registered(client, name, str(existing.version), prepare, dict(existing.tags))
            found.training_run_id = existing.run_id
            return found
        model, version, run_id = train()
        trained = RegisteredModel(name, str(version), model, weights_digest=weights_digest(model), trained_now=True,
                                  training_run_id=run_id)
        trained.signature = model_signature(model, needs_code=False)
        for key, value in {**tags, WEIGHTS_TAG: trained.weights_digest, DIGEST_TAG: digest,
                           SIGNATURE_TAG: encode_signature(trained.signature)}.items():
            client.set_model_version_tag(name, str(version), key, str(value))
        return trained
