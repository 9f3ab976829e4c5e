"""A folder larger than memory is gated batch by batch, with the numbers of the in-memory path.

The user's data is a Dioptra folder of PNG (and, for the equality, JPEG) files (scikit-learn's 8x8 digits, listed class by
class as Keras lists them) and the user's logits CNN, registered with ``mlflow.keras.log_model``
and named ``cnn``. The same FGM suite runs with ``--stream-batch 32`` (each cell reads, attacks
and scores 32 images at a time) and with ``--stream-batch 0`` (the data set loaded whole): every
metric of every cell is the same, the streamed session never decoded the folder whole (no
data-set entry in its cache), and each examples file recomputes its kept images' adversarial
accuracy. Cells that need every example (a defense judging them) skip with one line.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import mlflow.keras
import numpy as np
import pytest
from PIL import Image
from test_user_models import cells, digits_logits_cnn, register_keras

from helpers import FGM_SUITE, session_run_id
from pytest_robustness.cells.baseline import CORRECTNESS_FILE
from pytest_robustness.data import datasets, image_stream
from pytest_robustness.data.example_files import read_examples
from pytest_robustness.data.image_stream import stratified_subset
from pytest_robustness.metrics import statistics

ARGS = ("--attack-backend", "compiled", "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")


def digits_folder(npz: Path, root: Path, suffix: str = "png") -> Path:
    """The .npz digits as a Dioptra folder of grey PNG (or JPEG) files, ``training/<digit>/`` and ``testing/<digit>/``."""
    data = np.load(npz)
    for split, x, y in (("training", data["x_train"], data["y_train"]), ("testing", data["x_test"], data["y_test"])):
        for i, (image, label) in enumerate(zip(x, y)):
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[..., 0], "L").save(folder / f"{i:05d}.{suffix}")
    return root


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("streamed")
    store, npz, model = digits_logits_cnn(root)
    register_keras(store, model, "digits_cnn")
    return store, digits_folder(npz, root / "digits"), digits_folder(npz, root / "jpeg" / "digits", "jpg")


def run(pytester, store, folder, *args):
    return pytester.runpytest(*ARGS, "--dataset", str(folder), "--mlflow-uri", store.uri,
                              "--model-uri", "cnn=models:/digits_cnn/1", *args)


@pytest.mark.parametrize("files", ["png", "jpeg"])
def test_a_streamed_folder_gives_the_in_memory_numbers_without_loading_the_data_set(pytester, user_folder, tmp_path,
                                                                                    files):
    store, png, jpeg = user_folder
    folder = png if files == "png" else jpeg
    pytester.makepyfile(test_suite=FGM_SUITE)
    streamed = run(pytester, store, folder, "--stream-batch", "32", "--robustness-cache-dir", str(tmp_path / "s"),
                   "--junitxml", str(tmp_path / "streamed.xml"))
    streamed.assert_outcomes(passed=2)
    assert not list((tmp_path / "s").rglob("*dataset*")), "the streamed session cached the whole data set"
    found = cells(tmp_path / "streamed.xml")
    assert all(props["samples"] == "360" and props["stream_batch"] == "32" for props in found.values()), found

    loaded = run(pytester, store, folder, "--stream-batch", "0", "--robustness-cache-dir", str(tmp_path / "m"))
    loaded.assert_outcomes(passed=2)
    first, second = ([r for r in store.children(session_run_id(outcome), "digits")
                      if r.data.tags.get("robustness.kind") == "test"] for outcome in (streamed, loaded))
    assert len(first) == len(second) == 2
    for a in first:
        (b,) = [r for r in second if r.info.run_name == a.info.run_name]
        assert a.data.params["stream_batch"] == "32" and "stream_batch" not in b.data.params
        assert set(a.data.metrics) == set(b.data.metrics)
        for name, value in a.data.metrics.items():
            assert value == pytest.approx(b.data.metrics[name], rel=1e-6, abs=1e-9), (a.info.run_name, name)
        assert a.data.metrics["adversarial_accuracy"] < a.data.metrics["clean_accuracy"]


def test_the_streamed_examples_file_recomputes_its_kept_images(pytester, user_folder, tmp_path):
    store, folder, _ = user_folder
    pytester.makepyfile(test_suite=FGM_SUITE)
    result = run(pytester, store, folder, "--stream-batch", "32", "--keep-examples", "50", "-k", "inf",
                 "--robustness-cache-dir", str(tmp_path / "c"))
    result.assert_outcomes(passed=1)
    (test_run,) = [r for r in store.children(session_run_id(result), "digits")
                   if r.data.tags.get("robustness.kind") == "test"]
    path = store.download(test_run.info.run_id, "adversarial_examples.npz", tmp_path)
    examples = read_examples(path)
    assert len(examples["kept_index"]) == 50 and len(examples["x_adv"]) == 50
    assert test_run.data.params["kept_examples"] == "50"
    # the kept images are a sample of every class, and the user's model on them gives the cell's per-image verdicts
    assert len(set(examples["y_true"].tolist())) > 5
    linf = np.abs(examples["x_adv"] - examples["x_clean"]).max(axis=(1, 2, 3))
    assert np.all(linf <= 0.1 + 1e-6) and linf.max() > 0.09
    mlflow.set_tracking_uri(store.uri)
    try:
        model = mlflow.keras.load_model("models:/digits_cnn/1")
    finally:
        mlflow.set_tracking_uri(None)
    right = model.predict(examples["x_adv"], verbose=0).argmax(1) == examples["y_true"]
    with np.load(store.download(test_run.info.run_id, CORRECTNESS_FILE, tmp_path / "c2")) as stored:
        every = statistics.unpack(stored["adversarial_accuracy"], int(stored["adversarial_accuracy__n"]))
    assert len(every) == 360
    assert np.array_equal(right, every[examples["kept_index"]])


def test_samples_pick_a_stratified_subset_of_a_folder():
    labels = np.repeat(np.arange(4), [50, 30, 15, 5])
    chosen = stratified_subset(labels, 20)
    assert list(np.bincount(labels[chosen])) == [10, 6, 3, 1]
    assert np.all(np.diff(chosen) > 0)
    assert np.array_equal(chosen, stratified_subset(labels, 20))
    assert len(stratified_subset(labels, 200)) == 100


DEFENDED_SUITE = '''
import pytest


@pytest.mark.defense
def test_defended(robustness):
    result = robustness.attack("fgm", eps=0.1)
    robustness.defend(result, "spatial_smoothing")
'''


def test_a_cell_that_needs_every_example_skips_with_one_line(pytester, user_folder, tmp_path):
    store, folder, _ = user_folder
    pytester.makepyfile(test_suite=DEFENDED_SUITE)
    result = run(pytester, store, folder, "--stream-batch", "32", "-rs", "--robustness-cache-dir", str(tmp_path))
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*defense spatial_smoothing needs every adversarial example*--stream-batch 0*"])


def test_stream_batch_is_checked_at_start_up(pytester, user_folder, tmp_path):
    store, folder, _ = user_folder
    pytester.makepyfile(test_suite=FGM_SUITE)
    result = run(pytester, store, folder, "--stream-batch", "many")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--stream-batch 'many': expected a count of images per batch, 0*"])
    npz = pytester.runpytest(*ARGS, "--dataset", "mnist", "--stream-batch", "64", "--mlflow-uri", store.uri)
    assert npz.ret == 4
    npz.stderr.fnmatch_lines(["*--stream-batch 64: only Dioptra folders are streamed*"])


def test_auto_streams_a_folder_above_the_memory_bound(pytester, user_folder, tmp_path, monkeypatch):
    """``auto`` (the default) streams a folder whose evaluation images exceed the bound (here lowered to
    50 KB; the bound reads one header and counts three channels: 360 digits 276 KB, 60 of them 46 KB), and loads a smaller one whole."""
    store, folder, _ = user_folder
    monkeypatch.setattr(image_stream, "STREAM_ABOVE_BYTES", 50_000)
    monkeypatch.setattr(datasets, "STREAM_ABOVE_BYTES", 50_000)
    pytester.makepyfile(test_suite=FGM_SUITE)
    outcomes = {}
    for samples in ("0", "60"):
        result = run(pytester, store, folder, "--samples", samples, "-k", "inf", "--junitxml",
                     str(tmp_path / f"{samples}.xml"), "--robustness-cache-dir", str(tmp_path / samples))
        result.assert_outcomes(passed=1)
        (props,) = cells(tmp_path / f"{samples}.xml").values()
        outcomes[samples] = props.get("stream_batch"), props["samples"]
    assert outcomes == {"0": ("256", "360"), "60": (None, "60")}
