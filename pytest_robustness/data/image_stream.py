"""A folder's test images read batch by batch: the evaluation set of a data set larger than memory.

An ImageNet validation folder (50,000 images at 224x224x3: 30 GB as float32) cannot be
loaded whole. ``FolderStream`` keeps only the listing (paths and labels) and decodes the
images a cell asks for, ``read(start, stop)``, exactly as ``image_folders.read_folder``
decodes them (same modes, same resize, same scaling to [0, 1]), so a streamed cell and
an in-memory cell see the same numbers.

Which images: every test image, or with ``--samples N`` a seeded, stratified subset
(``stratified_subset``: each class in proportion, in the listing's order), the same rule
the in-memory path applies to a folder (whose listing is sorted by class: its first N
images would be one class).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .image_folders import CHANNEL_MODES, FolderListing, _is_grey, _open, decode_checked, same_size

STREAM_ABOVE_BYTES = 1 << 30  # auto: stream a folder whose evaluation images take more than this as float32
DEFAULT_STREAM_BATCH = 256  # images read, attacked and scored at a time (a multiple of the kernels' batches)
SUBSET_SEED = 20  # --samples' subset of a folder: fixed, so --robustness-seed varies the attacks, not the images


def stratified_subset(labels: np.ndarray, n: int, seed: int = SUBSET_SEED) -> np.ndarray:
    """Sorted positions of ``n`` of ``labels``: per class in proportion (largest remainders first,
    ties to the smaller class index), drawn from ``seed``; all positions when ``n`` covers them."""
    labels = np.asarray(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n / len(labels)
    quota = np.floor(exact).astype(np.int64)
    for i in np.argsort(-(exact - quota), kind="stable")[: n - int(quota.sum())]:
        quota[i] += 1
    rng = np.random.default_rng([seed, 31])
    chosen = [rng.choice(np.flatnonzero(labels == c), size=int(q), replace=False)
              for c, q in zip(classes, quota) if q]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def data_params(source: str, input_shape, class_names) -> dict[str, str]:
    """What a run logs about its data: the source, the image shape and the class names, in label order."""
    return {"dataset": source, "image_shape": ",".join(map(str, input_shape)), "class_names": json.dumps(list(class_names))}


@dataclass(frozen=True)
class DataInfo:
    """What runs log and models need to know of a data set, without its images."""

    name: str
    class_names: tuple[str, ...]
    input_shape: tuple[int, int, int]
    source: str
    digest: str

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def params(self) -> dict[str, str]:
        return data_params(self.source, self.input_shape, self.class_names)


class FolderStream:
    """A folder's test images (or a stratified subset), decoded ``batch`` at a time.

    The constructor reads every header (cheap: no pixels) to check what the in-memory path
    checks at start-up: readable files, one size unless ``image_size`` resizes, grey or RGB.
    """

    def __init__(self, listing: FolderListing, image_size: tuple[int, int, int] | None, samples: int,
                 batch: int, option: str = "--dataset"):
        files = listing.files["testing"]
        labels = np.array([label for _, label in files], dtype=np.int64)
        index = stratified_subset(labels, samples) if samples else np.arange(len(files))
        self.paths = [files[i][0] for i in index]
        self.labels = labels[index]
        self.labels.flags.writeable = False
        self.batch = batch
        self.option = option
        self.mode, self.size, shape = self._scan(listing, image_size)
        self.info = DataInfo(listing.root.name, listing.class_names, shape, str(listing.root),
                             hashlib.sha256(f"{listing.fingerprint}{image_size}{samples}".encode()).hexdigest()[:16])

    def _scan(self, listing: FolderListing, image_size):
        """Mode, resize and image shape, as ``read_folder`` decides them, from the headers of every image
        of the folder (training too: an RGB training image makes the grey test images RGB there)."""
        if image_size is not None:
            height, width, channels = image_size
            return CHANNEL_MODES[channels], (width, height), (height, width, channels)
        first, grey = None, True
        for split_files in listing.files.values():
            for path, _ in split_files:
                with _open(path, self.option) as image:
                    first = same_size(first, path, image, listing.root, self.option)
                    grey = grey and _is_grey(image)
        width, height = first[1]
        return ("L" if grey else "RGB"), None, (height, width, 1 if grey else 3)

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Images ``start:stop`` as float32 in [0, 1], decoded now (``read_folder``'s arithmetic)."""
        return self._decoded(self.paths[start:stop])

    def read_rows(self, index: np.ndarray) -> np.ndarray:
        """Images at positions ``index`` (e.g. the masking probe's stratified sample), decoded now."""
        return self._decoded([self.paths[i] for i in index])

    def _decoded(self, paths: list[Path]) -> np.ndarray:
        pixels = []
        for path in paths:
            with _open(path, self.option) as image:
                pixels.append(decode_checked(image, path, self.mode, self.size, self.option))
        x = np.stack(pixels).astype(np.float32)
        x /= 255.0
        x.flags.writeable = False
        return x


def stream_bytes(listing: FolderListing, image_size: tuple[int, int, int] | None, samples: int,
                 option: str = "--dataset") -> int:
    """The evaluation images' size as float32, from one header (``--stream-batch auto`` decides on it)."""
    n = len(listing.files["testing"])
    n = min(n, samples) if samples else n
    if image_size is not None:
        return n * int(np.prod(image_size)) * 4
    path = listing.files["testing"][0][0]
    with _open(path, option) as image:
        width, height = image.size
    return n * height * width * 3 * 4  # RGB unless every image is grey: the larger bound


__all__ = [
    "DEFAULT_STREAM_BATCH",
    "STREAM_ABOVE_BYTES",
    "DataInfo",
    "FolderStream",
    "stratified_subset",
    "stream_bytes",
]
