"""Loading users' models: any Keras flavor of a registered version, or a model file, in Keras' safe mode.

A registered version is read from its MLmodel flavors: ``keras`` (Keras 3, a
``.keras`` file) and ``tensorflow`` with a Keras model (``save_format`` ``tf``,
a ``.keras`` file since TensorFlow 2.16, or ``h5``). Only the Keras file is
downloaded and loaded, with ``keras.saving.load_model(safe_mode=True)``: the
flavors' pickled custom objects (``cloudpickle``) and any pyfunc code are never
loaded, and a ``Lambda`` layer with Python code is refused unless the user
trusts the model (``--trust-model-code``). Any other flavor fails at start-up.

What start-up checks need (input shape, number of outputs, a final softmax,
whether it needs code) is recorded as a version tag the first time the version
is loaded, so a later session checks it without loading the model.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from ..errors import RobustnessUsageError

SUPPORTED_FLAVORS = ("keras", "tensorflow")
SIGNATURE_TAG = "robustness.model_signature"
MODEL_OUTPUTS = ("auto", "logits", "probabilities")
MODEL_FILE_SUFFIXES = (".keras", ".h5")
UNLOCATABLE_FUNCTION = re.compile(r"Could not locate function '([^']+)'")
TRUST_HINT = ("if you trust this model's code, allow it with --trust-model-code "
              "(ini: robustness_trust_model_code = true)")


def parse_input_range(option: str, raw: Any) -> tuple[float, float]:
    """``LOW,HIGH``: two finite numbers with LOW < HIGH."""
    try:
        low, high = (float(v) for v in str(raw).split(","))
    except ValueError:
        raise RobustnessUsageError(f"{option} {raw!r}: expected LOW,HIGH (two numbers, e.g. 0,255)") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise RobustnessUsageError(f"{option} {raw!r}: expected LOW,HIGH with LOW < HIGH, e.g. 0,255")
    return low, high


def read_flavors(tracking_uri: str, name: str, version: str) -> dict[str, dict]:
    """The flavors of a registered version's MLmodel file (downloads that file only)."""
    import mlflow
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(artifact_uri=f"{artifact_root(tracking_uri, name, version)}/MLmodel",
                                                   dst_path=tmp, tracking_uri=tracking_uri)
        return dict(yaml.safe_load(Path(path).read_text()).get("flavors") or {})


def artifact_root(tracking_uri: str, name: str, version: str) -> str:
    """Where the version's files are (``models:/`` URIs resolve through the global registry URI, not ours)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri, registry_uri=tracking_uri).get_model_version_download_uri(name, str(version))


def keras_file_of(uri: str, flavors: dict[str, dict], option: str = "--model-uri") -> str:
    """Where the Keras model lies inside the version's artifacts, or one line saying why it cannot be tested."""
    names = ", ".join(sorted(flavors)) or "none"
    unsupported = RobustnessUsageError(f"{option} {uri}: flavors {names}; supported: a Keras model logged with "
                                       f"mlflow.keras or mlflow.tensorflow ({', '.join(SUPPORTED_FLAVORS)})")
    if "keras" in flavors:
        conf = flavors["keras"]
        if conf.get("save_exported_model"):
            raise RobustnessUsageError(f"{option} {uri}: flavor keras with save_exported_model=True (an "
                                       "inference-only export, no Keras model to differentiate); log it with "
                                       "save_exported_model=False")
        return f"{conf.get('data', 'data')}/model.keras"
    if "tensorflow" in flavors:
        conf = flavors["tensorflow"]
        if conf.get("model_type", "keras") != "keras":
            raise RobustnessUsageError(f"{option} {uri}: flavor tensorflow with model_type "
                                       f"{conf.get('model_type')} (a tf.Module, not a Keras model); supported: "
                                       "Keras models logged with mlflow.keras or mlflow.tensorflow")
        suffix = ".h5" if conf.get("save_format", "h5") == "h5" else ".keras"
        return f"{conf.get('data', 'data')}/model{suffix}"
    raise unsupported


def load_keras_file(path: str | Path, origin: str, trust_code: bool) -> tuple[Any, bool]:
    """(model, whether it needed code): loaded in safe mode, or without it only when the user trusts it."""
    import keras

    from . import keras_layers  # noqa: F401  (registers our own layers, which run no loaded code)

    try:
        return keras.saving.load_model(str(path), compile=False, safe_mode=True), False
    except Exception as exc:  # Keras raises ValueError or TypeError, sometimes wrapping the safe-mode refusal
        if not _is_safe_mode_refusal(exc):
            raise RobustnessUsageError(f"{origin}: not a loadable Keras model ({_why_not_loadable(exc)})") from None
        if not trust_code:
            raise RobustnessUsageError(f"{origin}: refused to load: it contains Python code (a Lambda layer or "
                                       f"a custom object with code), which Keras' safe mode does not run; "
                                       f"{TRUST_HINT}") from None
    return keras.saving.load_model(str(path), compile=False, safe_mode=False), True


def _is_safe_mode_refusal(exc: BaseException | None) -> bool:
    while exc is not None:
        if "safe_mode" in str(exc) or "arbitrary code execution" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _why_not_loadable(exc: BaseException) -> str:
    """Keras' reason, named: a function saved by name only (``Lambda(preprocess_input)``) loads nowhere."""
    cause: BaseException | None = exc
    while cause is not None:
        found = UNLOCATABLE_FUNCTION.search(str(cause))
        if found:
            return (f"a Lambda layer calls the function {found[1]!r}, which Keras saves by its name only, so no "
                    f"program can load it; call the function on the model's input instead (e.g. x = keras."
                    f"applications.resnet50.preprocess_input(inputs), saved as Keras operations) or use layers "
                    f"(Rescaling, Normalization), and save the model again")
        cause = cause.__cause__ or cause.__context__
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


def load_registered_keras(tracking_uri: str, name: str, version: str, trust_code: bool,
                          option: str = "--model-uri") -> tuple[Any, bool]:
    """A registered version's Keras model (any supported flavor) and whether it needed code."""
    import mlflow

    uri = f"models:/{name}/{version}"
    relative = keras_file_of(uri, read_flavors(tracking_uri, name, version), option)
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(artifact_uri=f"{artifact_root(tracking_uri, name, version)}/{relative}",
                                                   dst_path=tmp, tracking_uri=tracking_uri)
        return load_keras_file(path, f"{option} {uri}", trust_code)


# -- what start-up checks need ------------------------------------------------------------------
def model_signature(model, needs_code: bool) -> dict[str, Any]:
    """Input shape, number of outputs, a final softmax: recorded as a version tag at first load."""
    from .adapter import final_softmax

    output_shape = tuple(model.output_shape)
    return {"input_shape": [d for d in model.input_shape[1:]], "outputs": output_shape[-1],
            "output_rank": len(output_shape), "softmax": final_softmax(model) is not None, "needs_code": needs_code}


def encode_signature(signature: dict[str, Any]) -> str:
    return json.dumps(signature, sort_keys=True, separators=(",", ":"))


def decode_signature(raw: str | None) -> dict[str, Any] | None:
    try:
        found = json.loads(raw) if raw else None
    except ValueError:
        return None
    return found if isinstance(found, dict) and {"input_shape", "outputs", "softmax"} <= set(found) else None


def check_signature(origin: str, signature: dict[str, Any], data_shape: tuple[int, ...] | None,
                    n_classes: int | None, declared_output: str, trust_code: bool) -> None:
    """One line for each way the model cannot be tested on this data with these options."""
    if signature.get("needs_code") and not trust_code:
        raise RobustnessUsageError(f"{origin}: refused to load: it contains Python code (a Lambda layer or a "
                                   f"custom object with code), which Keras' safe mode does not run; {TRUST_HINT}")
    model_shape = tuple(signature["input_shape"])
    if data_shape is not None and (len(model_shape) != len(data_shape) or any(
            m is not None and m != d for m, d in zip(model_shape, data_shape))):
        raise RobustnessUsageError(f"{origin}: the model takes inputs of shape {_shape(model_shape)}, the data's "
                                   f"images are {_shape(data_shape)}")
    if signature.get("output_rank", 2) != 2:
        raise RobustnessUsageError(f"{origin}: the model's output has rank {signature['output_rank']}; expected "
                                   "(batch, classes) scores")
    if n_classes is not None and signature["outputs"] != n_classes:
        raise RobustnessUsageError(f"{origin}: the model has {signature['outputs']} outputs, the data has "
                                   f"{n_classes} classes")
    if declared_output == "logits" and signature["softmax"]:
        raise RobustnessUsageError(f"{origin}: --model-output logits, but the model ends in a softmax; "
                                   "use --model-output probabilities or auto")


def _shape(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def file_digest(path: str | Path) -> str:
    """Content address of a model file (what --model-file registration is keyed by)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:20]


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def hdf5_problem(path: Path) -> str | None:
    """Why ``path`` is not a readable HDF5 file (truncated, another format), or None: checked at start-up,
    not when training reaches it."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(HDF5_SIGNATURE))
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if head != HDF5_SIGNATURE:
        return "not an HDF5 file (no HDF5 signature); expected Keras weights saved as .h5"
    import h5py

    try:
        with h5py.File(path, "r") as weights:
            weights.visit(lambda name: None)  # every group header: a truncated file fails here
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError, KeyError or RuntimeError for broken files
        return f"not a readable HDF5 file, truncated or corrupt ({_first_line(exc)})"
    return None


def check_model_file(raw: str) -> Path:
    path = Path(os.path.expanduser(raw))
    if path.suffix not in MODEL_FILE_SUFFIXES or not path.is_file():
        raise RobustnessUsageError(f"--model-file {raw}: expected an existing Keras model file "
                                   f"({' or '.join(MODEL_FILE_SUFFIXES)})")
    return path.resolve()
