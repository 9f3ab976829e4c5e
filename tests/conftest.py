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
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import warnings  # noqa: E402

with warnings.catch_warnings():  # ART's "PyTorch not found", at import time
    warnings.simplefilter("ignore", UserWarning)
    import art.attacks.evasion  # noqa: F401
    import art.estimators.classification  # noqa: F401
import keras  # noqa: E402,F401
import mlflow  # noqa: E402,F401
import mlflow.tensorflow  # noqa: E402,F401
import pytest  # noqa: E402
import sklearn.metrics  # noqa: E402,F401
import tensorflow  # noqa: E402,F401

from helpers import FGM_SUITE, Store, run_robustness  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _import_mlflow_sqlite_stack(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Touch a sqlite store once out here, so SQLAlchemy is imported before any inner run.

    An inner run would otherwise import it, pytester would drop it from
    ``sys.modules`` afterwards, and the next import breaks SQLAlchemy's compiled
    extensions ("'InternalTraversal' object is not callable").
    """
    warm = Store(tmp_path_factory.mktemp("warm-up") / "mlflow.db")
    client = warm.client
    run = client.create_run(client.create_experiment("warm-up"))
    client.set_terminated(run.info.run_id)
    client.create_registered_model("warm-up")
    client.search_model_versions("name = 'warm-up'")


@pytest.fixture(autouse=True)
def _no_inherited_tracking_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    """``mlflow.set_tracking_uri`` (which every inner session calls) also sets $MLFLOW_TRACKING_URI,
    which the plugin's default honours: keep one test's store from leaking into the next."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # On GitHub Actions every inner run would append its summary table to this job's own summary.
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


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
