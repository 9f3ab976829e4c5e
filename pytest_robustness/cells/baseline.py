"""Baseline look-up: the ``--baseline-uri`` model's numbers on the very cell a test just measured.

Read back from an earlier gated MLflow run of that cell (tagged with its ``cell_key``, with the
per-image correctness in ``correctness.npz``) when there is one, else computed now the same way.
Built on the cell's ``Crafter`` (crafting, judging) and ``Defender``; ``cell_key`` is the one digest of
a cell's identity.
"""

from __future__ import annotations

import io
import tempfile

import numpy as np

from ..attacks import get_attack
from ..defenses.catalog import get_defense
from ..metrics import statistics
from ..metrics.names import DEFENSE_METRICS, KNOWN_METRICS, PAIRED_METRICS
from ..models.slot import BASELINE
from ..options.thresholds import Cell
from ..tracking.search import all_of, equals
from .crafting import Crafter
from .defended import Defender
from .result import AttackResult, correctness

CORRECTNESS_FILE = "correctness.npz"


def correctness_npz(correct: dict[str, np.ndarray]) -> bytes:
    """``correctness.npz``: each metric's per-image correctness, bit-packed, with its length."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{name: statistics.pack(v) for name, v in correct.items()},
                        **{f"{name}__n": np.array(len(v)) for name, v in correct.items()})
    return buffer.getvalue()


def cell_key(session, cell: Cell, samples: int, source=()) -> str:
    """Identity of a cell's numbers apart from the model: attack, parameters, defense, data, seed, sample
    count, backend (and, through the cache key, the library versions; for transfer cells, ``source``:
    where the examples came from)."""
    return session.cache.key("cell", cell.attack, sorted(cell.params.items()), cell.defense,
                             sorted(cell.defense_params.items()), cell.threat_model, session.data_info.digest,
                             session.settings.seed, samples, cell.architecture, session.settings.attack_backend,
                             *(source if any(source) else []))


class Baseline:
    """The ``--baseline-uri`` model's metrics (and per-image correctness) on the cell a test just measured."""

    def __init__(self, crafter: Crafter, defender: Defender):
        self.crafter = crafter
        self.defender = defender
        self.session = crafter.session

    def cell_key(self, result: AttackResult) -> str:
        return cell_key(self.session, result.cell, result.size,
                        [result.source_architecture, result.source_model_uri, result.examples_uri])

    def metrics_and_correctness(self, result: AttackResult) -> tuple[dict[str, float] | None,
                                                                     dict[str, np.ndarray] | None]:
        """The baseline model's metrics on the same cell, and its per-image correctness: from an earlier
        MLflow run that computed them (e.g. when the baseline was itself the candidate), else computed now."""
        baseline = self.crafter.slot(BASELINE)
        stored = self._stored_cell_metrics(self.cell_key(result), self.session.model(baseline.architecture, BASELINE).uri)
        if stored is not None:
            return stored
        if result.source_model_uri:  # a transfer cell: the baseline on the very same examples
            judged = self.crafter.judge(result, baseline)
            return judged.metrics, correctness(judged)
        spec = get_attack(result.attack)
        resolved = spec.resolve({k: v for k, v in result.params.items() if k in spec.schema})
        if result.defense == "none":
            base = self.crafter.craft(spec, resolved, baseline, stream=result.kept_index is not None)
            return base.metrics, correctness(base)
        if result.undefended is None or get_defense(result.defense).training_recipe(result.defense_params):
            return None, None  # adversarially trained variants are derived from the candidate: no baseline cell
        base = self.crafter.craft(spec, resolved, baseline)
        defended = self.defender.defended(base, result.defense, result.threat_model, result.defense_params, BASELINE)
        return defended.metrics, correctness(defended)

    def _stored_cell_metrics(self, cell_key: str, model_uri: str):
        tracker = self.session.tracker
        runs = tracker.client.search_runs(  # the latest one: one page of one run
            [tracker.ensure_experiment()],
            all_of(equals("tags", "robustness.cell_key", cell_key), equals("tags", "robustness.cell_model", model_uri)),
            order_by=["attributes.start_time DESC"], max_results=1)
        if not runs:
            return None
        run = runs[0]
        prefix = run.data.tags.get("robustness.cell_prefix", "")
        metrics = {name: run.data.metrics[name if name in DEFENSE_METRICS else f"{prefix}{name}"]
                   for name in KNOWN_METRICS
                   if (name if name in DEFENSE_METRICS else f"{prefix}{name}") in run.data.metrics}
        return metrics, self._stored_correctness(run)

    def _stored_correctness(self, run) -> dict[str, np.ndarray] | None:
        """The per-image correctness a gated cell stored (``correctness.npz``), None for older runs."""
        if run.data.tags.get("robustness.correctness") != CORRECTNESS_FILE:
            return None
        with tempfile.TemporaryDirectory(prefix="robustness-baseline-") as tmp:
            path = self.session.tracker.client.download_artifacts(run.info.run_id, CORRECTNESS_FILE, tmp)
            with np.load(path, allow_pickle=False) as stored:
                return {name: statistics.unpack(stored[name], int(stored[f"{name}__n"]))
                        for name in PAIRED_METRICS if name in stored.files}
