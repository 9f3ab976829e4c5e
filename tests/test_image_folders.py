"""Dioptra folders as users have them: any Pillow format and mode, class names with spaces, mixed sizes
resized by --image-size, progress while reading, and a cache keyed by the files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import TINY, run_robustness
from pytest_robustness.data import datasets, image_folders
from pytest_robustness.data.datasets import dataset_key, load_dataset, validate_dataset_spec
from pytest_robustness.errors import RobustnessUsageError

RNG = np.random.default_rng(0)


def rgb(height=6, width=5):
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


def grey(height=6, width=5):
    return RNG.integers(0, 256, (height, width), dtype=np.uint8)


def save(path: Path, image: Image.Image, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def test_every_pillow_format_and_mode_in_keras_class_order(tmp_path):
    root = tmp_path / "fruits"
    rgba = np.dstack([rgb(), RNG.integers(0, 256, (6, 5), dtype=np.uint8)])
    palette = Image.fromarray(rgb()).quantize(16)
    images = {
        "training/Apple Braeburn/a.png": Image.fromarray(rgb()),
        "training/Apple Braeburn/b.jpg": Image.fromarray(rgb()),
        "training/Apple Braeburn/nested/c.bmp": Image.fromarray(grey()),
        "training/banana/d.gif": palette,
        "training/banana/e.png": Image.fromarray(rgba, "RGBA"),
        "training/Cherry 2/f.tiff": Image.fromarray(rgb()),
        "training/Cherry 2/g.webp": Image.fromarray(rgb()),
        "testing/banana/h.png": Image.fromarray(grey()),
        "testing/Apple Braeburn/i.jpeg": Image.fromarray(rgb()),
    }
    for relative, image in images.items():
        save(root / relative, image, **({"lossless": True} if relative.endswith(".webp") else {}))
    (root / "training" / "banana" / "notes.txt").write_text("not an image")
    (root / "training" / "banana" / ".DS_Store").write_bytes(b"\0\0")
    (root / "training" / ".hidden").mkdir()

    data = load_dataset(str(root), seed=0)
    # plain sorted names, as keras.utils.image_dataset_from_directory orders them (upper case first)
    assert data.class_names == ("Apple Braeburn", "Cherry 2", "banana")
    assert data.x_train.shape == (7, 6, 5, 3) and data.x_test.shape == (2, 6, 5, 3)  # one colour image: all RGB
    assert data.y_train.tolist() == [0, 0, 0, 1, 1, 2, 2] and data.y_test.tolist() == [0, 2]

    def decoded(relative):
        with Image.open(root / relative) as image:
            return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0

    order = ["training/Apple Braeburn/a.png", "training/Apple Braeburn/b.jpg", "training/Apple Braeburn/nested/c.bmp",
             "training/Cherry 2/f.tiff", "training/Cherry 2/g.webp", "training/banana/d.gif", "training/banana/e.png"]
    np.testing.assert_array_equal(data.x_train, np.stack([decoded(r) for r in order]))
    np.testing.assert_array_equal(data.x_train[6], rgba[..., :3] / np.float32(255))  # alpha dropped
    grey_bmp = data.x_train[2]
    assert (grey_bmp == grey_bmp[..., :1]).all()  # grey repeated over the three channels
    assert json.loads(data.params["class_names"]) == ["Apple Braeburn", "Cherry 2", "banana"]
    assert data.params["image_shape"] == "6,5,3"


def test_grey_images_stay_one_channel_16_bit_scaled(tmp_path):
    root = tmp_path / "grey"
    deep = (np.arange(30, dtype=np.uint16).reshape(6, 5) * 2000)
    grey_palette = Image.fromarray(grey()).convert("P")  # a palette of greys
    save(root / "training" / "x" / "a.png", Image.fromarray(grey()))
    save(root / "training" / "x" / "b.png", grey_palette)
    save(root / "training" / "y" / "c.png", Image.fromarray(deep))  # 16-bit grey
    save(root / "training" / "y" / "d.png", Image.fromarray(grey()).convert("LA"))
    save(root / "testing" / "y" / "e.png", Image.fromarray(grey()))
    data = load_dataset(str(root), seed=0)
    assert data.input_shape == (6, 5, 1)
    np.testing.assert_allclose(data.x_train[2, ..., 0], np.round(deep / 257.0) / 255.0, atol=1e-6)


def test_image_size_resizes_and_sets_channels(tmp_path):
    root = tmp_path / "mixed"
    small = save(root / "training" / "a" / "small.jpg", Image.fromarray(rgb(16, 16)), quality=95)
    large = save(root / "training" / "a" / "large.jpg", Image.fromarray(rgb(24, 20)), quality=95)
    save(root / "testing" / "a" / "t.png", Image.fromarray(grey(20, 24)))
    with pytest.raises(RobustnessUsageError, match=r"images of different sizes: .*large.jpg is 24x20 and .*small.jpg "
                                                   r"is 16x16 \(height x width\); give --image-size H,W,C"):
        validate_dataset_spec(str(root))
    data = load_dataset(str(root), seed=0, image_size=(16, 16, 1))
    assert data.x_train.shape == (2, 16, 16, 1) and data.x_test.shape == (1, 16, 16, 1)
    with Image.open(small) as a, Image.open(large) as b:
        expected = [np.asarray(b.convert("L").resize((16, 16), Image.BILINEAR)), np.asarray(a.convert("L"))]
    np.testing.assert_array_equal(data.x_train[..., 0], np.stack(expected) / np.float32(255))
    assert load_dataset(str(root), seed=0, image_size=(8, 12, 3)).input_shape == (8, 12, 3)


def test_a_changed_file_changes_the_key_and_the_data(tmp_path):
    root = tmp_path / "d"
    target = save(root / "training" / "a" / "0.png", Image.fromarray(grey()))
    save(root / "testing" / "a" / "0.png", Image.fromarray(grey()))
    before_key, before = dataset_key(str(root), 0), load_dataset(str(root), seed=0)
    assert dataset_key(str(root), 0) == before_key and load_dataset(str(root), seed=0) is before  # kept in process
    assert dataset_key(str(root), 0, (6, 5, 3)) != before_key
    Image.fromarray(255 - np.asarray(before.x_train[0, ..., 0] * 255, dtype=np.uint8)).save(target)
    os.utime(target, ns=(1, 1))  # a new modification time whatever the clock's resolution
    after = load_dataset(str(root), seed=0)
    assert dataset_key(str(root), 0) != before_key and after.digest != before.digest


def test_reading_shows_progress(tmp_path, monkeypatch, capsys):
    root = tmp_path / "d"
    for i in range(3):
        save(root / "training" / "a" / f"{i}.png", Image.fromarray(grey()))
    save(root / "testing" / "a" / "0.png", Image.fromarray(grey()))
    monkeypatch.setattr(image_folders, "PROGRESS_SECONDS", 0.0)
    load_dataset(str(root), seed=0)
    lines = capsys.readouterr().err.splitlines()
    assert f"[robustness] read 1/4 images of {root}" in lines
    assert lines[-1].startswith(f"[robustness] read 4 images of {root} in ")


# -- a real session ------------------------------------------------------------------------------
FOLDER_SUITE = '''
import pytest


@pytest.mark.fgm
def test_fgm_on_folder(robustness, architecture):
    result = robustness.attack("fgm", eps=0.1)
    robustness.check(result, clean_accuracy=0.0)
'''
FRUITS = ("Apple Braeburn", "Apple Granny Smith", "Banana Lady Finger")


def fruits_folder(root: Path) -> Path:
    """Real RGB JPEG files: per class 12 training images of 16x16 and 2 of 20x24, 4 testing images of 16x16."""
    for index, name in enumerate(FRUITS):
        tint = np.array([200, 60, 40]) if index == 0 else np.array([60, 200, 40]) if index == 1 else np.array([220, 200, 60])
        for split, count in (("training", 14), ("testing", 4)):
            for i in range(count):
                shape = (20, 24, 3) if split == "training" and i >= 12 else (16, 16, 3)
                pixels = np.clip(tint + RNG.normal(0, 25, shape), 0, 255).astype(np.uint8)
                save(root / split / name / f"{i:03d}.jpg", Image.fromarray(pixels), quality=90)
    return root


def test_jpeg_folder_of_two_sizes_runs_fgm_with_image_size(pytester, store, monkeypatch):
    fruits_folder(pytester.path / "fruits")
    pytester.makepyfile(test_folder_suite=FOLDER_SUITE)
    monkeypatch.setattr(image_folders, "PROGRESS_SECONDS", 0.0)  # a line per image read: shows when it decodes
    args = ("--dataset", "fruits", "--experiment", "mnist")

    without = pytester.runpytest(*TINY, *args)
    assert without.ret == pytest.ExitCode.USAGE_ERROR
    assert "give --image-size H,W,C to resize them" in without.stderr.str()

    datasets._RECENT.clear()
    first = run_robustness(pytester, *args, "--image-size", "16,16,3", store=store)
    first.assert_outcomes(passed=1)
    assert first.stderr.str().count("[robustness] read 54 images of fruits in ") == 1  # read at start-up, kept
    (run,) = [r for r in store.runs() if r.data.tags.get("robustness.kind") == "test"]
    assert json.loads(run.data.params["class_names"]) == list(FRUITS)
    assert run.data.params["image_shape"] == "16,16,3" and run.data.params["dataset"] == "fruits"
    assert "samples.png" in {a.path for a in store.client.list_artifacts(run.info.run_id)}
    (training,) = store.training_runs()  # the registered model records what its outputs mean
    assert json.loads(training.data.params["class_names"]) == list(FRUITS)

    # Again in a fresh process (nothing kept in memory): the decoded folder comes from the cache.
    datasets._RECENT.clear()
    again = run_robustness(pytester, *args, "--image-size", "16,16,3", store=store)
    again.assert_outcomes(passed=1)
    assert "images of fruits" not in again.stderr.str()

    # One file changed: the cache misses and the folder is read again, at start-up.
    changed = pytester.path / "fruits" / "testing" / "Banana Lady Finger" / "000.jpg"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(changed, quality=90)
    datasets._RECENT.clear()
    third = run_robustness(pytester, *args, "--image-size", "16,16,3", "--collect-only", store=store)
    assert third.ret == pytest.ExitCode.OK
    assert "[robustness] read 54 images of fruits in " in third.stderr.str()
