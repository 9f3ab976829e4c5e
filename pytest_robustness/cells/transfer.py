"""Transfer cells: the ``robustness`` fixture's methods for examples crafted on another model.

``transfer`` (the matrix: crafted on another architecture's model, the very examples its own
cells craft), ``transfer_from_baseline`` (crafted on the ``--baseline-uri`` model, read back
from its gated MLflow runs when there are any) and ``infer`` (Dioptra's entry point: the
adversarial set any MLflow run logged). Built on the cell's ``Crafter`` (crafting and judging)
and ``CellRun`` (logging).
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np
import pytest

from ..attacks import Deployed, get_attack
from ..data.adversarial_sets import read_run_examples
from ..data.datasets import content_digest
from ..errors import RobustnessUsageError
from ..models.slot import BASELINE
from ..options.thresholds import Cell
from ..params import case_id
from ..tracking.search import all_of, equals, search_runs
from .baseline import cell_key
from .cell_run import CellRun
from .crafting import Crafter
from .result import Examples

# Tags of a transfer cell's run: the session's matrix (transfer.py) is built from them.
SETTING_TAG = "robustness.transfer_setting"  # e.g. "fgm linf-eps0.3": one heatmap per setting
SOURCE_TAG = "robustness.source_architecture"


def transfer_rate(y_adversarial: np.ndarray, source_predictions: np.ndarray, target_predictions: np.ndarray,
                  carries_attack: np.ndarray) -> float:
    """Of the attacked images the source misclassifies, the fraction the target misclassifies too
    (NaN when none fools the source). Clean copies a deployment keeps (augment) do not count."""
    fools_source = (source_predictions != y_adversarial) & carries_attack
    if not fools_source.any():
        return float("nan")
    return float(np.mean(target_predictions[fools_source] != y_adversarial[fools_source]))


class Transfers:
    """Transfer, transfer from the baseline, and Dioptra's ``infer`` for one cell."""

    def __init__(self, crafter: Crafter, cell_run: CellRun):
        self.crafter = crafter
        self.cell_run = cell_run
        self.session = crafter.session

    def transfer(self, name: str, source_architecture: str, **params: Any) -> Any:
        """Attack ``name`` crafted on ``source_architecture``'s model and judged by this cell's model.

        The examples are the very ones that architecture's own cells craft (its model through
        ``attack_run``: same memo and cache keys), so a transfer matrix costs predictions only.
        Logs ``transfer_rate``, ``source_model_uri`` and the matrix tags the session's heatmaps read."""
        spec = get_attack(name)
        # The source's crafting is timed as this cell's: the same timer.
        source = Crafter(self.session, source_architecture, self.crafter.timer)
        crafted = source.craft(spec, spec.resolve(params))
        return self._log_transfer(self.crafter.judge(crafted), crafted,
                                  f"{name} {case_id(spec.schema, params)}".strip())

    def transfer_from_baseline(self, name: str, **params: Any) -> Any:
        """Attack ``name`` crafted on the ``--baseline-uri`` model, judged by this cell's candidate:
        last release's adversarial set as a fixed regression set. The examples are read back from
        the baseline's own gated run of the cell (its ``adversarial_examples.npz``: same cell, data
        and seed) when there is one, else crafted. Skips the test without ``--baseline-uri``."""
        if not self.session.settings.baseline_uri_for(self.crafter.architecture):
            pytest.skip("transfer from the baseline needs --baseline-uri")
        spec = get_attack(name)
        resolved = spec.resolve(params)
        stored = self._stored_baseline_examples(spec, resolved)
        baseline = self.crafter.slot(BASELINE)
        crafted = (self.crafter.judge(stored, baseline) if stored is not None
                   else self.crafter.craft(spec, resolved, baseline))
        crafted.source_architecture, crafted.examples_uri = "baseline", stored.examples_uri if stored else ""
        return self._log_transfer(self.crafter.judge(crafted), crafted)

    def infer(self, run_id: str, artifact: str = "adversarial_examples.npz") -> Any:
        """Dioptra's ``infer``: this cell's model on the adversarial set that run ``run_id`` logged (any
        run, any session): our ``adversarial_examples.npz``, or a Dioptra tarball of PNG folders by
        label. A tarball holds no clean images: only adversarial metrics are logged, and the cell's
        ``adversarial_examples.npz`` carries the adversarial images as ``x_clean`` too."""
        data = self.session.dataset
        found = read_run_examples(self.session.tracker.client, run_id, artifact, data.class_names, data.input_shape)
        logged = found.params
        attack = logged.get("attack", "")
        attack = attack if _registered(attack) else "infer"
        params = {k[len(attack) + 1:]: _parsed(v) for k, v in logged.items() if k.startswith(f"{attack}.")}
        source_uri = logged.get("model_uri") or (f"models:/{logged['model_name']}/{logged['model_version']}"
                                                 if {"model_name", "model_version"} <= logged.keys() else "unknown")
        x_clean = found.x_clean if found.x_clean is not None else found.x_adv
        deployed = None
        if found.source_index is not None:
            modified = found.modified if found.modified is not None else np.ones(len(found.x_adv), dtype=bool)
            deployed = Deployed(found.x_adv, found.source_index, modified)
        crafted = Examples(attack, params, source_uri, x_clean, found.y_true, found.x_adv, deployed,
                           source_architecture=logged.get("architecture", ""), examples_uri=found.origin)
        judged = self.crafter.judge(crafted)
        if found.x_clean is None:  # nothing clean to compare with
            judged.distances = {}
            judged.metrics = {k: v for k, v in judged.metrics.items() if k.startswith("adversarial_")
                              or k in ("patched_accuracy", "patched_count", "targeted_success_rate")}
        return self._log_transfer(judged, crafted)

    def _log_transfer(self, judged: Any, crafted: Any, setting: str = "") -> Any:
        """Log ``judged`` with where its examples came from; ``transfer_rate`` when the source model's
        own predictions on them are known; ``setting`` makes it a cell of the session's matrix."""
        if crafted.adversarial_probabilities is not None:
            judged.metrics["transfer_rate"] = transfer_rate(judged.y_adversarial, crafted.adversarial_predictions,
                                                            judged.adversarial_predictions, judged.modified)
        source = {"source_architecture": judged.source_architecture, "source_model_uri": judged.source_model_uri}
        self.cell_run.log_params({**source, **({"examples_uri": judged.examples_uri} if judged.examples_uri else {})})
        tags = {SOURCE_TAG: judged.source_architecture, **({SETTING_TAG: setting} if setting else {})}
        if judged.run is None:  # nothing crafted here: the examples were read back from an MLflow run
            tags["robustness.examples"] = "mlflow"
        self.cell_run.set_tags(tags)
        self.cell_run.log_result(judged)
        return judged

    def _stored_baseline_examples(self, spec, resolved: Mapping[str, Any]) -> Examples | None:
        """The examples the baseline's own gated run of this white-box cell logged (when it was the
        candidate): its parameters, data, seed and sample count must give this cell's key."""
        from mlflow.exceptions import MlflowException

        tracker, uri = self.session.tracker, self.session.model(self.crafter.architecture, BASELINE).uri
        x, y = self.crafter.eval_set()
        architecture, data = self.crafter.architecture, self.session.dataset
        runs = search_runs(tracker.client, [tracker.ensure_experiment()],
                           all_of(equals("tags", "robustness.cell_model", uri), equals("params", "attack", spec.name)),
                           order_by=["attributes.start_time DESC"])
        for run in runs:
            logged = {k[len(spec.name) + 1:]: v for k, v in run.data.params.items() if k.startswith(f"{spec.name}.")}
            if any(_param_text(value) != logged.get(k) for k, value in resolved.items()):
                continue
            params = {**{k: _parsed(v) for k, v in logged.items()}, **resolved}  # extras (patch_target) parsed
            key = cell_key(self.session, Cell(spec.name, params, architecture), len(x))
            if run.data.tags.get("robustness.cell_key") != key or run.data.tags.get("robustness.cell_prefix", ""):
                continue
            try:
                found = read_run_examples(tracker.client, run.info.run_id, "adversarial_examples.npz",
                                          data.class_names, data.input_shape)
            except (RobustnessUsageError, MlflowException):
                continue
            if found.x_clean is None or content_digest(found.x_clean) != content_digest(x) \
                    or (spec.deploy is not None and found.source_index is None and len(found.x_adv) != len(x)):
                continue
            deployed = None
            if spec.deploy is not None:
                index = found.source_index if found.source_index is not None else np.arange(len(found.x_adv))
                modified = found.modified if found.modified is not None else np.ones(len(found.x_adv), dtype=bool)
                deployed = Deployed(found.x_adv, index, modified)
            return Examples(spec.name, params, uri, x, y, found.x_adv, deployed, architecture,
                            examples_uri=found.origin)
        return None


def _registered(attack: str) -> bool:
    try:
        get_attack(attack)
    except RobustnessUsageError:
        return False
    return True


def _param_text(value: Any) -> str:
    """A parameter value as MLflow stores it (the tracker's own conversion)."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _parsed(text: str) -> Any:
    """A logged parameter back to its value: JSON numbers, booleans and null; anything else a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text
