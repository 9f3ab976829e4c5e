"""A cell's ``adversarial_examples.npz``: compact, and read back bit for bit by :func:`read_examples`.

At 224x224 RGB one float32 image is 602 KB, and a cell used to log its clean and
adversarial images whole (about 350 MB a cell at 1,000 ImageNet images). The file
keeps the same numbers in less room (a zip of ``.npy`` members, deflated as
``np.savez_compressed`` does):

- ``x_clean_uint8`` where the clean images are exactly the source's 8-bit pixels
  (``uint8 / 255`` in float32, as every uint8 source and folder is read); else ``x_clean``
  in float32;
- ``x_adv_delta``: the adversarial images minus their clean source images in float32
  (mostly zeros for a patch, a few distinct values for FGM: it deflates well), with
  ``x_adv_fix_index``/``x_adv_fix_value`` for the few pixels where ``clean + delta``
  does not round back to the adversarial value exactly;
- ``y_true``; for deployed attacks (patches) ``source_index`` and ``modified``
  (``x_adv[i]`` derives from ``x_clean[source_index[i]]``); and ``kept_index`` when the
  cell kept a seeded sample of its examples (``--keep-examples``): the positions of the
  kept clean images in the cell's evaluation set.

Files written before (``x_clean`` and ``x_adv`` in float32) read the same way.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 3
NPZ_BLOCK = 1 << 20
COMPRESS_LEVEL = 1  # deflate level: zlib's default (6) took 4x longer (5.4 s vs 1.2 s) for 15% fewer bytes on 50 FGM examples at 224x224
UINT8_SCALE = np.float32(255.0)


BLOCK_IMAGES = 64  # images converted at a time: no full-size temporary besides what the file holds


@dataclass(frozen=True)
class Streamed:
    """An array written block by block (``blocks()`` yields it along its first axis), never whole in memory."""

    dtype: Any
    shape: tuple
    blocks: Callable[[], Iterator[np.ndarray]]


def write_npz(path, **arrays) -> None:
    """``np.savez_compressed`` (deflate level ``COMPRESS_LEVEL``), streaming each array's bytes in blocks
    (numpy's writer copies each array whole, ``tobytes``, before compressing it). A value may be a
    :class:`Streamed` array, or a function returning an array, called when its turn comes (after the
    arrays before it are written: fix-ups a streamed array collects)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL,
                         allowZip64=True) as archive:
        for name, array in arrays.items():
            array = array() if callable(array) else array
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                if isinstance(array, Streamed):
                    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(array.dtype)), "fortran_order": False,
                              "shape": tuple(array.shape)}
                    np.lib.format.write_array_header_1_0(member, header)
                    for block in array.blocks():
                        _write_bytes(member, np.ascontiguousarray(block, dtype=array.dtype))
                    continue
                array = np.ascontiguousarray(array)
                np.lib.format.write_array_header_1_0(member, np.lib.format.header_data_from_array_1_0(array))
                _write_bytes(member, array)


def _write_bytes(member, array: np.ndarray) -> None:
    data = memoryview(array.reshape(-1).view(np.uint8)) if array.size else memoryview(b"")
    for start in range(0, len(data), NPZ_BLOCK):
        member.write(data[start:start + NPZ_BLOCK])


def as_uint8(x: np.ndarray) -> np.ndarray | None:
    """``x``'s 8-bit pixels when ``x`` is exactly ``pixels / 255`` in float32, else None (checked block by block)."""
    x = np.asarray(x)
    if x.dtype != np.float32:
        return None
    pixels = np.empty(x.shape, dtype=np.uint8)
    for start in range(0, len(x), BLOCK_IMAGES):
        block = np.ascontiguousarray(x[start:start + BLOCK_IMAGES])
        if block.size and (block.min() < 0 or block.max() > 1):
            return None
        converted = np.rint(block * UINT8_SCALE).astype(np.uint8)
        if not np.array_equal(from_uint8(converted).view(np.uint32), block.view(np.uint32)):
            return None
        pixels[start:start + BLOCK_IMAGES] = converted
    return pixels


def from_uint8(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float32) / UINT8_SCALE


def encode(x_clean: np.ndarray, x_adv: np.ndarray, y_true: np.ndarray, source_index: np.ndarray | None = None,
           modified: np.ndarray | None = None, kept_index: np.ndarray | None = None) -> dict[str, Any]:
    """The members of the file for these examples (see the module's docstring), for :func:`write_npz`."""
    x_clean = np.asarray(x_clean, dtype=np.float32)
    pixels = as_uint8(x_clean)
    out: dict[str, Any] = {"format_version": np.array(FORMAT_VERSION)}
    out.update({"x_clean_uint8": pixels} if pixels is not None else {"x_clean": x_clean})
    out.update(perturbation(x_clean, x_adv, None if source_index is None else np.asarray(source_index)),
               y_true=np.asarray(y_true))
    if source_index is not None:
        out["source_index"] = np.asarray(source_index)
    if modified is not None:
        out["modified"] = np.asarray(modified)
    if kept_index is not None:
        out["kept_index"] = np.asarray(kept_index, dtype=np.int64)
    return out


def perturbation(x: np.ndarray, x_adv: np.ndarray, source_index: np.ndarray | None = None) -> dict[str, Any]:
    """``x_adv`` as its difference from ``x`` (``x[source_index]``) with the exact fix-ups, for
    :func:`write_npz`: the difference streamed block by block, the fix-ups it collects written after it.
    The file and the cache keep adversarial images this way."""
    x_adv = np.asarray(x_adv)
    per_image = int(np.prod(x_adv.shape[1:], dtype=np.int64))
    fix_index: list[np.ndarray] = []
    fix_value: list[np.ndarray] = []

    def blocks() -> Iterator[np.ndarray]:
        for start in range(0, len(x_adv), BLOCK_IMAGES):
            stop = min(start + BLOCK_IMAGES, len(x_adv))
            base = np.asarray(x[start:stop] if source_index is None else x[source_index[start:stop]], dtype=np.float32)
            adv = np.ascontiguousarray(x_adv[start:stop], dtype=np.float32)
            delta = adv - base
            wrong = np.flatnonzero((base + delta).view(np.uint32) != adv.view(np.uint32))
            fix_index.append(wrong.astype(np.int64) + start * per_image)
            fix_value.append(adv.reshape(-1)[wrong])
            yield delta

    def joined(parts: list[np.ndarray], dtype) -> Callable[[], np.ndarray]:
        return lambda: np.concatenate(parts) if parts else np.empty(0, dtype=dtype)

    return {"x_adv_delta": Streamed(np.float32, tuple(x_adv.shape), blocks),
            "x_adv_fix_index": joined(fix_index, np.int64), "x_adv_fix_value": joined(fix_value, np.float32)}


def apply_perturbation(x: np.ndarray, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The adversarial images :func:`perturbation` stored, bit for bit."""
    x_adv = np.asarray(x, dtype=np.float32) + arrays["x_adv_delta"]
    x_adv.reshape(-1)[arrays["x_adv_fix_index"]] = arrays["x_adv_fix_value"]
    return x_adv


def write_examples(path, x_clean, x_adv, y_true, **extra) -> None:
    """The examples file at ``path`` (``extra``: ``source_index``, ``modified``, ``kept_index``)."""
    write_npz(path, **encode(x_clean, x_adv, y_true, **extra))


def decode(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``x_clean`` and ``x_adv`` in float32, exactly as the cell scored them, and the other arrays as stored."""
    out = {k: v for k, v in arrays.items() if not k.startswith(("x_clean", "x_adv")) and k != "format_version"}
    if "x_clean_uint8" in arrays:
        out["x_clean"] = from_uint8(arrays["x_clean_uint8"])
    elif "x_clean" in arrays:
        out["x_clean"] = np.asarray(arrays["x_clean"], dtype=np.float32)
    if "x_adv_delta" in arrays and "x_clean" in out:
        source = out.get("source_index")
        out["x_adv"] = apply_perturbation(out["x_clean"] if source is None else out["x_clean"][source], arrays)
    elif "x_adv" in arrays:
        out["x_adv"] = np.asarray(arrays["x_adv"], dtype=np.float32)
    return out


def read_examples(path: str | Path) -> dict[str, np.ndarray]:
    """A cell's ``adversarial_examples.npz`` (any version) as float32 ``x_clean`` and ``x_adv``, ``y_true``
    and, where present, ``source_index``, ``modified`` and ``kept_index``."""
    with np.load(path, allow_pickle=False) as npz:
        return decode({name: npz[name] for name in npz.files})


AUTO_KEEP_BYTES = 64 << 20  # by default a cell keeps every example while its clean images take at most this


def examples_to_keep(n: int, image_bytes: int, keep: int | None) -> int:
    """How many of a cell's ``n`` clean images its file keeps: ``keep`` (0: all), or by default all
    while they take at most ``AUTO_KEEP_BYTES`` as float32, else as many as fit in it."""
    if keep is None:
        keep = max(1, AUTO_KEEP_BYTES // max(image_bytes, 1))
    return n if keep <= 0 else min(n, keep)


def keep_sample(n: int, keep: int, seed: int) -> np.ndarray | None:
    """Sorted positions of ``keep`` of ``n`` examples drawn from ``seed``; None to keep them all."""
    if keep <= 0 or keep >= n:
        return None
    return np.sort(np.random.default_rng([seed, 20]).choice(n, size=keep, replace=False))


def subset(kept: np.ndarray, x_clean, x_adv, y_true, source_index=None, modified=None) -> dict[str, np.ndarray]:
    """The examples of the kept clean images ``kept``: for a deployed attack, the adversarial rows whose
    source is kept, their ``source_index`` renumbered into the kept images."""
    out = {"x_clean": x_clean[kept], "y_true": y_true[kept], "kept_index": kept}
    if source_index is None:
        out["x_adv"] = x_adv[kept]
        return out
    position = np.full(len(x_clean), -1, dtype=np.int64)
    position[kept] = np.arange(len(kept))
    rows = np.flatnonzero(position[source_index] >= 0)
    out.update(x_adv=x_adv[rows], source_index=position[source_index[rows]], modified=np.asarray(modified)[rows])
    return out


__all__ = ["Streamed", "apply_perturbation", "perturbation", "AUTO_KEEP_BYTES", "FORMAT_VERSION", "decode", "encode", "examples_to_keep", "keep_sample", "read_examples", "subset", "write_examples", "write_npz"]
