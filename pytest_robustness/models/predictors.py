"""The ART classifier as scoring sees it: built on first use (``LazyClassifier``), its predictions as
probabilities in ART's batches (``predict_in_batches``) and memoised by input content (``CachedPredictor``)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..data.datasets import content_digest
from .classifiers import softmax

# The session's ``memoised(key_parts, compute)``: arrays from memory, the disk cache, or ``compute``.
Memoised = Callable[[tuple, Callable[[], dict[str, np.ndarray]]], dict[str, np.ndarray]]


class LazyClassifier:
    """Stands for an ART classifier built (model loaded, TensorFlow imported) on first use."""

    def __init__(self, build: Callable[[], Any]):
        self._build = build
        self._built = None

    @property
    def classifier(self):
        if self._built is None:
            self._built = self._build()
        return self._built

    def __getattr__(self, name: str):
        return getattr(self.classifier, name)


def unwrap(classifier):
    """The ART classifier itself (ART's attacks check its type)."""
    while isinstance(classifier, (LazyClassifier, CachedPredictor)):
        classifier = classifier.classifier
    return classifier


def predict_in_batches(classifier, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Probabilities: the softmax of ``classifier.predict(x, batch_size)`` (our classifiers output logits),
    handed to ART one of its own batches at a time.

    The model sees the very same batches (the same numbers), and ART's preprocessing
    (defences, dtype conversion), which copies its whole input, copies one batch. A
    randomised defence draws its noise batch after batch from the same generator, in the
    same order: the same draws.
    """
    if len(x) <= batch_size:
        return softmax(classifier.predict(x, batch_size=batch_size))
    return np.concatenate([softmax(classifier.predict(x[i:i + batch_size], batch_size=batch_size))
                           for i in range(0, len(x), batch_size)])


class CachedPredictor:
    """An ART classifier whose ``predict`` is memoised by the content of its input.

    Predictions depend only on the weights, the defences (and their seed) and
    the input bytes, which is exactly the key: clean predictions are computed
    once per model, and a warm re-run predicts nothing.
    """

    def __init__(self, classifier, key: tuple, memoised: Memoised):
        self.classifier = classifier
        self.key = key
        self._memoised = memoised

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        def predict() -> dict[str, np.ndarray]:
            return {"probabilities": predict_in_batches(self.classifier, x, batch_size).astype(np.float32)}

        return self._memoised(("predict", *self.key, content_digest(x)), predict)["probabilities"]

    def __getattr__(self, name: str):
        return getattr(self.classifier, name)
