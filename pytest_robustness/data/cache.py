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
import threading
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from . import versions
from .datasets import freeze
from .example_files import write_npz

CACHE_VERSION = 1


class CacheEntryWarning(UserWarning):
    """A cache entry could not be read (truncated by a full disk or a killed copy): it is recomputed."""


PENDING_WRITES = 1  # writes queued behind the one running: then ``put_later`` waits (their arrays stay in memory)


class CacheWriteWarning(UserWarning):
    """A background cache write failed (a full disk): the entry is missing and will be recomputed."""


class ArrayCache:
    def __init__(self, directory: Path, mode: str = "readwrite"):
        self.directory = Path(directory)
        self.mode = mode
        self.hits = 0
        self.misses = 0
        self._writer: ThreadPoolExecutor | None = None
        self._pending: dict[str, Future] = {}
        self._slots = threading.BoundedSemaphore(PENDING_WRITES + 1)

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
        self._wait_for(key)
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

    def put_later(self, key: str, compress: bool = False, **arrays: np.ndarray) -> None:
        """``put`` on a writer thread: deflating a batch of 224x224 perturbations takes as long as crafting it
        (zlib runs without the GIL), so the next batch is crafted meanwhile. The arrays must not change (they are
        frozen). At most ``PENDING_WRITES`` wait; ``get`` of a pending key and ``flush`` wait for it."""
        if not self.writable:
            return
        self._slots.acquire()
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="robustness-cache")
        future = self._writer.submit(self.put, key, compress, **arrays)
        self._pending[key] = future
        future.add_done_callback(lambda _: self._slots.release())

    def _wait_for(self, key: str) -> None:
        future = self._pending.pop(key, None)
        if future is not None:
            self._report(future)

    @staticmethod
    def _report(future: Future) -> None:
        exc = future.exception()
        if exc is not None:
            warnings.warn(CacheWriteWarning(f"pytest-robustness: a cache entry could not be written "
                                            f"({type(exc).__name__}: {str(exc)[:120]}); it will be recomputed"),
                          stacklevel=3)

    def flush(self) -> None:
        """Wait for every background write (the session's end), reporting any that failed."""
        pending, self._pending = self._pending, {}
        for future in pending.values():
            self._report(future)

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
