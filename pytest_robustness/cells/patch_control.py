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

import numpy as np

from ..attacks.patch_deployment import paste, placements
from ..data.datasets import content_digest
from ..metrics import formulas as m
from ..metrics.names import CONTROL_METRICS  # noqa: F401  (re-exported: the names live with the other metrics')
from ..models.predictors import predict_in_batches
from .result import AttackResult
from .scoring import Scorer

CONTROL_VERSION = 2


def control_patches(patches: np.ndarray, seed: int) -> np.ndarray:
    """Uniform noise in [0, 1] with the patches' shape, drawn from the seed."""
    return np.random.default_rng([seed, 13]).uniform(0.0, 1.0, size=np.shape(patches)).astype(np.float32)


BLOCK = 32  # control images pasted and predicted at a time: no copy of the whole deployed set


def control_metrics(result: AttackResult, spec, scorer: Scorer, seed: int) -> dict[str, float]:
    """The control's metrics for a patch cell ``result`` (the adversarial patches are its run's output).

    Only the patched images differ from the clean set, whose predictions are known: the control
    images are pasted and predicted block by block by ``scorer``, whose memo keeps the numbers, so
    a warm re-run computes nothing.
    """
    patches, x, y, clean_pred = result.run.x_adv, result.x_clean, result.y_true, result.clean_predictions
    resolved, values, target = result.params, result.metrics, result.params.get("patch_target")
    classifier, score_memo = scorer.classifier, scorer.memo
    deploy = tuple(sorted((k, resolved[k]) for k in spec.deploy_params))
    shape = tuple(np.shape(patches))

    def measure() -> dict[str, np.ndarray]:
        control = control_patches(patches, seed)
        control = control if control.ndim == 4 else control[None]
        chosen, draws = placements(len(x), len(control), resolved, seed, x.shape[1:3])
        scale = float(resolved["patch_scale"])
        predicted = np.empty(len(chosen), dtype=np.int64)
        for start in range(0, len(chosen), BLOCK):
            block = [paste(x[i], control[which], scale, angle, center)
                     for i, (which, angle, center) in zip(chosen[start:start + BLOCK], draws[start:start + BLOCK])]
            if block:
                predicted[start:start + len(block)] = predict_in_batches(classifier, np.stack(block), BLOCK).argmax(1)
        clean_correct = np.asarray(clean_pred) == y
        hit = predicted == y[chosen]
        if resolved["patch_deployment_method"] == "corrupt":  # patched images replace their originals
            accuracy = (clean_correct.sum() - clean_correct[chosen].sum() + hit.sum()) / max(len(x), 1)
        else:  # augment: added after the untouched originals
            accuracy = (clean_correct.sum() + hit.sum()) / max(len(x) + len(chosen), 1)
        out = {"control_accuracy": float(accuracy)}
        if target is not None:
            out["control_targeted_success_rate"] = m.targeted_success_rate(y[chosen], predicted, int(target))
        return {"names": np.array(list(out)), "values": np.array(list(out.values()), dtype=np.float64)}

    parts = score_memo(("control_score", CONTROL_VERSION, shape, seed, deploy, content_digest(x), content_digest(y),
                        target), measure)
    out = {str(k): float(v) for k, v in zip(parts["names"], parts["values"])}
    out["accuracy_below_control"] = out["control_accuracy"] - values["adversarial_accuracy"]
    if "control_targeted_success_rate" in out and "targeted_success_rate" in values:
        out["targeted_success_over_control"] = values["targeted_success_rate"] - out["control_targeted_success_rate"]
    return out


__all__ = ["CONTROL_METRICS", "control_metrics", "control_patches"]
