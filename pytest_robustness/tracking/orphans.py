"""Runs whose process died without closing them: found by a later session and marked KILLED.

Ctrl-C, failures and normal exits close every run (``Tracker.kill_open_runs``),
but SIGKILL, the OOM killer or a crash inside TensorFlow end a process before
any hook runs, and its runs would stay RUNNING forever. Each run is therefore
tagged with the process that must close it (machine, PID namespace, PID and
the process's start time, so a recycled PID is not mistaken for the owner);
a session on the same machine closes the runs whose owner no longer exists.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from .search import search_runs

OWNER_TAG = "robustness.owner"
CLOSED_TAG = "robustness.closed_by"
_PROC = Path("/proc")


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), None if it is gone."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[19]  # fields after "(comm)" start at field 3


def _machine() -> str | None:
    """This machine and PID namespace: PIDs are only comparable within one."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{socket.gethostname()}/{namespace}"


def owner_tag(pid: int | None = None) -> dict[str, str]:
    """The tag naming ``pid`` (default: this process) as the run's owner; empty where /proc is missing."""
    pid = os.getpid() if pid is None else pid
    machine, started = _machine(), _start_time(pid)
    if machine is None or started is None:
        return {}
    return {OWNER_TAG: f"{machine}/{pid}/{started}"}


def owner_gone(owner: str) -> bool:
    """True when ``owner`` (an ``OWNER_TAG`` value) names a process of this machine that no longer runs;
    False for a live one, another machine's, or an unreadable value."""
    parts = owner.rsplit("/", 2)  # host/namespace, pid, start time
    machine = _machine()
    if machine is None or len(parts) != 3 or parts[0] != machine or not parts[1].isdigit():
        return False
    return _start_time(int(parts[1])) != parts[2]


def close_orphaned_runs(client, experiment_id: str) -> list[str]:
    """Mark KILLED the experiment's RUNNING runs whose owner process on this machine is gone."""
    machine = _machine()
    if machine is None:
        return []
    running = search_runs(client, [experiment_id], "attributes.status = 'RUNNING'")
    closed = []
    for run in running:
        owner = run.data.tags.get(OWNER_TAG, "")
        if not owner_gone(owner):
            continue  # its owner still runs, or is another machine's (or it is untagged)
        pid = owner.rsplit("/", 2)[1]
        client.set_tag(run.info.run_id, CLOSED_TAG, f"a later session: process {pid} ended without closing it")
        client.set_terminated(run.info.run_id, status="KILLED")
        closed.append(run.info.run_id)
    return closed
