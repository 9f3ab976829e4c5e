"""The control of a patch cell: a random-noise patch of the same size, deployed the same way.

A patch covering a third of a digit hurts accuracy whatever it shows: occlusion
is not an attack. Every patch cell therefore also deploys a control, a patch of
uniform noise with the adversarial patch's shape, through the very same seeded
deployment (same images, scale, rotation and placement: ``deploy_patches`` draws
its transforms from the seed in the same order for any patch content), and logs

- ``control_accuracy``, ``control_targeted_success_rate``: the control's numbers;
- ``accuracy_below_control`` = control_accuracy - adversarial_accuracy and
  ``targeted_success_over_control`` = targeted_success_rate - control_targeted_success_rate:
  what the optimisation adds over occlusion (what the shipped patch cells assert).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from . import metrics as m
from .datasets import content_digest

CONTROL_VERSION = 1
CONTROL_METRICS = ("control_accuracy", "control_targeted_success_rate", "accuracy_below_control",
                   "targeted_success_over_control")


def control_patches(patches: np.ndarray, seed: int) -> np.ndarray:
    """Uniform noise in [0, 1] with the patches' shape, drawn from the seed."""
    return np.random.default_rng([seed, 13]).uniform(0.0, 1.0, size=np.shape(patches)).astype(np.float32)


def control_metrics(memoised: Callable[[tuple, Callable[[], dict]], dict], score_memo, spec, patches: np.ndarray,
                    x: np.ndarray, y: np.ndarray, resolved: Mapping[str, Any], seed: int, classifier,
                    target: int | None, values: Mapping[str, float]) -> dict[str, float]:
    """The control's metrics for a patch cell whose adversarial metrics are ``values``.

    ``memoised`` (the session's) keeps the control deployment, ``score_memo`` (the
    classifier's) its predictions: a warm re-run computes nothing.
    """
    from .session import predict_in_batches

    deploy = tuple(sorted((k, resolved[k]) for k in spec.deploy_params))
    shape = tuple(np.shape(patches))

    def deployed() -> dict[str, np.ndarray]:
        done = spec.deploy(control_patches(patches, seed), x, resolved, seed)
        return {"x": done.x, "source_index": done.source_index, "modified": done.modified}

    arrays = memoised(("patch_control", CONTROL_VERSION, shape, seed, deploy, content_digest(x)), deployed)

    def measure() -> dict[str, np.ndarray]:
        predicted = predict_in_batches(classifier, arrays["x"], 256).argmax(1)
        y_adv, modified = y[arrays["source_index"]], arrays["modified"]
        out = {"control_accuracy": m.accuracy(y_adv, predicted)}
        if target is not None:
            out["control_targeted_success_rate"] = m.targeted_success_rate(y_adv[modified], predicted[modified],
                                                                           int(target))
        return {"names": np.array(list(out)), "values": np.array(list(out.values()), dtype=np.float64)}

    parts = score_memo(("control_score", CONTROL_VERSION, content_digest(arrays["x"]), content_digest(y), target),
                       measure)
    out = {str(k): float(v) for k, v in zip(parts["names"], parts["values"])}
    out["accuracy_below_control"] = out["control_accuracy"] - values["adversarial_accuracy"]
    if "control_targeted_success_rate" in out and "targeted_success_rate" in values:
        out["targeted_success_over_control"] = values["targeted_success_rate"] - out["control_targeted_success_rate"]
    return out


__all__ = ["CONTROL_METRICS", "control_metrics", "control_patches"]
