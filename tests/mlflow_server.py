"""A real ``mlflow server`` on 127.0.0.1 for the plugin's tests: started, stopped, restarted on its store."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

START_S = 120  # a loaded CI machine


def mlflow_executable() -> str | None:
    beside_python = Path(sys.executable).with_name("mlflow")
    return str(beside_python) if beside_python.is_file() else shutil.which("mlflow")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def refuses(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


class MlflowServer:
    """``mlflow server`` with a sqlite store and proxied artifacts in ``root``, on a fixed port."""

    def __init__(self, root: Path, port: int | None = None):
        self.root, self.port = root, port or free_port()
        self.process: subprocess.Popen | None = None
        self.log = root / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "MlflowServer":
        executable = mlflow_executable()
        assert executable, "the `mlflow` executable is not on PATH nor beside this Python"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [executable, "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                 "--backend-store-uri", f"sqlite:///{self.root / 'server.db'}",
                 "--serve-artifacts", "--artifacts-destination", str(self.root / "artifacts")],
                cwd=self.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                # no job runner (its huey consumers are a dozen processes these tests never use)
                env={**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
                     "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        deadline = time.monotonic() + START_S
        try:
            while True:
                assert self.process.poll() is None, f"mlflow server exited:\n{self.log.read_text()[-3000:]}"
                try:
                    if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                        return self
                except requests.RequestException:
                    pass
                assert time.monotonic() < deadline, f"mlflow server not healthy:\n{self.log.read_text()[-3000:]}"
                time.sleep(0.3)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM the server's process group (uvicorn and its job runner), SIGKILL what is left."""
        if self.process is None:
            return
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(wait)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        self.process = None
