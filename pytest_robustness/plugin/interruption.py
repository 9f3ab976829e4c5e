"""SIGTERM and SIGHUP end a robustness session the way Ctrl-C does: nothing lost, nothing left RUNNING.

CI systems cancel a job with SIGTERM (GitLab, Jenkins, Kubernetes; GitHub Actions after SIGINT), and a
closed terminal sends SIGHUP. Python's default for both is to die at once: no hook runs, the open MLflow
runs stay ``RUNNING`` and pytest never writes the JUnit XML. A :class:`SignalGuard` turns the first such
signal into :class:`Terminated` (a ``KeyboardInterrupt``) in the main thread, so pytest ends the session as
it does on Ctrl-C: fixtures are torn down (the running cell's run ends ``KILLED``), ``pytest_sessionfinish``
runs (junitxml writes the XML, the plugin closes the session run ``KILLED``), and the process exits with
128 + the signal's number (143 for SIGTERM), what a shell reports for a process the signal killed.
The runs it closes carry ``robustness.signal`` (``SIGTERM``).

A step that must not be cut in half (writing a run's records, creating the session run: see
``uninterrupted``) finishes first, then the session ends. Under xdist the controller keeps the properties of
a test whose teardown report never reached it (``before_end``). Never blocked for long: a second signal
kills the process at once (the default action, re-raised), and if the session has not ended ``GRACE_S``
seconds after the first, the process exits with the same status without waiting further (runs it could not
close are closed by the next session on this machine, see ``orphans``).

Only for robustness work, and only where nobody else handles the signal: a process installs the guard when
it opens a robustness session (serial runs and xdist workers), and only for a signal whose handler is still
the default (``nohup``'s ignored SIGHUP, or a handler of the user's, is left alone). An xdist controller runs
no tests; it installs the guard when the session starts, and the guard re-raises the signal with the default
action unless a robustness session is open (a project that does not use the plugin sees what it would
without it). The previous handlers are restored when pytest unconfigures, as junitxml unregisters its
``LogXML``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Callable

import pytest

from ..tracking import uninterrupted

SIGNALS = (signal.SIGTERM, signal.SIGHUP)
GRACE_S = 30.0  # from the first signal to exit at the latest (as Kubernetes waits before its SIGKILL)
SIGNAL_TAG = "robustness.signal"


class Terminated(KeyboardInterrupt):
    """A signal ends the session; pytest handles it as Ctrl-C (``ExitCode.INTERRUPTED``, then its end)."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"{signal.Signals(signum).name}: ending the session as Ctrl-C does")


class SignalGuard:
    """The handlers of one pytest process, and the signal it received (a pytest plugin: see ``install``)."""

    def __init__(self, active: Callable[[], bool] = lambda: True, grace: float = GRACE_S,
                 before_end: Callable[[], None] = lambda: None):
        self.active = active  # is there robustness work to end? (else: what the default would do)
        self.before_end = before_end  # after a signal, first at the session's end (before junitxml writes)
        self.grace = grace
        self.previous: dict[int, object] = {}
        self.received: int | None = None
        self.finishing = False  # the session is ending: a signal now is recorded, not raised
        self._done = threading.Event()

    @property
    def signal_name(self) -> str | None:
        return None if self.received is None else signal.Signals(self.received).name

    def install(self) -> None:
        """Handle each of ``SIGNALS`` whose handler is the default (main thread only; idempotent)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in SIGNALS:
            if signum not in self.previous and signal.getsignal(signum) is signal.SIG_DFL:
                self.previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        """Give back the previous handlers; the session has ended, so the grace period stops counting."""
        self._done.set()
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, previous in self.previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, previous)
        self.previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:  # a second signal: stop now
            self._die(signum)
        if not self.active():  # nothing of ours to end: what the default handler does
            self._die(signum)
        self.received = signum
        threading.Thread(target=self._watchdog, args=(signum,), name="robustness-signal-grace", daemon=True).start()
        if self.finishing:
            return
        if uninterrupted.active():  # e.g. a run's records half written: raised when that step ends
            uninterrupted.defer(Terminated(signum))
            return
        raise Terminated(signum)

    def _watchdog(self, signum: int) -> None:
        if self._done.wait(self.grace):
            return
        _flush()
        sys.stderr.write(f"pytest-robustness: {signal.Signals(signum).name}: the session did not end within "
                         f"{self.grace:g} s; exiting now (runs left open are closed by the next session)\n")
        _flush()
        os._exit(128 + signum)

    @staticmethod
    def _die(signum: int) -> None:
        """The signal's default action, now: the process ends as if no handler had been installed."""
        _flush()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        os._exit(128 + signum)  # not reached for SIGTERM/SIGHUP, whose default is to terminate

    # -- as a pytest plugin -------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session):
        """Around every other plugin's end: a signal during it no longer interrupts it; after it, the
        exit status says which signal ended the session."""
        self.finishing = True
        try:
            if self.received is not None:
                self.before_end()
            return (yield)
        finally:
            if self.received is not None:
                session.exitstatus = 128 + self.received


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
