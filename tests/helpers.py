"""Helpers for the plugin's tests: the tiny suites, a view of a real MLflow store, in-process runs.

Fixtures that use them live in ``conftest.py``; test modules import these names
from here (``conftest`` itself is not importable reliably: the repository root
has one too).
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

EXPERIMENT = "mnist"
MODEL_NAME = "mnist_shallow_net"
TINY_TRAIN = ("--train", "epochs=1", "--train", "samples=600")
# Everything an inner run needs to be quick and quiet. The rewrite warning is an
# artefact of running in process (the outer pytest already imported the plugin).
TINY = ("--architecture", "shallow_net", *TINY_TRAIN, "--samples", "100", "--attack-backend", "art",
        "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")

# A tiny FGM suite: two cells that pass and, with FAIL_FLOOR, one that fails its threshold.
FGM_SUITE = '''
import pytest

from pytest_robustness import attack_cases


@pytest.mark.fgm
@attack_cases("fgm", [dict(norm="inf", eps=0.1), dict(norm="2", eps=1.5, eps_step=0.5, minimal=True)])
def test_fgm(robustness, architecture, params):
    result = robustness.attack("fgm", **params)
    robustness.check(result, clean_accuracy=0.1)
'''

FAILING_SUITE = '''
import pytest


@pytest.mark.fgm
def test_fgm_floor(robustness):
    result = robustness.attack("fgm", eps=0.3)
    robustness.check(result, adversarial_accuracy=0.99, clean_accuracy=0.0)
'''

SESSION_LINE = re.compile(r"MLflow session run (\w+) in experiment")


@dataclass
class Store:
    """A real sqlite MLflow tracking store + registry in a temporary folder."""

    db: Path
    trained: bool = False

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.db}"

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.uri)

    def runs(self, experiment: str = EXPERIMENT):
        """Every run of the experiment, nested ones included."""
        if not self.db.exists():
            return []
        exp = self.client.get_experiment_by_name(experiment)
        return [] if exp is None else self.client.search_runs([exp.experiment_id], max_results=1000)

    def children(self, parent_id: str, experiment: str = EXPERIMENT):
        return [r for r in self.runs(experiment) if r.data.tags.get("mlflow.parentRunId") == parent_id]

    def versions(self, name: str = MODEL_NAME):
        if not self.db.exists():
            return []
        return sorted(self.client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))

    def training_runs(self, experiment: str = EXPERIMENT):
        return [r for r in self.runs(experiment) if r.data.tags.get("robustness.kind") == "training"]

    def download(self, run_id: str, artifact: str, dst: Path) -> Path:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact,
                                                        dst_path=str(dst), tracking_uri=self.uri))


def session_run_id(result: pytest.RunResult) -> str:
    """The session run an inner pytest run reported in its terminal summary."""
    found = SESSION_LINE.search(result.stdout.str())
    assert found, f"no session run in the output:\n{result.stdout.str()}"
    return found.group(1)


def run_robustness(pytester: pytest.Pytester, *args: str, store: Store | None = None, tiny: bool = True,
                   **kwargs) -> pytest.RunResult:
    """An in-process pytest run with the tiny settings and the store's tracking URI."""
    extra = ("--mlflow-uri", store.uri) if store is not None else ()
    return pytester.runpytest(*(TINY if tiny else ()), *extra, *args, **kwargs)


@contextlib.contextmanager
def tmpfs(mount_point: Path, size: str):
    """A real tmpfs of ``size`` at ``mount_point`` (chmod would not stop root; a filesystem does), unmounted on
    exit; the test is skipped where mounting is not allowed."""
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
