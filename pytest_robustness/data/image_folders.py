"""Dioptra image folders as they come: ``training/<class>/...`` and ``testing/<class>/...``.

Classes are the sub-folders, ordered as Keras' ``image_dataset_from_directory`` orders them
(plain sorted names, hidden folders skipped), so class index i means what it means in the
user's Keras training job. Every file Pillow can open is an image (PNG, JPEG, BMP, GIF,
TIFF, WebP, ...), found recursively under its class folder in Keras' order. Images are
decoded to one channel layout: grey when every image is grey, else RGB (alpha dropped,
palettes expanded); ``--image-size H,W,C`` resizes every image and sets the channels.

A folder's identity for caching is its listing: relative paths, byte sizes and modification
times, so any changed, added or removed file changes the key.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import RobustnessUsageError

SPLITS = ("training", "testing")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
CHANNEL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
PROGRESS_SECONDS = 5.0  # at most one progress line this often while a folder is read

log = logging.getLogger("pytest_robustness")


def image_suffixes() -> frozenset[str]:
    """File endings of every format Pillow can open (not only save)."""
    from PIL import Image

    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


@dataclass(frozen=True)
class FolderListing:
    root: Path
    class_names: tuple[str, ...]
    files: dict[str, list[tuple[Path, int]]]  # split -> (file, class index), in Keras' order
    fingerprint: str  # relative paths, sizes and mtimes of every image file

    @property
    def count(self) -> int:
        return sum(len(items) for items in self.files.values())


def class_folders(split_dir: Path) -> list[str]:
    """Keras' order: ``sorted(os.listdir(...))``, directories only, no hidden ones."""
    return [name for name in sorted(os.listdir(split_dir))
            if not name.startswith(".") and (split_dir / name).is_dir()]


def _image_files(class_dir: Path, suffixes: frozenset[str]) -> list[Path]:
    """Keras' ``iter_valid_files`` order: folders sorted by path, files by name; hidden files skipped."""
    found = []
    for folder, _, names in sorted(os.walk(class_dir), key=lambda walked: walked[0]):
        found += [Path(folder, n) for n in sorted(names)
                  if not n.startswith(".") and os.path.splitext(n)[1].lower() in suffixes]
    return found


def check_layout(root: Path, option: str = "--dataset") -> None:
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            raise RobustnessUsageError(f"{option} {root}: missing folder {split_dir} "
                                       "(expected training/<label>/*.png and testing/<label>/*.png)")
        if not class_folders(split_dir):
            raise RobustnessUsageError(f"{option} {root}: {split_dir} has no <label> sub-folders")


def list_folder(root: Path, option: str = "--dataset") -> FolderListing:
    """The folder's classes and image files, checked: layout, testing classes known to training, files present."""
    check_layout(root, option)
    class_names = class_folders(root / "training")
    unknown = [name for name in class_folders(root / "testing") if name not in class_names]
    if unknown:
        shown = ", ".join(class_names[:20]) + (", ..." if len(class_names) > 20 else "")
        raise RobustnessUsageError(f"{option} {root}: testing labels {unknown} do not exist under training/ "
                                   f"(training classes: {shown})")
    suffixes = image_suffixes()
    files: dict[str, list[tuple[Path, int]]] = {}
    fingerprint = hashlib.sha256()
    for split in SPLITS:
        split_dir = root / split
        files[split] = []
        for name in class_folders(split_dir):
            label = class_names.index(name)
            for path in _image_files(split_dir / name, suffixes):
                stat = path.stat()
                fingerprint.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\0{label}\n".encode())
                files[split].append((path, label))
        if not files[split]:
            raise RobustnessUsageError(f"{option} {root}: no image files under {split_dir} "
                                       f"(expected files Pillow reads, e.g. .png, .jpg, .bmp)")
    return FolderListing(root, tuple(class_names), files, fingerprint.hexdigest()[:32])


def _is_grey(image) -> bool:
    if image.mode in GREY_MODES:
        return True
    if image.mode in ("P", "PA"):
        palette = np.frombuffer(image.palette.tobytes(), dtype=np.uint8)
        if image.palette.mode == "RGB" and len(palette) % 3 == 0:
            rgb = palette.reshape(-1, 3)
            return bool((rgb == rgb[:, :1]).all())
    return False


def _open(path: Path, option: str):
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise RobustnessUsageError(f"{option}: {path} is not a readable image ({exc})") from None


def _decode(image, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """One image as uint8 HWC in ``mode``; 16-bit grey scaled to 8 bits, not clipped."""
    from PIL import Image

    if image.mode.startswith("I;16") or image.mode == "I":
        pixels = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(pixels / 257.0 + 0.5, 0, 255).astype(np.uint8), "L")
    converted = image.convert(mode)
    if size is not None and converted.size != size:
        converted = converted.resize(size, Image.BILINEAR)
    pixels = np.asarray(converted, dtype=np.uint8)
    return pixels[..., None] if pixels.ndim == 2 else pixels


def same_size(first: tuple[Path, tuple[int, int]] | None, path: Path, image, root: Path,
              option: str) -> tuple[Path, tuple[int, int]]:
    """The first image and its size, checked against ``image`` (without ``--image-size`` one size only)."""
    if first is None:
        return path, image.size
    if image.size != first[1]:
        raise RobustnessUsageError(
            f"{option} {root}: images of different sizes: {first[0]} is "
            f"{first[1][1]}x{first[1][0]} and {path} is {image.size[1]}x{image.size[0]} (height x width); "
            f"give --image-size H,W,C to resize them")
    return first


def decode_checked(image, path: Path, mode: str, size: tuple[int, int] | None, option: str) -> np.ndarray:
    """``_decode``, a file truncated after its header failing in one line naming it."""
    try:
        return _decode(image, mode, size)
    except (OSError, ValueError, SyntaxError) as exc:
        raise RobustnessUsageError(f"{option}: {path} is not a readable image ({exc})") from None


class ReadProgress:
    """``read N/M images`` at most every PROGRESS_SECONDS, and a last line if any was shown.

    Folders are read at start-up, before pytest's terminal reporter exists (so not through
    :mod:`progress`): the lines go to stderr, and to the ``pytest_robustness`` logger.
    """

    def __init__(self, what: str, total: int, write: Callable[[str], None] | None = None):
        self.what, self.total = what, total
        self.write = write or (lambda line: print(line, file=sys.stderr, flush=True))
        self.started = self.last = time.perf_counter()
        self.shown = False

    def step(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.last >= PROGRESS_SECONDS:
            self.last, self.shown = now, True
            self._say(f"read {done}/{self.total} images of {self.what}")

    def finish(self) -> None:
        if self.shown or time.perf_counter() - self.started >= PROGRESS_SECONDS:
            self._say(f"read {self.total} images of {self.what} in {time.perf_counter() - self.started:.1f} s")

    def _say(self, text: str) -> None:
        log.info(text)
        self.write(f"[robustness] {text}")


def read_folder(listing: FolderListing, image_size: tuple[int, int, int] | None = None,
                option: str = "--dataset") -> dict[str, np.ndarray]:
    """Every image decoded (uint8), checked: readable, one size unless ``image_size`` resizes them.

    Returns x_training, y_training, x_testing, y_testing.
    """
    items = [(split, path, label) for split in SPLITS for path, label in listing.files[split]]
    if image_size is not None:
        height, width, channels = image_size
        mode, size = CHANNEL_MODES[channels], (width, height)
    else:
        mode, size = None, None
    progress = ReadProgress(str(listing.root), len(items))
    decoded: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    first: tuple[Path, tuple[int, int]] | None = None
    for done, (split, path, _) in enumerate(items, 1):
        with _open(path, option) as image:
            if image_size is None:
                first = same_size(first, path, image, listing.root, option)
            # without --image-size: each image in its own layout (grey or RGB), unified below
            decoded[split].append(decode_checked(image, path, mode or ("L" if _is_grey(image) else "RGB"), size,
                                                 option))
        progress.step(done)
    progress.finish()
    if mode is None and any(a.shape[-1] == 3 for arrays in decoded.values() for a in arrays):
        decoded = {split: [np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a for a in arrays]
                   for split, arrays in decoded.items()}
    out = {}
    for split in SPLITS:
        out[f"x_{split}"] = np.stack(decoded[split])
        out[f"y_{split}"] = np.array([label for _, label in listing.files[split]], dtype=np.int64)
    return out
