"""Users' journeys across every shipped suite: model flavor x output x input range x data, under a label
that is not an architecture name (``cnn``).

A pairwise covering subset of the matrix (every pair of two factors' values occurs in some row): model
flavor (``mlflow.keras``, ``mlflow.tensorflow``) x output (logits, softmax) x input range ([0, 1], [0, 255],
a ``Rescaling(1/255)`` inside the model) x data (the built-in MNIST, an ``.npz``, a folder of grey PNGs, a
folder of RGB JPEGs; scikit-learn's 8x8 digits for the last three). Each row is one in-process pytest run
of ``robustness_suites`` that collects every suite for the row's model (no collection error, the cells a
built-in architecture gets) and runs a fast cell of one marker; across the rows every marker (``fgm``,
``patch``, ``defense`` under both threat models, ``transfer`` between several given models, ``evasion``)
runs, and training-time defenses skip with their one-line reason (at collection, and when a suite of the
user's own asks for one). One row gives its model as a ``--model-file`` (registered by the harness with
``mlflow.keras``). No run carries pytest-html extras: pytest-html may be installed, but no ``--html`` is given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import keras
import mlflow
import mlflow.keras
import mlflow.tensorflow
import numpy as np
import pytest
from PIL import Image

from helpers import Store
from pytest_robustness.data.datasets import load_builtin_mnist, load_dataset

SUITES = Path(__file__).resolve().parents[1] / "robustness_suites"
PIP = ["tensorflow-cpu", "keras"]  # given, so MLflow does not load the model to infer requirements
IN_PROCESS = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning", "-rs")
COLLECTED = re.compile(r"collected (\d+) items")
FGM_01 = "test_fgm and linf-eps0.1 and not minimal and not defense and not transfer and not baseline"


@dataclass(frozen=True)
class Row:
    data: str  # mnist, npz, png, jpeg
    flavor: str  # keras, tensorflow
    output: str  # logits, softmax
    scale: int  # 1: pixels in [0, 1]; 255: [0, 255] (a Rescaling layer in the model)
    select: str  # -k: the cells this row runs
    outcome: str  # what the run must end with
    model_file: bool = False  # given as a .keras file (--model-file, --architecture cnn), not a registered URI

    @property
    def name(self) -> str:
        return f"journey_{self.data}_{self.flavor}_{self.output}_{self.scale}"


# Pairwise covering: every two factors' value pairs occur; each marker runs in some row.
ROWS = [
    Row("mnist", "keras", "logits", 1, f"{FGM_01} or test_pgd_asked_directly", "1 passed, 1 skipped"),
    Row("mnist", "tensorflow", "softmax", 255, "test_deepfool", "1 passed"),
    Row("npz", "keras", "softmax", 255, "test_fgm_defense and eps0.1 and spatial_smoothing or test_pgd_fgm",
        "2 passed, 2 skipped"),
    Row("npz", "tensorflow", "logits", 1, "test_fgm_transfer and eps0.1", "4 passed"),  # with a second candidate
    Row("png", "keras", "logits", 255, "test_patch_transfer and scale0.3-corrupt or test_pgd_patch", "1 passed, 2 skipped",
        model_file=True),  # --model-file: registered by the harness with mlflow.keras
    Row("png", "tensorflow", "softmax", 1, FGM_01, "1 passed"),
    Row("jpeg", "keras", "softmax", 1, "test_pgd and linf-eps0.1", "1 passed"),
    Row("jpeg", "tensorflow", "logits", 255, "test_fgm_defense and eps0.1 and jpeg_compression-adaptive", "1 passed"),
]


def _digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.round(digits.images * (255 / 16)).astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], digits.target[order]
    n = int(len(x) * 0.8)
    return (x[:n], y[:n]), (x[n:], y[n:])


def _folder(root: Path, splits, fmt: str) -> Path:
    """Dioptra's layout, training/<class>/ and testing/<class>/; JPEGs in colour (a tint per class)."""
    for split, (x, y) in zip(("training", "testing"), splits):
        for i, (image, label) in enumerate(zip(x, y)):
            path = root / split / str(label) / f"{i}.{fmt}"
            path.parent.mkdir(parents=True, exist_ok=True)
            if fmt == "png":
                Image.fromarray(image).save(path)
            else:
                tint = np.array([1.0, 0.6 + 0.04 * label, 0.9], np.float32)
                Image.fromarray((image[..., None] * tint).astype(np.uint8), "RGB").save(path, quality=95)
    return root


def _train(x, y):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    return model


def _variant(base, output: str, scale: int):
    """The base's weights in the row's form: a final softmax or logits, [0, 1] or [0, 255] pixels."""
    shape = base.input_shape[1:]
    layers = [keras.Input(shape), *([keras.layers.Rescaling(1 / 255.0)] if scale == 255 else []),
              keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.Flatten(),
              keras.layers.Dense(10, activation="softmax" if output == "softmax" else None)]
    model = keras.Sequential(layers)
    model.set_weights(base.get_weights())
    return model


@pytest.fixture(scope="module")
def journeys(tmp_path_factory):
    """The users' data (as files) and models (registered as users do) in one store."""
    root = tmp_path_factory.mktemp("journeys")
    train, test = _digits()
    np.savez(root / "digits.npz", x_train=train[0][..., None], y_train=train[1], x_test=test[0][..., None],
             y_test=test[1])
    specs = {"mnist": "mnist", "npz": str(root / "digits.npz"), "png": str(_folder(root / "png", (train, test), "png")),
             "jpeg": str(_folder(root / "jpeg", (train, test), "jpg"))}
    mnist = load_builtin_mnist(0)
    bases = {"mnist": _train(mnist.x_train[:1200], mnist.y_train[:1200])}
    for kind in ("npz", "png", "jpeg"):
        data = load_dataset(specs[kind], 0)  # what the harness will read: JPEG's artefacts included
        bases[kind] = _train(data.x_train, data.y_train)
    store = Store(root / "mlflow" / "mlflow.db")
    mlflow.set_tracking_uri(store.uri)
    # The store's Default experiment keeps artifacts in ./mlruns of the working directory: the temporary one.
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        try:
            _register(bases, root)
        finally:
            mlflow.set_tracking_uri(None)
    return store, specs, root


def _register(bases, root) -> None:
    """Each row's model logged and registered the way users do (the .keras file of a --model-file row)."""
    for row in ROWS:
        if row.model_file:
            _variant(bases[row.data], row.output, row.scale).save(root / f"{row.name}.keras")
            continue
        flavor = mlflow.keras if row.flavor == "keras" else mlflow.tensorflow
        with mlflow.start_run():
            flavor.log_model(_variant(bases[row.data], row.output, row.scale), name="model",
                             registered_model_name=row.name, pip_requirements=PIP)


def _run(pytester, store, *args):
    result = pytester.runpytest_inprocess(str(SUITES), "--mlflow-uri", store.uri, "--samples", "32", *IN_PROCESS, *args)
    # pytest-html may be installed (its plugin registered), but without --html no report carries pictures.
    assert not [r.nodeid for r in result.reprec.getreports("pytest_runtest_logreport") if getattr(r, "extras", None)]
    return result


def _collected(result) -> int:
    found = next((m for m in map(COLLECTED.search, result.outlines) if m), None)
    assert found is not None, "\n".join(result.outlines[-30:])
    return int(found.group(1))


REFERENCE: dict[tuple[str, ...], int] = {}


def reference_cells(pytester, store, *architectures: str) -> int:
    """What every suite collects for these built-in architectures: given models' labels must get as many."""
    if architectures not in REFERENCE:
        result = _run(pytester, store, *(a for name in architectures for a in ("--architecture", name)),
                      "--collect-only", "-q")
        found = re.search(r"(\d+) tests? collected", "\n".join(result.outlines))
        assert result.ret == 0 and found, "\n".join(result.outlines[-30:])
        REFERENCE[architectures] = int(found.group(1))
    return REFERENCE[architectures]


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.name.removeprefix("journey_"))
def test_journey(pytester, journeys, row):
    store, specs, root = journeys
    candidates = ["--model-uri", f"cnn=models:/{row.name}/1"]
    if row.model_file:
        candidates = ["--model-file", str(root / f"{row.name}.keras"), "--architecture", "cnn"]
    if row.select.startswith("test_fgm_transfer"):  # several candidates: transfer pairs between the given models
        other = next(r for r in ROWS if r.data == "png" and r.scale == row.scale)
        candidates += ["--model-uri", f"other=models:/{other.name}/1"]
    if "test_pgd_asked_directly" in row.select:  # a suite of the user's own beside the shipped ones
        pytester.makepyfile(test_direct=DIRECT_PGD)
        candidates += [str(pytester.path / "test_direct.py")]
    result = _run(pytester, store, "--dataset", specs[row.data], *candidates, "-k", row.select,
                  *(["--input-range", "0,255"] if row.scale == 255 else []), "--junitxml", "report.xml")
    output = "\n".join(result.outlines)
    assert result.ret == 0, output[-4000:]  # a collection error would exit 2
    several = "other=" in " ".join(candidates)
    # Every suite collected for the given model(s), as for built-in architectures (transfer: every pair).
    own = 1 if "test_pgd_asked_directly" in row.select else 0
    assert _collected(result) == own + reference_cells(pytester, store, *(("le_net", "shallow_net") if several
                                                                           else ("shallow_net",))), output[-3000:]
    assert re.search(rf"\b{row.outcome}\b", output), output[-3000:]
    ids = re.findall(r"<testcase [^>]*name=\"([^\"]+)\"", (pytester.path / "report.xml").read_text())
    assert ids and all(re.search(r"\[(cnn|other)-", i) for i in ids), ids
    if "skipped" in row.outcome:  # training-time defenses, at collection or when a suite asks: one line
        option = "--model-file" if row.model_file else "--model-uri cnn=..."
        assert re.search(r"SKIPPED \[\d\] .*: pgd trains a model of its own from the architecture, and cnn is a "
                         rf"given model \({re.escape(option)}\), not an architecture the harness can train$", output, re.M)
    if several:
        assert {"test_fgm_transfer[cnn-to-other-linf-eps0.1]", "test_fgm_transfer[other-to-cnn-linf-eps0.1]"} <= set(ids)


DIRECT_PGD = '''
from pytest_robustness import attack_cases


@attack_cases("fgm", [dict(norm="inf", eps=0.1)])
def test_pgd_asked_directly(robustness, architecture, params):
    result = robustness.attack("fgm", **params)
    robustness.defend(result, "pgd", "adaptive")
'''
