"""Is the tracking server there? A start-up probe, and what a session does when it goes away.

MLflow retries a failed HTTP request for about four minutes (7 retries, backoff
factor 2): right for riding out rate limits, wrong for a server that is not
there, where every test would wait minutes before saying so. So:

- at start-up one request with a short timeout and no retries (``probe``) says
  whether an ``http(s)`` tracking URI answers, and what failed if not;
- the session's own MLflow calls run with bounded retries (``guard``; a user's
  own ``MLFLOW_HTTP_REQUEST_*`` settings win), and once a call finds the server
  not answering, the server is marked gone: later calls fail at once with one
  line (``TrackingUnavailable``) instead of retrying, and a quick re-probe every
  few seconds notices when it is back.

Results never depend on the server: JUnit properties and the disk cache are
written before any MLflow write, so a re-run logs what a fault lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator

import pytest
import requests

from ..errors import RobustnessUsageError

DEFAULT_TIMEOUT_S = 5.0
# The session's own calls: ~6-8 s of retries (urllib3 sleeps 0, 2, 4 s) instead of MLflow's ~4 minutes.
BOUNDED_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                   "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
RECHECK_S = 5.0  # while the server is gone, probe again at most this often
PROBE_ENDPOINT = "/api/2.0/mlflow/experiments/search"


class TrackingFault(pytest.fail.Exception):
    """MLflow could not take what a test produced. One line, no traceback: the test's numbers are
    already in the JUnit XML and the cache, and a re-run logs them."""

    def __init__(self, message: str):
        super().__init__(message, pytrace=False)


class TrackingUnavailable(TrackingFault):
    """The tracking server does not answer (refused, timed out, unreachable)."""


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


# -- what failed ----------------------------------------------------------------------------------
def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def transport_failure(exc: BaseException) -> str | None:
    """'connection refused', 'timed out', ... when ``exc`` (or what caused it) is the server not
    answering; None for anything else (an answer the server gave, a local error)."""

    for link in _chain(exc):
        if isinstance(link, requests.exceptions.RetryError):
            return None  # the server answered, with errors (e.g. 500 after retries): not gone
        if isinstance(link, requests.exceptions.Timeout):
            return "timed out"
        if isinstance(link, requests.exceptions.SSLError):
            return f"TLS error ({_innermost(link)})"
        if isinstance(link, requests.exceptions.ConnectionError):
            text = str(link)
            if "Connection refused" in text:
                return "connection refused"
            if "Name or service not known" in text or "NameResolutionError" in text or "nodename nor servname" in text:
                return "host name not resolved"
            if "timed out" in text:
                return "timed out"
            return f"connection failed ({_innermost(link)})"
    return None


def _innermost(exc: BaseException) -> str:
    text = str(exc)
    return text.rsplit(": ", 1)[-1].rstrip("')\"") if ": " in text else text


# -- the probe ------------------------------------------------------------------------------------
def probe(uri: str, timeout: float = DEFAULT_TIMEOUT_S) -> str | None:
    """None if an MLflow tracking server answers at ``uri`` within ``timeout`` seconds; else what failed.

    One request, no retries, with MLflow's own credentials and TLS settings."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(get_default_host_creds(uri), PROBE_ENDPOINT, "GET", max_retries=0, backoff_factor=0,
                                backoff_jitter=0, timeout=timeout, raise_on_status=False,
                                params={"max_results": 1})
    except Exception as exc:  # noqa: BLE001 - classified below
        failure = transport_failure(exc)
        return failure.replace("timed out", f"no answer within {timeout:g} s") if failure else \
            f"request failed ({str(exc)[:200]})"
    if response.status_code == 200:
        try:
            response.json()
            return None
        except ValueError:
            return f"HTTP 200 from {PROBE_ENDPOINT}, but not JSON: not an MLflow tracking server"
    hint = {401: " (check MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN)",
            403: " (check that MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_TOKEN may use this server; MLflow 3 also "
                 "refuses Host headers not in the server's --allowed-hosts)",
            404: f" (no {PROBE_ENDPOINT}: not an MLflow tracking server)"}.get(response.status_code, "")
    return f"HTTP {response.status_code} {response.reason or ''}".rstrip() + hint


def require_tracking_server(uri: str, timeout: float, source: str = "--mlflow-uri") -> None:
    """Start-up check: the tracking server at ``uri`` answers, else one line naming it and what failed."""
    if not is_http(uri):
        return
    failure = probe(uri, timeout)
    health(uri).gone = failure
    if failure is not None and failure.startswith(("HTTP 401", "HTTP 403")):  # it answered: our credentials
        raise RobustnessUsageError(f"{source} {uri}: the MLflow tracking server refused our request: {failure}")
    if failure is not None:
        raise RobustnessUsageError(f"{source} {uri}: no MLflow tracking server answered: {failure} "
                                   f"(probe timeout {timeout:g} s, --mlflow-timeout)")


# -- the session's view of the server -------------------------------------------------------------
@dataclass
class ServerHealth:
    """One tracking URI as this process sees it: answering, or gone since a call found it so."""

    uri: str
    timeout: float = DEFAULT_TIMEOUT_S
    gone: str | None = None  # what failed, while the server is gone
    checked_at: float = 0.0

    def recheck(self) -> None:
        """While gone, a quick probe (at most every RECHECK_S seconds) to notice the server is back."""
        if self.gone is None or time.monotonic() - self.checked_at < RECHECK_S:
            return
        self.checked_at = time.monotonic()
        failure = probe(self.uri, self.timeout)
        self.gone = None if failure is None else failure

    def unavailable(self, what: str) -> TrackingUnavailable:
        return TrackingUnavailable(f"MLflow tracking server {self.uri} is not answering ({self.gone}): {what}")

    @contextlib.contextmanager
    def guard(self, what: str = "could not log to MLflow") -> Iterator[None]:
        """Run MLflow calls with bounded retries; fail at once, in one line, while the server is gone."""
        if not is_http(self.uri):
            yield
            return
        self.recheck()
        if self.gone is not None:
            raise self.unavailable(what)
        with bounded_retries():
            try:
                yield
            except TrackingFault:
                raise
            except Exception as exc:
                failure = transport_failure(exc)
                if failure is None:
                    raise
                self.gone, self.checked_at = failure, time.monotonic()
                raise self.unavailable(what) from None  # one line: the cause is in it


_HEALTH: dict[str, ServerHealth] = {}


def health(uri: str, timeout: float | None = None) -> ServerHealth:
    """The process's one view of ``uri`` (shared by every client of the session)."""
    found = _HEALTH.setdefault(uri, ServerHealth(uri))
    if timeout is not None:
        found.timeout = timeout
    return found


_RETRIES_LOCK = threading.Lock()
_retries = {"users": 0, "changed": {}, "level": logging.NOTSET}  # shared by the calls inside, on any thread


@contextlib.contextmanager
def bounded_retries() -> Iterator[None]:
    """MLflow reads its retry settings from the environment at each request: bound them for the
    calls inside, unless the user set them. Calls on several threads (the session's writer) share the
    setting, set by the first and removed when the last ends."""
    retry_log = logging.getLogger("urllib3.connectionpool")
    with _RETRIES_LOCK:
        if _retries["users"] == 0:
            changed = {k: v for k, v in BOUNDED_RETRIES.items() if k not in os.environ}
            os.environ.update(changed)
            _retries.update(changed=changed, level=retry_log.level)
            if changed:  # urllib3 warns at each retry; the outcome is reported once, by the caller
                retry_log.setLevel(logging.ERROR)
        _retries["users"] += 1
    try:
        yield
    finally:
        with _RETRIES_LOCK:
            _retries["users"] -= 1
            if _retries["users"] == 0:
                retry_log.setLevel(_retries["level"])
                for key in _retries["changed"]:
                    os.environ.pop(key, None)


class GuardedClient:
    """An ``MlflowClient`` whose every call runs under ``ServerHealth.guard``."""

    def __init__(self, client, timeout: float | None = None):
        self._client = client
        self._health = health(client.tracking_uri, timeout)

    @property
    def health(self) -> ServerHealth:
        return self._health

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute) or name.startswith("_"):
            return attribute

        def call(*args, **kwargs):
            with self._health.guard(f"{name} failed"):
                return attribute(*args, **kwargs)

        return call
