"""Start-up checks of the models a session is given, against the data, before any attack or training.

For each ``--model-uri``/``--baseline-uri`` version: it is registered, its
flavor is one we load (one line naming the URI, its flavors and the supported
ones), and its input shape, number of outputs and final softmax (a version tag
recorded at first load; the model is loaded now, in safe mode, when the tag is
missing) fit the data and ``--model-output``. ``--model-file`` is loaded now,
in safe mode, and checked the same way, before any store is created.
"""

from __future__ import annotations

import os

from ..data.datasets import load_dataset, open_stream
from ..errors import RobustnessUsageError
from .devices import configure_gpus
from .loading import (
    SIGNATURE_TAG,
    check_signature,
    decode_signature,
    encode_signature,
    keras_file_of,
    load_keras_file,
    load_registered_keras,
    model_signature,
    read_flavors,
)
from .registered import WEIGHTS_TAG, record_tag, resolve_model_version, sqlite_file, weights_digest


def data_signature(spec: str, seed: int, image_size=None) -> tuple[tuple[int, ...], int]:
    """(image shape, number of classes) of ``--dataset``: the data the start-up check read is kept for the
    session, so this reads a folder or .npz at most once per process."""
    data = load_dataset(spec, seed, image_size)
    return data.input_shape, data.n_classes


def settings_signature(settings) -> tuple[tuple[int, ...], int]:
    """``data_signature`` of the session's data; a streamed folder's from its headers (no image decoded)."""
    if getattr(settings, "stream_batch", 0):
        info = open_stream(settings.dataset, settings.image_size, settings.samples, settings.stream_batch).info
        return info.input_shape, info.n_classes
    return data_signature(settings.dataset, settings.seed, getattr(settings, "image_size", None))


def check_models(settings) -> None:
    """Every given model fits the data and the options: one line each, before any work."""
    options = settings.model
    uris = [("--model-uri", uri) for _, uri in settings.model.model_uris]
    uris += [("--baseline-uri", uri) for _, uri in settings.model.baseline_uris]
    if not uris and options.model_file is None:
        return
    for option, uri in uris:
        db = sqlite_file(settings.mlflow_uri)
        if db is not None and not db.is_file():
            raise RobustnessUsageError(f"{option} {uri}: not found in the MLflow registry at {settings.mlflow_uri} "
                                       "(no such database file)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    versions = []
    if uris:  # the cheap checks first: registered, and of a flavor we load
        from mlflow.tracking import MlflowClient

        client = MlflowClient(settings.mlflow_uri)
        for option, uri in uris:
            name, version = resolve_model_version(client, uri, option)
            keras_file_of(uri, read_flavors(settings.mlflow_uri, name, version), option)
            versions.append((option, uri, name, version))
    shape, n_classes = settings_signature(settings)
    for option, uri, name, version in versions:
        signature = _registered_signature(client, settings, name, version, option)
        check_signature(f"{option} {uri}", signature, shape, n_classes, options.output, options.trust_code)
    if options.model_file is not None:
        _prepare_tensorflow(settings)
        origin = f"--model-file {options.model_file}"
        model, needs_code = load_keras_file(options.model_file, origin, options.trust_code)
        check_signature(origin, model_signature(model, needs_code), shape, n_classes, options.output,
                        options.trust_code)


def _registered_signature(client, settings, name: str, version: str, option: str) -> dict:
    """The version's recorded signature, or the model loaded now (safe mode) and its signature recorded."""
    tags = dict(client.get_model_version(name, version).tags)
    found = decode_signature(tags.get(SIGNATURE_TAG))
    if found is not None:
        return found
    _prepare_tensorflow(settings)
    model, needs_code = load_registered_keras(settings.mlflow_uri, name, version, settings.model.trust_code, option)
    signature = model_signature(model, needs_code)
    record_tag(client, name, version, SIGNATURE_TAG, encode_signature(signature))
    if not tags.get(WEIGHTS_TAG):
        record_tag(client, name, version, WEIGHTS_TAG, weights_digest(model))
    return signature


def _prepare_tensorflow(settings) -> None:
    """GPU memory growth must be set before TensorFlow first touches a GPU, which loading a model does."""
    configure_gpus(settings.gpu)
