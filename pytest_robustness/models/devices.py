"""Which TensorFlow device a test runs on, and GPU set-up for ``--gpu``."""

from __future__ import annotations

import os

from ..errors import RobustnessUsageError


def xdist_worker_index() -> int:
    """0 for ``gw0`` (or no xdist), 1 for ``gw1``, ..."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = worker.lstrip("gw")
    return int(digits) if digits.isdigit() else 0


def require_gpus() -> list:
    """The GPUs TensorFlow sees; for ``--gpu`` without one, a one-line usage error."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        raise RobustnessUsageError(
            "--gpu: TensorFlow sees no GPU (tf.config.list_physical_devices('GPU') is empty); "
            "install pytest-robustness[gpu] on a machine with CUDA, or drop --gpu"
        )
    return gpus


def configure_gpus(use_gpu: bool) -> str:
    """Return the device for this process: ``/GPU:i`` (worker i gets GPU i mod n) or ``/CPU:0``.

    With ``--gpu`` and no visible GPU the plugin has already failed at start-up
    (``require_gpus`` from pytest_configure) rather than silently measuring CPU
    speed. Memory growth lets several workers share a card.
    """
    import tensorflow as tf

    if not use_gpu:
        return "/CPU:0"
    gpus = require_gpus()
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: growth can no longer change
            pass
    return f"/GPU:{xdist_worker_index() % len(gpus)}"
