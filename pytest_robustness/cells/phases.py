"""Where a cell's wall time goes, by phase (craft, score, log, probe, train, read): the benchmark reads them back
from each test's ``robustness.seconds.*`` tags."""

from __future__ import annotations

import contextlib
import time


class PhaseTimer:
    """Wall time per phase of one cell; model training a phase triggered counts as ``train``."""

    def __init__(self, session):
        self.session = session
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def timed(self, phase: str):
        started, trained = time.perf_counter(), self.session.training_seconds
        try:
            yield
        finally:
            trained = self.session.training_seconds - trained
            self.add(phase, time.perf_counter() - started - trained)
            if trained:
                self.add("train", trained)

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds
