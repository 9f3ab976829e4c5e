"""Content-addressed on-disk cache of arrays (adversarial examples, patches).

The key is a digest of everything that determines the arrays (model weights
digest, data digest, attack, its code version, parameters, seed, backend) and of
the library versions that computed them (``versions.library_versions``), so a
stale entry can never be served: change any input or upgrade ART, TensorFlow,
Keras or numpy and the key changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from . import versions
from .datasets import freeze
from .example_files import write_npz

CACHE_VERSION = 1


class CacheEntryWarning(UserWarning):
    """A cache entry could not be read (truncated by a full disk or a killed copy): it is recomputed."""


class ArrayCache:
    def __init__(self, directory: Path, mode: str = "readwrite"):
        self.directory = Path(directory)
        self.mode = mode
        self.hits = 0
        self.misses = 0

    @property
    def readable(self) -> bool:
        return self.mode in ("read", "readwrite")

    @property
    def writable(self) -> bool:
        return self.mode in ("write", "readwrite")

    @staticmethod
    def key(*parts: Any) -> str:
        blob = json.dumps([CACHE_VERSION, versions.library_versions(), *parts], sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:32]

    def has(self, key: str) -> bool:
        """Whether ``get(key)`` would find an entry (without reading it)."""
        return self.readable and self._path(key).is_file()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npz"

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        if not self.readable:
            return None
        path = self._path(key)
        try:
            with np.load(path, allow_pickle=False) as npz:
                found = {name: npz[name] for name in npz.files}
        except FileNotFoundError:
            self.misses += 1
            return None
        except Exception as exc:  # noqa: BLE001 - truncated or corrupt (BadZipFile, CRC, EOF, ...): never trusted
            self.misses += 1
            warnings.warn(CacheEntryWarning(f"pytest-robustness: cache entry {path} is unreadable "
                                            f"({type(exc).__name__}: {str(exc)[:120]}); recomputing it"),
                          stacklevel=2)
            return None
        self.hits += 1
        freeze(*found.values())  # served by content: read-only (the arrays and the buffers they view)
        return found

    @contextlib.contextmanager
    def file(self, key: str, name: str, write: Callable[[Path], Any]) -> Iterator[Path]:
        """A content-addressed file (e.g. an artifact to log), written by ``write(path)`` only when missing.

        With the cache off or read-only it is written to a temporary folder, removed on exit.
        """
        if not self.writable:
            with tempfile.TemporaryDirectory(prefix="robustness-") as tmp:
                path = Path(tmp) / name
                write(path)
                yield path
            return
        path = self.directory.parent / "files" / key[:2] / key / name
        if not (self.readable and path.is_file()):
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{name}.{os.getpid()}.tmp")
            write(partial)
            os.replace(partial, path)
        yield path

    def put(self, key: str, compress: bool = False, **arrays: np.ndarray) -> None:
        """Atomic write (temp file + rename), so parallel workers never read half a file; ``compress``:
        deflated (level 1), for arrays that shrink (a perturbation), not for data read on every warm run."""
        if not self.writable:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                if compress:
                    write_npz(handle, **arrays)
                else:
                    np.savez(handle, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
