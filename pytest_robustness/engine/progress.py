"""Progress lines for long steps (training, adversarial training, patch generation).

A test's output is captured, so a line written while it runs would only show if it
failed; these lines go to the terminal at once, with capture suspended around the
write (the capture manager's ``global_and_fixture_disabled``). Under xdist a worker
has no terminal: its lines go to the ``pytest_robustness`` logger instead.
"""

from __future__ import annotations

import logging
from typing import Callable

import pytest

log = logging.getLogger("pytest_robustness")

Progress = Callable[[str], None]


def log_progress(message: str) -> None:
    log.info(message)


def terminal_progress(config: pytest.Config) -> Progress:
    """Write ``message`` as its own terminal line now (the logger's under xdist or ``-p no:terminal``)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or hasattr(config, "workerinput"):
        return log_progress

    def write(message: str) -> None:
        log.info(message)
        if capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(f"[robustness] {message}")
        else:
            reporter.write_line(f"[robustness] {message}")

    return write
