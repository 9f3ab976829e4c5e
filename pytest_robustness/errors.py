"""The one exception type users see for bad input: a single line naming what was wrong."""

from __future__ import annotations

import pytest


class RobustnessUsageError(pytest.UsageError):
    """Bad option, file or parameter value, raised before any long work starts.

    Subclassing ``pytest.UsageError`` makes pytest print the message as one line
    (``ERROR: ...``) instead of a traceback, and exit with the usage-error code.
    """


class NotApplicable(pytest.skip.Exception):
    """A cell that cannot run on its model (e.g. a training-time defense asked of a given model): raised
    inside a test, pytest reports it skipped with this one-line reason instead of failing it."""

    def __init__(self, reason: str):
        super().__init__(reason)
