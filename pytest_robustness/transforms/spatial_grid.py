"""The grid of rotations and translations of ART's ``SpatialTransformation``, and its two worst cases.

ART searches one transform for the whole set (the *universal* worst case: the grid point
with the highest fooling rate, i.e. the most predictions changed from the clean ones; the
first such point in grid order, identity kept when nothing fools). Engstrom et al. (2019)
also take, per image, the worst of the same k transforms (*worst-of-k*): an image counts
as robust only if every grid point keeps it correct. Per-image accuracy can never exceed
the universal one (the universal point is one of the k).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .transform import SpatialGridPoint


def art_grid(image_shape: tuple[int, ...], max_translation: float, num_translations: int, max_rotation: float,
             num_rotations: int) -> list[SpatialGridPoint]:
    """ART's grid, in its order: translations in percent of the image side, rounded to pixels."""
    rows_max = int(round(image_shape[0] * max_translation / 100.0))
    cols_max = int(round(image_shape[1] * max_translation / 100.0))
    rows = sorted({int(round(g)) for g in np.linspace(-rows_max, rows_max, num=num_translations)})
    cols = sorted({int(round(g)) for g in np.linspace(-cols_max, cols_max, num=num_translations)})
    rotations = sorted(set(np.linspace(-max_rotation, max_rotation, num=num_rotations)))
    return [SpatialGridPoint(r, c, float(a)) for r in rows for c in cols for a in rotations]


@dataclass
class GridSearch:
    """Predictions of every grid point and the two worst cases derived from them."""

    grid: list[SpatialGridPoint]
    clean_predictions: np.ndarray
    predictions: np.ndarray  # (grid points, images) predicted labels
    y_true: np.ndarray

    @property
    def universal_index(self) -> int:
        """ART's choice: the first grid point with the strictly highest fooling rate (-1: none fools)."""
        fooling = (self.predictions != self.clean_predictions[None, :]).mean(axis=1)
        best, chosen = 0.0, -1
        for i, rate in enumerate(fooling):
            if rate > best:
                best, chosen = rate, i
        return chosen

    @property
    def universal(self) -> SpatialGridPoint:
        i = self.universal_index
        return self.grid[i] if i >= 0 else SpatialGridPoint(0, 0, 0.0)

    def metrics(self) -> dict[str, float]:
        correct = self.predictions == self.y_true[None, :]
        i = self.universal_index
        universal_predictions = self.predictions[i] if i >= 0 else self.clean_predictions
        return {
            "clean_accuracy": float((self.clean_predictions == self.y_true).mean()),
            "universal_accuracy": float((universal_predictions == self.y_true).mean()),
            "universal_fooling_rate": float((universal_predictions != self.clean_predictions).mean()),
            "per_image_accuracy": float(correct.all(axis=0).mean()),
            "per_image_fooling_rate": float((self.predictions != self.clean_predictions[None, :]).any(axis=0).mean()),
            "grid_points": float(len(self.grid)),
        }

    def per_image_worst(self) -> np.ndarray:
        """Per image, the index of its worst grid point (the first that misclassifies it; 0 if none does)."""
        wrong = self.predictions != self.y_true[None, :]
        return np.where(wrong.any(axis=0), wrong.argmax(axis=0), 0)


def search(grid: list[SpatialGridPoint], x: np.ndarray, y: np.ndarray,
           predict: Callable[[np.ndarray], np.ndarray]) -> GridSearch:
    """Predict ``x`` under every grid point (``predict``: images -> probabilities)."""
    clean = predict(x).argmax(axis=1)
    predictions = np.stack([predict(point.apply(x)).argmax(axis=1) for point in grid])
    return GridSearch(grid, clean, predictions, np.asarray(y))
