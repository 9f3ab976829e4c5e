"""Evidence pictures are real PNGs a person can read: upscaled patch, captioned grid, eps plot."""

import io

import numpy as np
from PIL import Image

from pytest_robustness import evidence


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
