"""Steps a signal must not cut in half: writing a run's records, creating the session run and its token.

A SIGTERM turned into an exception (``interruption``) lands wherever the main thread is. In the middle of
ending an MLflow run it would leave a finished cell's run ``FAILED`` with half its records; between
creating the session run and writing the file that names it, a run nobody closes. Inside ``section()`` the
signal handler only records what it would raise (``defer``); the section raises it when it ends. The
grace period of ``interruption`` still bounds the wait.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

_depth = 0
_pending: list[BaseException] = []


def active() -> bool:
    """Inside a section: an interruption must wait for its end."""
    return _depth > 0


def defer(exc: BaseException) -> None:
    """Raise ``exc`` when the outermost section ends."""
    if not _pending:
        _pending.append(exc)


@contextlib.contextmanager
def section() -> Iterator[None]:
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending:
            raise _pending.pop()
