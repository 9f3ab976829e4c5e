"""The session's background writer: a cell's slow MLflow work runs on one ordered worker thread.

At 224x224 a cell's records take seconds to write: its ``adversarial_examples.npz`` compressed, its
pictures drawn, the upload of its artifacts and the end of its run. The verdict and the JUnit
properties need none of it, so ``Tracker`` hands that work to a ``Writer``: one daemon thread per
session, which runs the jobs in the order they were submitted (a run's artifacts before its end),
while the main thread goes on to the next cell.

Why not MLflow's own ``synchronous=False``: its queues batch params and metrics (already one
``log_batch`` per run here) and log artifacts from a thread pool with no order between them and the
end of the run, and a failed operation is logged, then raised only to whoever waits on it. Here a
run's status is set only after its artifacts are written, and a job that fails goes through the
tracker's fault path (the run ends FAILED with ``robustness.logging_error`` where the store answers;
a job writing one of its files leaves the line in ``failed`` for the run's end) and leaves a line in
``faults``, which the session reports at its end (never swallowed).

``synchronous``: every job runs at once in the caller (``--robustness-sync-logging``, for debugging).
The session drains the writer before it ends its runs (``Tracker.drain``); once interrupted, with a
deadline, after which the jobs still queued are dropped and reported (``abandon``).
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

MAX_QUEUED = 16  # jobs waiting at most: a cell that would queue more waits (each holds its arrays)
POLL_S = 0.5
# After a signal or Ctrl-C, how long the session still waits for the writer: two thirds of the grace period
# ``plugin.interruption`` gives the whole end of the session.
AFTER_INTERRUPTION_S = 20.0


@dataclass
class Job:
    run_id: str | None
    label: str  # what it writes, e.g. "adversarial_examples.npz of test_fgm[...]"
    work: Callable[[], None]
    ends_run: bool = False  # the run's end: its fault is the session's to report
    done: threading.Event = field(default_factory=threading.Event)


def describe(exc: BaseException) -> str:
    """One line: a ``TrackingFault``'s message, else the exception's type and text."""
    text = getattr(exc, "msg", None) or f"{type(exc).__name__}: {exc}"
    return " ".join(str(text).split())


class Writer:
    """An ordered queue of jobs and the one thread that runs them."""

    def __init__(self, synchronous: bool = False, name: str = "robustness-writer"):
        self.synchronous = synchronous
        self.name = name
        self.faults: list[str] = []  # a line per job that failed on the thread (read by the session's end)
        self.failed: dict[str, str] = {}  # run -> what a job of it could not write: its end says so (FAILED)
        self._jobs: collections.deque[Job] = collections.deque()
        self._running: Job | None = None
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, run_id: str | None, label: str, work: Callable[[], None], ends_run: bool = False) -> None:
        """Run ``work`` after every job submitted before it; at once (raising) when synchronous or closed."""
        if self.synchronous or self._closed:
            work()
            return
        with self._changed:
            while len(self._jobs) >= MAX_QUEUED and self._alive():
                self._changed.wait(0.5)
            self._jobs.append(Job(run_id, label, work, ends_run))
            if not self._alive():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def pending(self, run_id: str | None = None) -> list[Job]:
        """Jobs not done yet (of ``run_id``, or all): the one running first, then the queue in order."""
        with self._changed:
            jobs = ([self._running] if self._running is not None else []) + list(self._jobs)
        return [job for job in jobs if run_id is None or job.run_id == run_id]

    def wait(self, run_id: str | None = None, timeout: float | None = None) -> bool:
        """Until every job (of ``run_id``) submitted so far is done; False if ``timeout`` came first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for job in self.pending(run_id):
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if not job.done.wait(left):
                return False
        return True

    def cancel(self) -> list[Job]:
        """Drop the jobs still queued (not the one running) and return them, e.g. at an interruption's deadline."""
        with self._changed:
            dropped = list(self._jobs)
            self._jobs.clear()
            self._changed.notify_all()
        for job in dropped:
            job.done.set()
        return dropped

    def abandon(self) -> dict[str | None, list[str]]:
        """Drop the jobs queued; what each run still had unwritten (running or queued), by run."""
        unwritten: dict[str | None, list[str]] = {}
        for job in [*self.pending(), *self.cancel()]:
            labels = unwritten.setdefault(job.run_id, [])
            labels += [job.label] if job.label not in labels else []
        self.faults += [self.failed.pop(run_id) for run_id in unwritten if run_id in self.failed]  # no end to say it
        return unwritten

    def close(self, interrupted: Callable[[], bool] = lambda: False) -> bool:
        """Wait for the queue, then stop the thread; later jobs run in the caller. Once ``interrupted()`` (a
        signal, Ctrl-C; also a Ctrl-C while waiting) it waits ``AFTER_INTERRUPTION_S`` more at most: False if
        jobs were left. Once closed, True at once: what was left then was reported then (``abandon``)."""
        if self._closed:
            return True
        deadline = None
        try:
            while not self.wait(timeout=POLL_S):
                if deadline is None and interrupted():
                    deadline = time.monotonic() + AFTER_INTERRUPTION_S
                if deadline is not None and time.monotonic() >= deadline:
                    break
        except KeyboardInterrupt:
            pass
        finished = not self.pending()
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        if finished and self._thread is not None:
            self._thread.join(POLL_S)
        return finished

    @property
    def closed(self) -> bool:
        return self._closed

    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            with self._changed:
                while not self._jobs and not self._closed:
                    self._changed.wait()
                if not self._jobs:
                    return
                job = self._running = self._jobs.popleft()
                self._changed.notify_all()
            try:
                job.work()
            except BaseException as exc:  # noqa: BLE001 - reported by its run's end, or the session's
                line = f"{job.label}: {describe(exc)}"
                if job.run_id is None or job.ends_run or job.run_id in self.failed:
                    self.faults.append(line)
                else:
                    self.failed[job.run_id] = line
            finally:
                with self._changed:
                    self._running = None
                    job.done.set()
                    self._changed.notify_all()
