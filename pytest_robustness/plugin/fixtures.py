"""Fixtures: settings, dataset, device, registered model, ART classifier and the ``robustness`` cell."""

from __future__ import annotations

from typing import Iterator

import pytest

from ..cells.cell import Robustness
from ..data.datasets import Dataset
from ..engine.session import RobustnessSession
from ..models.registered import RegisteredModel
from ..options.settings import Settings
from .interruption import SIGNAL_TAG
from .robustness_plugin import RobustnessPlugin, phase_reports


@pytest.fixture(scope="session")
def robustness_settings(pytestconfig: pytest.Config) -> Settings:
    """The validated ``--dataset``/``--architecture``/... settings of this run."""
    return RobustnessPlugin.of(pytestconfig).settings


@pytest.fixture(scope="session")
def robustness_session_state(pytestconfig: pytest.Config) -> RobustnessSession:
    """This process's memo of data, models, classifiers and attack examples."""
    return RobustnessPlugin.of(pytestconfig).robustness_session()


@pytest.fixture(scope="session")
def robustness_dataset(robustness_session_state: RobustnessSession) -> Dataset:
    """The selected dataset: float32 images in [0, 1], NHWC, integer labels."""
    return robustness_session_state.dataset


@pytest.fixture(scope="session")
def robustness_device(robustness_session_state: RobustnessSession) -> str:
    """``/CPU:0``, or ``/GPU:i`` with ``--gpu`` (xdist worker i gets GPU i mod n)."""
    return robustness_session_state.device


@pytest.fixture
def registered_model(robustness_session_state: RobustnessSession, architecture: str) -> RegisteredModel:
    """This architecture's registered model: ``--model-uri``, a reused version, or newly trained."""
    return robustness_session_state.model(architecture)


@pytest.fixture
def art_classifier(robustness_session_state: RobustnessSession, architecture: str):
    """The registered model wrapped as an ART ``TensorFlowV2Classifier`` with clip values (0, 1), on its logits
    (``predict`` returns logits; a final softmax is peeled off, see ``models.adapter``)."""
    return robustness_session_state.classifier(architecture)


@pytest.fixture
def robustness(request: pytest.FixtureRequest, robustness_session_state: RobustnessSession,
               robustness_device: str, architecture: str) -> Iterator[Robustness]:
    """One cell of the matrix: run attacks on this architecture's model, log, check thresholds.

    Its nested MLflow run ends FINISHED when the test passed, FAILED when it
    failed, and KILLED when the test never finished (Ctrl-C, SIGTERM, SIGHUP: see ``interruption``).
    """
    cell = Robustness(robustness_session_state, request.node, architecture)
    with robustness_session_state.device_scope():  # tf.device, once TensorFlow is loaded
        yield cell
    if cell.run_id is not None:
        reports = phase_reports(request.node)
        call = reports.get("call")
        failed = any(r.failed for r in reports.values())
        status = "FAILED" if failed else ("FINISHED" if call is not None else "KILLED")
        outcome = "failed" if failed else (call.outcome if call is not None else "interrupted")
        tracker = robustness_session_state.tracker
        signal_name = RobustnessPlugin.of(request.config).guard.signal_name if status == "KILLED" else None
        tracker.set_tags(cell.run_id, {"robustness.outcome": outcome,
                                       **({SIGNAL_TAG: signal_name} if signal_name else {}),
                                       **{f"robustness.seconds.{k}": f"{v:.3f}" for k, v in cell.seconds.items()}})
        tracker.end_run(cell.run_id, status)
