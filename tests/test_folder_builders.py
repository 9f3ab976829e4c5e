"""Building Dioptra folders of real-size images from local files: a Fruits360 copy, scikit-learn's photographs.

The folders are read back by the harness's own folder reader, so what the builders make is what a gate tests.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pytest_robustness.data.datasets import load_folder
from pytest_robustness.data.folder_builders import fruits360_folder, photo_folder
from pytest_robustness.errors import RobustnessUsageError


def fruits360(root, classes=("Banana", "Apple Braeburn", "Cherry 1"), train=3, test=2):
    """Fruits360's layout: Training/<class>/r_<i>_100.jpg and Test/<class>/..., 100x100 RGB, a colour per class."""
    for split, count in (("Training", train), ("Test", test)):
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = np.full((100, 100, 3), (40 * c, 200 - 30 * i, 90), np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"r_{i}_100.jpg", quality=95)
    (root / "Training" / "Banana" / "notes.txt").write_text("not an image")
    return root


def test_fruits360_becomes_a_dioptra_folder_the_harness_reads_with_classes_and_images_limited(tmp_path):
    source = fruits360(tmp_path / "fruits-360")
    dest = fruits360_folder(source, tmp_path / "fruits", max_classes=2, per_class=2)
    assert sorted(p.name for p in (dest / "training").iterdir()) == ["Apple Braeburn", "Banana"]  # sorted, first 2
    assert sorted(p.name for p in (dest / "training" / "Banana").iterdir()) == ["r_0_100.jpg", "r_1_100.jpg"]
    assert (dest / "training" / "Banana" / "r_0_100.jpg").samefile(source / "Training" / "Banana" / "r_0_100.jpg")
    data = load_folder(dest)
    assert data.class_names == ("Apple Braeburn", "Banana")
    assert data.x_train.shape == (4, 100, 100, 3) and data.x_test.shape == (4, 100, 100, 3)
    chosen = fruits360_folder(source, tmp_path / "cherries", classes=["Cherry 1"], copy=True)
    copied = chosen / "testing" / "Cherry 1" / "r_1_100.jpg"
    assert copied.is_file() and not copied.samefile(source / "Test" / "Cherry 1" / "r_1_100.jpg")
    assert len(list((chosen / "training" / "Cherry 1").iterdir())) == 3


def test_a_folder_that_is_not_fruits360_or_a_class_it_lacks_is_one_line(tmp_path):
    source = fruits360(tmp_path / "fruits-360")
    with pytest.raises(RobustnessUsageError) as info:
        fruits360_folder(tmp_path / "fruits-360" / "Training", tmp_path / "out")
    assert str(info.value) == (f"fruits360_folder: {tmp_path / 'fruits-360' / 'Training'}: no Training/ folder; "
                               "expected Fruits360's layout, Training/<class>/*.jpg and Test/<class>/*.jpg")
    with pytest.raises(RobustnessUsageError, match=r"^fruits360_folder: class 'Kiwi' is not in .*Training$"):
        fruits360_folder(source, tmp_path / "out", classes=["Kiwi"])
    with pytest.raises(RobustnessUsageError, match=r"^fruits360_folder: per_class 0: expected at least 1$"):
        fruits360_folder(source, tmp_path / "out", per_class=0)


def test_the_photo_folder_is_real_jpegs_of_the_asked_size_and_the_same_for_the_same_seed(tmp_path):
    first = photo_folder(tmp_path / "a", {"training": 2, "testing": 1}, size=64)
    again = photo_folder(tmp_path / "b", {"training": 2, "testing": 1}, size=64)
    files = sorted(p.relative_to(first) for p in first.rglob("*.jpg"))
    assert [str(p) for p in files] == ["testing/china/china_00000.jpg", "testing/flower/flower_00000.jpg",
                                       "training/china/china_00000.jpg", "training/china/china_00001.jpg",
                                       "training/flower/flower_00000.jpg", "training/flower/flower_00001.jpg"]
    for path in files:
        with Image.open(first / path) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (64, 64))
        assert (first / path).read_bytes() == (again / path).read_bytes()
    with pytest.raises(RobustnessUsageError, match=r"size 500: the sample photographs are 427 pixels high"):
        photo_folder(tmp_path / "c", {"training": 1}, size=500)
