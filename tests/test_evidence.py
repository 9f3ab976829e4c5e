"""Evidence pictures are real PNGs a person can read: upscaled patch, captioned grid, eps plot."""

import io

import numpy as np
from PIL import Image

from pytest_robustness.cells import pictures as evidence


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_patch_is_upscaled_pixel_exact():
    patch = np.zeros((28, 28, 1), np.float32)
    patch[0, 0] = 1.0
    image = opened(evidence.patch_png(patch))
    assert image.format == "PNG" and image.size == (252, 252)  # 9x, nearest neighbour
    pixels = np.asarray(image.convert("L"))
    assert pixels[:9, :9].min() == 255 and pixels[9:, 9:].max() == 0


def test_sample_grid_has_a_column_per_kind_and_a_row_per_sample():
    x = np.random.default_rng(0).random((5, 28, 28, 1), dtype=np.float32)
    columns = [("clean", x, ["true 1 pred 1"] * 5), ("adversarial", x, ["pred 7"] * 5),
               ("jpeg_compression\n(adaptive)", x, ["pred 1"] * 5)]
    image = opened(evidence.sample_grid_png(columns))
    assert image.size[0] >= 3 * 112 and image.size[1] >= 5 * 112


def test_accuracy_vs_eps_plot():
    image = opened(evidence.accuracy_vs_eps_png(
        {"none": [(0.1, 0.8), (0.3, 0.1)], "jpeg_compression (adaptive)": [(0.1, 0.85), (0.3, 0.12)]}, "FGM"))
    assert image.size == (640, 420)


def test_sample_grid_captions_use_class_names_and_fit_them():
    from types import SimpleNamespace

    from pytest_robustness.cells.artifacts import sample_columns

    x = np.zeros((3, 8, 8, 3), np.float32)
    result = SimpleNamespace(modified=np.array([True, False, True]), source_index=np.arange(3), x_clean=x,
                             y_true=np.array([0, 1, 2]), clean_predictions=np.array([0, 1, 1]), x_adv=x,
                             adversarial_predictions=np.array([2, 1, 0]), kept_index=None)
    names = ("Apple Braeburn", "Apple Granny Smith", "Banana Lady Finger")
    columns = sample_columns(result, class_names=names)
    assert columns[0][2] == ["true Apple Braeburn pred Apple Braeburn", "true Banana Lady Finger pred Apple Granny Smith"]
    assert columns[1][2] == ["pred Banana Lady Finger", "pred Apple Braeburn"]
    assert sample_columns(result)[0][2] == ["true 0 pred 0", "true 2 pred 1"]  # no names: the label index
    wide = opened(evidence.sample_grid_png(columns))
    narrow = opened(evidence.sample_grid_png(sample_columns(result)))
    assert wide.size[0] > narrow.size[0] == 2 * (112 + 6) + 6  # the long captions widen the cells
