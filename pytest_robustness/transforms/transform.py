"""Transforms of an image batch: small frozen values with parameters, a readable description and ``apply``.

A transform is what a Hypothesis strategy (``strategies``) draws and what a property cell
(``properties``) applies to its evaluation images: NHWC float images in [0, 1] in, the same shape
and range out, every image transformed alike (a universal transform, as ART's
``SpatialTransformation`` applies one). Each has an identity (rotation 0, shift (0, 0), severity 0,
...) that the strategies shrink toward. Spatial arithmetic is ART's: ``scipy.ndimage`` shift and
rotate with cubic splines, zero fill, then clipping to [0, 1], one call for the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from . import corruptions


@dataclass(frozen=True)
class Transform:
    """One change of an image batch: ``apply(x)``, ``describe()`` (also its repr), ``params()``."""

    def apply(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """Its parameters, named for MLflow (``rotation.degrees``)."""
        return {f"{self.kind}.{f.name}": getattr(self, f.name) for f in fields(self)}

    @property
    def kind(self) -> str:
        return type(self).__name__.lower()

    @property
    def is_identity(self) -> bool:
        return False

    def __repr__(self) -> str:  # Hypothesis prints the falsifying example with repr: make it readable
        return self.describe()

    def __and__(self, other: "Transform") -> "Transform":
        return Compose((*_parts(self), *_parts(other)))


def _parts(t: Transform) -> tuple[Transform, ...]:
    return t.parts if isinstance(t, Compose) else (t,)


def _clip(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0, out=x).astype(np.float32, copy=False)


def _ndimage():
    import scipy.ndimage

    return scipy.ndimage


def shift_pixels(x: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``scipy.ndimage.shift(x, [0, rows, cols, 0])`` for whole pixels, zero fill: a cubic spline sampled
    at its knots is the data itself, so moving the pixels gives the same numbers (to float rounding)
    without scipy's spline filter over the batch axis (seconds for a thousand images)."""
    x = np.asarray(x, np.float32)
    out = np.zeros_like(x)
    h, w = x.shape[1:3]
    rows, cols = int(rows), int(cols)
    if abs(rows) < h and abs(cols) < w:
        out[:, max(rows, 0):h + min(rows, 0), max(cols, 0):w + min(cols, 0)] = \
            x[:, max(-rows, 0):h - max(rows, 0), max(-cols, 0):w - max(cols, 0)]
    return out


@dataclass(frozen=True, repr=False)
class Identity(Transform):
    def apply(self, x):
        return np.array(x, dtype=np.float32)

    def describe(self):
        return "no change"

    @property
    def is_identity(self):
        return True


@dataclass(frozen=True, repr=False)
class Rotation(Transform):
    """``scipy.ndimage.rotate(x, degrees, axes=(1, 2), reshape=False)``, as ART's SpatialTransformation."""

    degrees: float = 0.0

    def apply(self, x):
        if self.degrees == 0:
            return np.array(x, dtype=np.float32)
        return _clip(_ndimage().rotate(np.asarray(x, np.float32), angle=self.degrees, axes=(1, 2), reshape=False))

    def describe(self):
        return f"rotation {self.degrees:g} deg"

    @property
    def is_identity(self):
        return self.degrees == 0


@dataclass(frozen=True, repr=False)
class Shift(Transform):
    """``scipy.ndimage.shift(x, [0, rows, cols, 0])`` (``shift_pixels``): ``rows`` down, ``cols`` right, zero
    fill (ART's ``trans_x``, ``trans_y``)."""

    rows: int = 0
    cols: int = 0

    def apply(self, x):
        if self.is_identity:
            return np.array(x, dtype=np.float32)
        return _clip(shift_pixels(x, self.rows, self.cols))

    def describe(self):
        return f"shift ({self.rows}, {self.cols})"

    @property
    def is_identity(self):
        return self.rows == 0 and self.cols == 0


@dataclass(frozen=True, repr=False)
class SpatialGridPoint(Transform):
    """ART's ``SpatialTransformation._perturb``: shift by (rows, cols), then rotate, then clip."""

    rows: int = 0
    cols: int = 0
    degrees: float = 0.0

    def apply(self, x):
        shifted = shift_pixels(x, self.rows, self.cols)
        if self.degrees == 0:
            return _clip(shifted)
        return _clip(_ndimage().rotate(shifted, angle=self.degrees, axes=(1, 2), reshape=False))

    def describe(self):
        return f"shift ({self.rows}, {self.cols}), rotation {self.degrees:g} deg"

    def params(self):
        return {"spatial.rows": self.rows, "spatial.cols": self.cols, "spatial.degrees": self.degrees}


@dataclass(frozen=True, repr=False)
class Scale(Transform):
    """Zoom by ``factor`` about the image centre (bilinear, zero fill): > 1 enlarges, < 1 shrinks."""

    factor: float = 1.0

    def apply(self, x):
        if self.factor == 1:
            return np.array(x, dtype=np.float32)
        x = np.asarray(x, np.float32)
        h, w = x.shape[1:3]
        inverse = 1.0 / self.factor
        centre = np.array([0, (h - 1) / 2, (w - 1) / 2, 0])
        matrix = np.array([1.0, inverse, inverse, 1.0])
        offset = centre - matrix * centre
        return _clip(_ndimage().affine_transform(x, matrix, offset=offset, order=1, mode="constant"))

    def describe(self):
        return f"scale x{self.factor:g}"

    @property
    def is_identity(self):
        return self.factor == 1


@dataclass(frozen=True, repr=False)
class Brightness(Transform):
    """``clip(x + delta)``."""

    delta: float = 0.0

    def apply(self, x):
        return _clip(np.asarray(x, np.float32) + np.float32(self.delta))

    def describe(self):
        return f"brightness {self.delta:+g}"

    @property
    def is_identity(self):
        return self.delta == 0


@dataclass(frozen=True, repr=False)
class Contrast(Transform):
    """``clip((x - m) * factor + m)``, ``m`` each image's mean per channel (ImageNet-C's contrast)."""

    factor: float = 1.0

    def apply(self, x):
        x = np.asarray(x, np.float32)
        if self.factor == 1:
            return np.array(x)
        means = x.mean(axis=(1, 2), keepdims=True)
        return _clip((x - means) * np.float32(self.factor) + means)

    def describe(self):
        return f"contrast x{self.factor:g}"

    @property
    def is_identity(self):
        return self.factor == 1


@dataclass(frozen=True, repr=False)
class GaussianBlur(Transform):
    """``scipy.ndimage.gaussian_filter`` with ``sigma`` pixels over height and width."""

    sigma: float = 0.0

    def apply(self, x):
        if self.sigma == 0:
            return np.array(x, dtype=np.float32)
        return _clip(_ndimage().gaussian_filter(np.asarray(x, np.float32), sigma=(0, self.sigma, self.sigma, 0)))

    def describe(self):
        return f"gaussian blur sigma {self.sigma:g}"

    @property
    def is_identity(self):
        return self.sigma == 0


@dataclass(frozen=True, repr=False)
class GaussianNoise(Transform):
    """``clip(x + N(0, sigma^2))``, the noise drawn from ``numpy.random.default_rng(seed)``."""

    sigma: float = 0.0
    seed: int = 0

    def apply(self, x):
        x = np.asarray(x, np.float32)
        if self.sigma == 0:
            return np.array(x)
        noise = np.random.default_rng(self.seed).normal(0.0, self.sigma, size=x.shape).astype(np.float32)
        return _clip(x + noise)

    def describe(self):
        return f"gaussian noise sigma {self.sigma:g}"

    @property
    def is_identity(self):
        return self.sigma == 0


@dataclass(frozen=True, repr=False)
class Occlusion(Transform):
    """A ``size`` x ``size`` square of ``value`` with its top-left corner at (``row``, ``col``), moved
    inside the image where it would stick out."""

    size: int = 0
    row: int = 0
    col: int = 0
    value: float = 0.0

    def apply(self, x):
        out = np.array(x, dtype=np.float32)
        h, w = out.shape[1:3]
        size = min(self.size, h, w)
        if size > 0:
            row, col = min(max(self.row, 0), h - size), min(max(self.col, 0), w - size)
            out[:, row:row + size, col:col + size, :] = self.value
        return out

    def describe(self):
        return f"occlusion {self.size}px at ({self.row}, {self.col})"

    @property
    def is_identity(self):
        return self.size == 0


@dataclass(frozen=True, repr=False)
class Corruption(Transform):
    """Corruption ``name`` (``corruptions``) at ``severity`` (0: none), its random draws fixed by ``seed``."""

    name: str = "gaussian_noise"
    severity: int = 0
    seed: int = 0

    def apply(self, x):
        return corruptions.corrupt(x, self.name, self.severity, self.seed)

    def describe(self):
        return f"{self.name.replace('_', ' ')} severity {self.severity}"

    @property
    def is_identity(self):
        return self.severity == 0


@dataclass(frozen=True, repr=False)
class Compose(Transform):
    """``a & b``: the parts applied in order."""

    parts: tuple[Transform, ...] = ()

    def apply(self, x):
        out = np.asarray(x, np.float32)
        for part in self.parts:
            out = part.apply(out)
        return np.array(out, dtype=np.float32) if out is x else out

    def describe(self):
        shown = [p.describe() for p in self.parts if not p.is_identity]
        return ", ".join(shown) or "no change"

    def params(self):
        merged: dict[str, Any] = {}
        for part in self.parts:
            merged.update(part.params())
        return merged

    @property
    def is_identity(self):
        return all(p.is_identity for p in self.parts)
