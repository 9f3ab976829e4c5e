"""What one attack cell produced (``AttackResult``) and the per-image views of it that scoring,
artifacts and the baseline comparison share."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..attacks import Deployed
from ..data.datasets import freeze
from ..engine.session import AttackRun
from ..models.slot import ModelSlot
from ..options.thresholds import Cell


@dataclass
class AttackResult:
    """Everything one attack cell produced; ``metrics`` are what thresholds are checked against."""

    attack: str
    params: dict[str, Any]
    model_uri: str
    x_clean: np.ndarray
    y_true: np.ndarray
    x_adv: np.ndarray
    clean_probabilities: np.ndarray
    adversarial_probabilities: np.ndarray
    metrics: dict[str, float] = field(default_factory=dict)
    distances: dict[str, np.ndarray] = field(default_factory=dict)
    run: AttackRun | None = None
    # Identity of the matrix cell, which thresholds are keyed by.
    architecture: str = ""
    defense: str = "none"
    threat_model: str = ""
    # Deployed attacks (the patch): x_adv[i] derives from x_clean[deployed.source_index[i]].
    deployed: Deployed | None = None
    defense_params: dict[str, Any] = field(default_factory=dict)
    # What the defended model saw, for the evidence grid (e.g. the JPEG-compressed input): a
    # Deferred, computed only when the grid is drawn (not when its picture is cached).
    defended_inputs: Any = None
    undefended: "AttackResult | None" = None  # for a defended result: the result it defends
    log_prefix: str = ""  # the prefix its metrics were logged under in the test's run
    # How many images each proportion is over (for confidence intervals and confidence = floors).
    sample_sizes: dict[str, int] = field(default_factory=dict)
    # The model slot the examples were crafted on (its recipe, defense, classifier, compiled form).
    crafted_on: ModelSlot | None = None
    # Transfer cells (examples crafted on another model): where the examples came from.
    source_architecture: str = ""
    source_model_uri: str = ""
    examples_uri: str = ""  # runs:/ID/ARTIFACT when read back from another MLflow run
    # A streamed cell (``cells.streamed``) keeps the images of a sample only: x_clean[i] and x_adv[i] are
    # image kept_index[i] of the set; labels, predictions and distances cover every image. None: all kept.
    kept_index: np.ndarray | None = None

    @property
    def size(self) -> int:
        """How many images the cell attacked (its examples may keep fewer: ``kept_index``)."""
        return len(self.y_true)

    @property
    def cell(self) -> Cell:
        """The identity of the matrix cell these numbers belong to: what thresholds select and the
        baseline's ``cell_key`` digests."""
        return Cell(self.attack, self.params, self.architecture, self.defense, self.threat_model,
                    self.source_architecture, self.defense_params)

    @property
    def clean_predictions(self) -> np.ndarray:
        return self.clean_probabilities.argmax(axis=1)

    @property
    def adversarial_predictions(self) -> np.ndarray:
        return self.adversarial_probabilities.argmax(axis=1)

    @property
    def source_index(self) -> np.ndarray:
        return self.deployed.source_index if self.deployed is not None else np.arange(len(self.adversarial_probabilities))

    @property
    def modified(self) -> np.ndarray:
        """Which adversarial-set images carry the attack (all, except for deployed attacks)."""
        return (self.deployed.modified if self.deployed is not None
                else np.ones(len(self.adversarial_probabilities), dtype=bool))

    @property
    def y_adversarial(self) -> np.ndarray:
        return self.y_true[self.source_index]


@dataclass
class Examples:
    """Adversarial examples with what they were made from: what ``scoring.score`` reads of them, whoever
    crafted them (this session's attack run, or another MLflow run whose examples were read back)."""

    attack: str
    params: dict[str, Any]
    model_uri: str  # the model they were crafted on, when known
    x_clean: np.ndarray
    y_true: np.ndarray
    x_adv: np.ndarray
    deployed: Deployed | None = None
    architecture: str = ""
    source_architecture: str = ""
    source_model_uri: str = ""
    examples_uri: str = ""
    run: AttackRun | None = None
    adversarial_probabilities: None = field(default=None, repr=False)  # the source model's: unknown


class Deferred:
    """An array computed on first use and identified beforehand by ``key`` (what determines it),
    so that a cached picture of it needs neither the array nor what computes it."""

    def __init__(self, key: tuple, compute: Callable[[], np.ndarray]):
        self.key = key
        self._compute = compute
        self._value: np.ndarray | None = None

    def __call__(self) -> np.ndarray:
        if self._value is None:
            self._value = self._compute()
        return self._value

    def __array__(self, dtype=None, copy=None):
        value = self()
        return value if dtype is None else value.astype(dtype)


@functools.lru_cache(maxsize=32)
def identity_index(n: int) -> np.ndarray:
    """``arange(n)``, one read-only array per n (so its content digest is remembered)."""
    index = np.arange(n)
    freeze(index)
    return index


@functools.lru_cache(maxsize=32)
def all_modified(n: int) -> np.ndarray:
    flags = np.ones(n, dtype=bool)
    freeze(flags)
    return flags


def correctness(result: AttackResult) -> dict[str, np.ndarray]:
    """Per-image correctness behind the paired metrics (a randomised defense: its first prediction draw)."""
    correct = {"clean_accuracy": result.clean_predictions == result.y_true,
               "adversarial_accuracy": result.adversarial_predictions == result.y_adversarial}
    if result.defense != "none":
        correct["defended_accuracy"] = correct["adversarial_accuracy"]
    if "robust_accuracy" in result.metrics:  # an ensemble's per-image worst case: right clean and attacked
        correct["robust_accuracy"] = correct["clean_accuracy"] & correct["adversarial_accuracy"]
    return correct


GRID_ROWS = 8


def grid_rows(result: AttackResult) -> np.ndarray:
    """The first few adversarial-set images that carry the attack (of a streamed cell: the first kept)."""
    if result.kept_index is not None:
        return result.kept_index[:GRID_ROWS]
    return np.flatnonzero(result.modified)[:GRID_ROWS]


def image_rows(result: AttackResult, rows: np.ndarray) -> np.ndarray:
    """Where images ``rows`` of the set are in ``result.x_clean``/``x_adv`` (a streamed cell keeps a sample)."""
    if result.kept_index is None:
        return rows
    return np.searchsorted(result.kept_index, rows)
