"""Checks of a data set's arrays before any work: pixel dtype and range, image shapes, labels.

A NaN pixel, a negative one or a test label the training split lacks would not crash the
suite: it would train and report numbers that mean nothing. So each fails at start-up with
one line naming the source, the array, the offending image and what was expected.
"""

from __future__ import annotations

import numpy as np

from ..errors import RobustnessUsageError

PIXELS_EXPECTED = "expected uint8, or floats in [0, 1] or [0, 255]"
CHANNELS = (1, 3, 4)


def _first_image(bad: np.ndarray) -> int:
    """Index of the first image (axis 0) with a True anywhere."""
    return int(np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))[0])


def check_images(where: str, name: str, x: np.ndarray) -> None:
    """(n, h, w[, c]) images with n > 0, c in 1/3/4, and pixels uint8 or finite floats in [0, 255]."""
    if len(x) == 0:
        raise RobustnessUsageError(f"{where}: {name} has no images")
    if x.ndim == 4 and x.shape[-1] not in CHANNELS:
        raise RobustnessUsageError(f"{where}: {name} has shape {x.shape}: {x.shape[-1]} channels; "
                                   f"expected (n, h, w[, c]) with c one of 1, 3, 4")
    if x.dtype == np.uint8:
        return
    if not np.issubdtype(x.dtype, np.floating):
        raise RobustnessUsageError(f"{where}: {name} has dtype {x.dtype}; {PIXELS_EXPECTED}")
    finite = np.isfinite(x)
    if not finite.all():
        raise RobustnessUsageError(f"{where}: {name} has NaN or infinite pixels (first in image "
                                   f"{_first_image(~finite)}); {PIXELS_EXPECTED}")
    low, high = float(x.min()), float(x.max())
    if low < 0:
        raise RobustnessUsageError(f"{where}: {name} has negative pixels (min {low:g}, first in image "
                                   f"{_first_image(x < 0)}); {PIXELS_EXPECTED}")
    if high > 255:
        raise RobustnessUsageError(f"{where}: {name} has pixels above 255 (max {high:g}, first in image "
                                   f"{_first_image(x > 255)}); {PIXELS_EXPECTED}")


def check_same_image_shape(where: str, x_train: np.ndarray, x_test: np.ndarray) -> None:
    def image_shape(x):
        return tuple(x.shape[1:]) if x.ndim == 4 else (*x.shape[1:], 1)

    if image_shape(x_train) != image_shape(x_test):
        raise RobustnessUsageError(f"{where}: x_train images are {image_shape(x_train)} but x_test images are "
                                   f"{image_shape(x_test)} (height, width, channels); expected one image shape")


def integer_labels(where: str, name: str, y: np.ndarray) -> np.ndarray:
    """Class indices from integer labels (or integral floats) or one-hot rows."""
    if y.ndim == 2:
        hot = (y == 1).sum(axis=1)
        if not (np.isin(y, (0, 1)).all() and (hot == 1).all()):
            bad = int(np.flatnonzero(~(np.isin(y, (0, 1)).all(axis=1) & (hot == 1)))[0])
            raise RobustnessUsageError(f"{where}: {name} is 2-D but row {bad} is not one-hot; "
                                       f"expected integer labels or one-hot rows")
        return y.argmax(axis=1).astype(np.int64)
    if y.ndim != 1:
        raise RobustnessUsageError(f"{where}: {name} has shape {y.shape}; expected integer labels (n,) or one-hot (n, k)")
    if y.dtype == np.bool_ or not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise RobustnessUsageError(f"{where}: {name} has dtype {y.dtype}; expected integer labels")
    if np.issubdtype(y.dtype, np.floating):
        integral = np.isfinite(y) & (y == np.round(y))
        if not integral.all():
            bad = int(np.flatnonzero(~integral)[0])
            raise RobustnessUsageError(f"{where}: {name} has a non-integer label {y[bad].item()!r} (image {bad}); "
                                       f"expected integer class indices")
    if len(y) and y.min() < 0:
        bad = int(np.flatnonzero(y < 0)[0])
        raise RobustnessUsageError(f"{where}: {name} has a negative label {y[bad].item()!r} (image {bad}); "
                                   f"expected class indices 0, 1, ...")
    return y.astype(np.int64)


def check_test_labels_known(where: str, y_train: np.ndarray, y_test: np.ndarray) -> None:
    """Every test label is a class the model was trained on."""
    known = np.unique(y_train)
    unknown = ~np.isin(y_test, known)
    if unknown.any():
        bad = int(np.flatnonzero(unknown)[0])
        shown = ", ".join(str(v) for v in known[:20]) + (", ..." if len(known) > 20 else "")
        raise RobustnessUsageError(f"{where}: y_test has label {int(y_test[bad])} (image {bad}), which y_train "
                                   f"does not have (training labels: {shown})")
