"""Shared helpers for the plugin's own tests.

Plugin behaviour is driven with ``pytester`` *in process*: pytester restores
``sys.modules`` after each inner run, and TensorFlow cannot be imported twice in
one process, so the heavy stack is imported here once, before any inner run.

One tiny model (shallow_net, 1 epoch on 600 images) is trained and registered
once per test session in a shared sqlite MLflow store (``trained_store``);
tests that need a registered model point ``--mlflow-uri`` at it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import warnings  # noqa: E402

with warnings.catch_warnings():  # ART's "PyTorch not found", at import time
    warnings.simplefilter("ignore", UserWarning)
    import art.attacks.evasion  # noqa: F401
    import art.estimators.classification  # noqa: F401
import keras  # noqa: E402,F401
import mlflow  # noqa: E402
import mlflow.tensorflow  # noqa: E402,F401
import pytest  # noqa: E402
import sklearn.metrics  # noqa: E402,F401
import tensorflow  # noqa: E402,F401
from mlflow.tracking import MlflowClient  # noqa: E402

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


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A fresh, empty store of this test's own."""
    return Store(tmp_path / "mlflow" / "mlflow.db")


@pytest.fixture(scope="session")
def _shared_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store(tmp_path_factory.mktemp("shared-mlflow") / "mlflow.db")


@pytest.fixture
def trained_store(pytester: pytest.Pytester, _shared_store: Store) -> Store:
    """The shared store, with mnist_shallow_net trained and registered by the tiny FGM suite (once)."""
    if not _shared_store.trained:
        suite = pytester.makepyfile(train_once_suite=FGM_SUITE)
        result = run_robustness(pytester, str(suite), store=_shared_store)
        suite.unlink()
        result.assert_outcomes(passed=2)
        _shared_store.trained = True
    return _shared_store
