"""Dioptra folders of real-size images, built from what a machine without internet has.

- ``photo_folder``: an ImageNet-style folder (224x224 RGB JPEGs, one folder a class) cut from
  scikit-learn's two sample photographs (``china.jpg``, ``flower.jpg``), jittered in position,
  mirror, brightness and JPEG quality: a self-contained demo, the benchmark's and the tests' data.
- ``fruits360_folder``: any local copy of Fruits360 (``Training/<class>/*.jpg``,
  ``Test/<class>/*.jpg``, 100x100 RGB) laid out as Dioptra's ``training/<class>/``,
  ``testing/<class>/``, optionally limited to some classes and images per class.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import RobustnessUsageError

PHOTO_SIZE = 224
PHOTO_CLASSES = ("china", "flower")
FRUITS360_SPLITS = (("Training", "training"), ("Test", "testing"))
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def photo_folder(root: Path | str, per_class: dict[str, int], size: int = PHOTO_SIZE, seed: int = 0) -> Path:
    """``root/<split>/<class>/*.jpg``: ``per_class[split]`` crops of each sample photograph, ``size`` pixels
    square (at most 427, the photographs' height)."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    root = Path(root)
    photos = dict(zip(PHOTO_CLASSES, load_sample_images().images))
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for name, photo in photos.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            height, width = photo.shape[:2]
            if size >= height:
                raise RobustnessUsageError(f"photo_folder: size {size}: the sample photographs are {height} pixels "
                                           "high; choose a smaller size")
            for i in range(count):
                top, left = rng.integers(0, height - size), rng.integers(0, width - size)
                crop = photo[top:top + size, left:left + size].astype(np.float32)
                crop = crop[:, ::-1] if rng.random() < 0.5 else crop
                crop = np.clip(crop * rng.uniform(0.7, 1.3), 0, 255).astype(np.uint8)
                Image.fromarray(crop).save(folder / f"{name}_{i:05d}.jpg", quality=int(rng.integers(70, 95)))
    return root


def fruits360_folder(source: Path | str, dest: Path | str, classes: Iterable[str] | None = None,
                     max_classes: int | None = None, per_class: int | None = None, copy: bool = False) -> Path:
    """Lay a Fruits360 copy (``Training/``, ``Test/``) out as a Dioptra folder at ``dest``.

    ``classes`` names the classes to keep (default: every class of ``Training/``, in sorted order), of which
    the first ``max_classes``; ``per_class`` keeps the first images (sorted by name) of each class and split.
    Images are hard-linked (no copy of the data set) where the filesystem allows, else copied; ``copy=True``
    always copies. Returns ``dest``.
    """
    source, dest = Path(source), Path(dest)
    for split, _ in FRUITS360_SPLITS:
        if not (source / split).is_dir():
            raise RobustnessUsageError(f"fruits360_folder: {source}: no {split}/ folder; expected Fruits360's "
                                       "layout, Training/<class>/*.jpg and Test/<class>/*.jpg")
    available = sorted(p.name for p in (source / "Training").iterdir() if p.is_dir() and not p.name.startswith("."))
    chosen = list(available if classes is None else classes)
    unknown = [name for name in chosen if name not in available]
    if unknown:
        raise RobustnessUsageError(f"fruits360_folder: class {unknown[0]!r} is not in {source / 'Training'}")
    if max_classes is not None:
        if max_classes < 1:
            raise RobustnessUsageError(f"fruits360_folder: max_classes {max_classes}: expected at least 1")
        chosen = chosen[:max_classes]
    if per_class is not None and per_class < 1:
        raise RobustnessUsageError(f"fruits360_folder: per_class {per_class}: expected at least 1")
    for split, dioptra_split in FRUITS360_SPLITS:
        for name in chosen:
            folder = source / split / name  # a class may lack test images
            images = sorted(p for p in folder.glob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            target = dest / dioptra_split / name
            target.mkdir(parents=True, exist_ok=True)
            for image in images[:per_class]:
                _place(image, target / image.name, copy)
    return dest


def _place(image: Path, target: Path, copy: bool) -> None:
    if target.exists():
        return
    if not copy:
        try:
            os.link(image, target)
            return
        except OSError:  # another filesystem, or links not allowed: copy instead
            pass
    shutil.copyfile(image, target)
