"""Scoring a cell: predict the clean and adversarial sets once, derive every metric from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..data.datasets import content_digest
from ..metrics import formulas as m
from ..metrics import statistics
from ..models.predictors import predict_in_batches
from .result import AttackResult, Examples, all_modified, identity_index

SCORE_VERSION = 2  # 2: keyed by one digest per array (each array is hashed once per session)


@dataclass(frozen=True)
class Scorer:
    """A model slot as scoring sees it: the URI results name, the classifier that predicts, and the
    memo its numbers are kept in (``memo(key, compute)``, keyed by the slot: weights, defense, seed)."""

    model_uri: str
    classifier: Any
    memo: Callable[[tuple, Callable[[], dict]], dict] | None = None


def score(examples: Examples | AttackResult, scorer: Scorer) -> AttackResult:
    """Predict clean and adversarial sets once and derive every metric from those predictions.

    For a deployed attack the adversarial set is the deployed one (Dioptra's
    ``infer`` on the patched data set: with ``augment`` or a rate below 1 it holds
    clean images too); ``patched_accuracy`` and ``targeted_success_rate`` (the
    fraction classified as ``target``) are measured on the patched images only.

    ``scorer.memo`` (the session's content-addressed memo, keyed by the
    classifier's weights, defense and seed) lets a re-run skip the prediction
    and the metric arithmetic: same inputs, same arrays, same numbers.
    """
    x_clean, y_true, x_adv, deployed = examples.x_clean, examples.y_true, examples.x_adv, examples.deployed
    target, classifier, memo = examples.params.get("patch_target"), scorer.classifier, scorer.memo
    source = deployed.source_index if deployed is not None else identity_index(len(x_adv))
    modified = deployed.modified if deployed is not None else all_modified(len(x_adv))

    def measure() -> dict[str, np.ndarray]:
        clean_p = predict_in_batches(classifier, x_clean, 256)
        adv_p = predict_in_batches(classifier, x_adv, 256)
        distances = m.distance_table(x_clean, x_adv, source)
        values = metric_values(y_true, clean_p, adv_p, source, modified if deployed is not None else None, target,
                          distances)
        return {"clean_probabilities": clean_p, "adversarial_probabilities": adv_p,
                "metric_names": np.array(list(values)), "metric_values": np.array(list(values.values())),
                **{f"distance__{k}": v for k, v in distances.items()}}

    key = ("score", SCORE_VERSION, *(content_digest(a) for a in (x_clean, y_true, x_adv, source, modified)), target)
    parts = memo(key, measure) if memo is not None else measure()
    values = {str(k): float(v) for k, v in zip(parts["metric_names"], parts["metric_values"])}
    distances = {k[len("distance__"):]: v for k, v in parts.items() if k.startswith("distance__")}
    sizes = statistics.sample_sizes(y_true, y_true[source], parts["clean_probabilities"].argmax(1)[source],
                                    modified if deployed is not None else None, target)
    values.update(statistics.intervals(values, sizes))
    return AttackResult(examples.attack, dict(examples.params), scorer.model_uri, x_clean, y_true, x_adv,
                        parts["clean_probabilities"], parts["adversarial_probabilities"], values, distances,
                        examples.run, deployed=deployed, sample_sizes=sizes)


def _measured_images(distances: dict[str, np.ndarray]) -> dict[str, float]:
    """How many images a distance bounded to a subset (``formulas.wasserstein_rows``) was measured on."""
    values = distances.get("wasserstein_distance")
    if values is None or not np.isnan(values).any():
        return {}
    return {"wasserstein_images": float(np.count_nonzero(~np.isnan(values)))}


def metric_values(y_true, clean_p, adv_p, source, modified, target, distances) -> dict[str, float]:
    y_adv = y_true[source]
    clean_pred, adv_pred = clean_p.argmax(1), adv_p.argmax(1)
    values = {
        "clean_accuracy": m.accuracy(y_true, clean_pred),
        "adversarial_accuracy": m.accuracy(y_adv, adv_pred),
        "attack_success_rate": m.attack_success_rate(y_adv, clean_pred[source], adv_pred),
        **m.summarise_distances(distances),
        **_measured_images(distances),
        **{f"clean_{k}": v for k, v in m.classification_metrics(y_true, clean_p).items()},
        **{f"adversarial_{k}": v for k, v in m.classification_metrics(y_adv, adv_p).items()},
    }
    if modified is not None:  # a deployed attack: measure the images that carry it
        values["patched_count"] = float(modified.sum())
        values["patched_accuracy"] = m.accuracy(y_adv[modified], adv_pred[modified])
    hit = modified if modified is not None else np.ones(len(adv_pred), dtype=bool)
    if target is not None:
        values["targeted_success_rate"] = m.targeted_success_rate(y_adv[hit], adv_pred[hit], int(target))
    return values
