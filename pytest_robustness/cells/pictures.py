"""Pictures a person can look at in ``mlflow ui``: the patch, sample grids and accuracy-vs-eps plots.

Pure functions from arrays to PNG bytes (pillow; matplotlib with the Agg
backend for plots), so they are testable on their own and cost nothing to
import until used.
"""

from __future__ import annotations

import io
from typing import Mapping, Sequence

import numpy as np

PATCH_PIXELS = 256  # a 28x28 patch is shown ~9x, pixel-exact (nearest neighbour)
CELL_PIXELS = 112
LABEL_HEIGHT = 14
HEADER_HEIGHT = 28  # two lines: e.g. "jpeg_compression" / "(adaptive)"


def _to_image(array: np.ndarray, size: int):
    """[0, 1] HWC float array -> PIL image upscaled (nearest) so its longer side is ~``size``."""
    from PIL import Image

    pixels = np.clip(np.asarray(array, dtype=np.float32), 0, 1)
    pixels = (pixels * 255 + 0.5).astype(np.uint8)
    image = Image.fromarray(pixels[..., 0], "L") if pixels.shape[-1] == 1 else Image.fromarray(pixels[..., :3], "RGB")
    factor = max(1, size // max(image.size))
    return image.resize((image.size[0] * factor, image.size[1] * factor), Image.NEAREST).convert("RGB")


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def patch_png(patches: np.ndarray, size: int = PATCH_PIXELS) -> bytes:
    """The generated patch(es), side by side, upscaled so a person can see every pixel."""
    from PIL import Image

    patches = np.asarray(patches)
    if patches.ndim == 3:
        patches = patches[None]
    tiles = [_to_image(p, size) for p in patches]
    gap = 8
    canvas = Image.new("RGB", (sum(t.size[0] for t in tiles) + gap * (len(tiles) - 1), max(t.size[1] for t in tiles)),
                       "white")
    x = 0
    for tile in tiles:
        canvas.paste(tile, (x, 0))
        x += tile.size[0] + gap
    return _png(canvas)


def sample_grid_png(columns: Sequence[tuple[str, np.ndarray, Sequence[str]]], size: int = CELL_PIXELS) -> bytes:
    """A grid: one column per kind (e.g. clean / adversarial / defended), one row per sample,
    each image captioned (e.g. its predicted label)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    rows = min(len(images) for _, images, _ in columns)
    tiles = [[_to_image(images[r], size) for r in range(rows)] for _, images, _ in columns]
    cell_w = max(t.size[0] for col in tiles for t in col) if rows else size
    cell_h = (max(t.size[1] for col in tiles for t in col) if rows else size) + LABEL_HEIGHT
    # wide enough for the longest caption (class names such as "Apple Braeburn")
    cell_w = max([cell_w, *(int(font.getlength(str(c))) + 2 for _, _, captions in columns for c in captions[:rows])])
    pad = 6
    canvas = Image.new("RGB", (len(columns) * (cell_w + pad) + pad, HEADER_HEIGHT + rows * (cell_h + pad) + pad),
                       "white")
    draw = ImageDraw.Draw(canvas)
    for c, (title, _images, captions) in enumerate(columns):
        x = pad + c * (cell_w + pad)
        draw.text((x, 3), title, fill="black", font=font)
        for r in range(rows):
            y = HEADER_HEIGHT + r * (cell_h + pad)
            canvas.paste(tiles[c][r], (x, y))
            draw.text((x, y + cell_h - LABEL_HEIGHT + 1), str(captions[r]), fill="black", font=font)
    return _png(canvas)


def accuracy_vs_eps_png(series: Mapping[str, Sequence[tuple[float, float]]], title: str,
                        ylabel: str = "accuracy") -> bytes:
    """One line per label (e.g. ``none``, ``jpeg_compression (adaptive)``) of accuracy against eps."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.2), dpi=100)
    axes = figure.add_subplot()
    for label, points in sorted(series.items(), key=lambda kv: (kv[0] != "none", kv[0])):
        points = sorted(points)
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                  linestyle="-" if label == "none" or "adaptive" in label else "--", label=label)
    axes.set_xlabel("eps")
    axes.set_ylabel(ylabel)
    axes.set_ylim(-0.02, 1.02)
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
