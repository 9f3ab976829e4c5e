"""Metrics: accuracy-style verdict metrics, Dioptra's distance metrics and classification metrics.

Distance metrics are computed per image on the flattened images (every image,
unlike Dioptra which drops the last partial batch) and summarised the way
Dioptra logs them: ``{name}`` is the mean, plus ``_median``, ``_stdev``,
``_iqr``, ``_min`` and ``_max``.

The Wasserstein distance sorts every image's values (4-8 ms an image at 224x224x3, an FGM
gradient of a small CNN): beyond ``WASSERSTEIN_VALUES`` values in all it is
computed on evenly spaced images only (``wasserstein_rows``), the others' cells NaN,
its summary over the measured images (the cell logs how many: ``wasserstein_images``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

TOL = 1e-12


def _flat(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1)


def l_inf_norm(clean, adv):
    return np.abs(_flat(adv) - _flat(clean)).max(axis=1)


def l_1_norm(clean, adv):
    return np.abs(_flat(adv) - _flat(clean)).sum(axis=1)


def _row_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Each row's dot product, without an n x d temporary (a third of the passes of ``(a * b).sum(1)``)."""
    return np.einsum("ij,ij->i", a, b)


def l_2_norm(clean, adv):
    diff = _flat(adv) - _flat(clean)
    return np.sqrt(_row_dot(diff, diff))


def cosine_similarity(clean, adv):
    a, b = _flat(clean), _flat(adv)
    return _cosine(a, b)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _row_dot(a, b) / np.maximum(np.sqrt(_row_dot(a, a)) * np.sqrt(_row_dot(b, b)), TOL)


def _sorted64(x) -> np.ndarray:
    """Each image's values sorted, in float64: sorted in their own dtype (float32 sorts twice as fast and
    widening is exact, so the order and values are those of sorting in float64)."""
    x = np.asarray(x)
    flat = x.reshape(len(x), -1)
    return np.sort(flat, axis=1).astype(np.float64) if flat.dtype.kind == "f" else np.sort(_flat(x), axis=1)


def wasserstein_distance(clean, adv):
    """1-D Wasserstein between each image's pixel distributions (scipy's, vectorised:
    for equal-size uniform samples it is the mean gap between sorted values)."""
    return np.abs(_sorted64(clean) - _sorted64(adv)).mean(axis=1)


DISTANCE_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "l_inf_norm": l_inf_norm,
    "l_1_norm": l_1_norm,
    "l_2_norm": l_2_norm,
    "cosine_similarity": cosine_similarity,
    "euclidean_distance": l_2_norm,
    "manhattan_distance": l_1_norm,
    "wasserstein_distance": wasserstein_distance,
}


BUILT_IN_DISTANCES = tuple(DISTANCE_METRICS)
DISTANCE_CHUNK = 64  # images per block: the float64 temporaries stay small, whatever the data's size
WASSERSTEIN_VALUES = 64 * 224 * 224 * 3  # values sorted per table at most: every image of sets up to 12,288 MNIST digits


def wasserstein_rows(n: int, values_per_image: int) -> np.ndarray | None:
    """The images the Wasserstein distance is measured on: None (all) while ``n`` images stay within
    ``WASSERSTEIN_VALUES``, else as many as fit, evenly spaced (a function of ``n`` alone, so a table
    built batch by batch measures the same images)."""
    fit = max(WASSERSTEIN_VALUES // max(values_per_image, 1), 1)
    if n <= fit:
        return None
    return np.unique(np.linspace(0, n - 1, fit).round().astype(np.int64))


def distance_table(clean: np.ndarray, adv: np.ndarray, source: np.ndarray | None = None, *,
                   offset: int = 0, total: int | None = None) -> dict[str, np.ndarray]:
    """Per-image values of every distance metric (the CSV artifact's columns) between ``adv[i]`` and
    ``clean[source[i]]`` (``clean[i]`` without ``source``).

    Computed block by block: every metric is a per-image reduction, so the values are those of one
    pass over all images, without float64 copies of the whole data set. A batch of a larger set gives
    its place (``offset`` of ``total`` images): the Wasserstein rows are chosen over the whole set.
    """
    n = len(adv)
    total = n if total is None else total
    rows = wasserstein_rows(total, int(np.prod(np.shape(adv)[1:], dtype=np.int64)))
    measured = np.ones(n, dtype=bool)
    if rows is not None:
        measured[:] = False
        inside = rows[(rows >= offset) & (rows < offset + n)] - offset
        measured[inside] = True
    table = {name: np.empty(n, dtype=np.float64) for name in DISTANCE_METRICS}
    for start in range(0, n, DISTANCE_CHUNK):
        stop = min(start + DISTANCE_CHUNK, n)
        clean_block = clean[source[start:stop]] if source is not None else clean[start:stop]
        for name, values in block_distances(clean_block, adv[start:stop], measured[start:stop]).items():
            table[name][start:stop] = values
    return table


def block_distances(clean: np.ndarray, adv: np.ndarray, wasserstein: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every metric of ``DISTANCE_METRICS`` for one block, the same operations as the functions above
    (so the same values) with the shared work done once: one float64 difference for the three norms,
    the two aliases (euclidean = L2, manhattan = L1) copied, not recomputed. ``wasserstein`` (a mask):
    the images whose Wasserstein distance is measured (NaN for the others)."""
    if set(DISTANCE_METRICS) != set(BUILT_IN_DISTANCES):  # an extension added a metric: compute each on its own
        return {name: _wasserstein_where(clean, adv, wasserstein) if fn is wasserstein_distance else fn(clean, adv)
                for name, fn in DISTANCE_METRICS.items()}
    a, b = _flat(clean), _flat(adv)
    diff = b - a
    out = {"l_2_norm": np.sqrt(_row_dot(diff, diff))}
    np.abs(diff, out=diff)
    out["l_inf_norm"], out["l_1_norm"] = diff.max(axis=1), diff.sum(axis=1)
    del diff
    out["cosine_similarity"] = _cosine(a, b)
    out["euclidean_distance"], out["manhattan_distance"] = out["l_2_norm"], out["l_1_norm"]
    out["wasserstein_distance"] = _wasserstein_where(clean, adv, wasserstein)
    return out


def _wasserstein_where(clean: np.ndarray, adv: np.ndarray, measured: np.ndarray | None) -> np.ndarray:
    if measured is None or measured.all():
        return wasserstein_distance(clean, adv)
    out = np.full(len(adv), np.nan)
    if measured.any():
        out[measured] = wasserstein_distance(clean[measured], adv[measured])
    return out


def summarise_distances(table: dict[str, np.ndarray]) -> dict[str, float]:
    summary: dict[str, float] = {}
    for name, values in table.items():
        values = values[~np.isnan(values)] if np.isnan(values).any() else values  # measured images only
        if not len(values):
            continue
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        summary[name] = float(values.mean())
        summary[f"{name}_median"] = float(median)
        summary[f"{name}_stdev"] = float(values.std())
        summary[f"{name}_iqr"] = float(q3 - q1)
        summary[f"{name}_min"] = float(values.min())
        summary[f"{name}_max"] = float(values.max())
    return summary


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if len(y_true) else float("nan")


def attack_success_rate(y_true: np.ndarray, clean_pred: np.ndarray, adv_pred: np.ndarray) -> float:
    """Of the samples the model classified correctly, the fraction the attack flipped
    (ART's ``compute_success`` restricted to the correctly classified samples)."""
    correct = np.asarray(clean_pred) == np.asarray(y_true)
    if not correct.any():
        return float("nan")
    return float(np.mean(np.asarray(adv_pred)[correct] != np.asarray(y_true)[correct]))


def targeted_success_rate(y_true: np.ndarray, adv_pred: np.ndarray, target: int) -> float:
    """Fraction classified as ``target`` among samples whose true label is not the target."""
    others = np.asarray(y_true) != target
    return float(np.mean(np.asarray(adv_pred)[others] == target)) if others.any() else float("nan")


def classification_metrics(y_true: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Dioptra's inference metrics plus f1: macro-averaged over the classes; auc one-vs-rest."""
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    n_classes = probabilities.shape[1]
    y_pred = probabilities.argmax(axis=1)
    labels = np.arange(n_classes)
    metrics = {
        "accuracy": accuracy(y_true, y_pred),
        "precision": float(precision_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "recall": float(recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
    }
    present = np.unique(y_true)
    if len(present) > 1:
        probs = probabilities[:, present] / np.maximum(probabilities[:, present].sum(axis=1, keepdims=True), TOL)
        metrics["auc"] = float(roc_auc_score(y_true, probs, multi_class="ovr", labels=present)
                               if len(present) > 2 else roc_auc_score(y_true == present[1], probs[:, 1]))
    return metrics
