"""The one exception type users see for bad input: a single line naming what was wrong."""

from __future__ import annotations

import pytest


class RobustnessUsageError(pytest.UsageError):
    """Bad option, file or parameter value, raised before any long work starts.

    Subclassing ``pytest.UsageError`` makes pytest print the message as one line
    (``ERROR: ...``) instead of a traceback, and exit with the usage-error code.
    """
