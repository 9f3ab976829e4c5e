"""The ``robustness`` fixture's object: run an attack on this test's model, log it, check thresholds.

One test = one cell of the robustness matrix = one nested MLflow run. Metrics
go to that run and to the JUnit test case as properties; the examples they were
computed on go to the run as ``adversarial_examples.npz`` so anyone can
recompute them with ART and the registered model.

The cell is composed of small parts, each with its own module: ``Crafter`` (crafting
and scoring on a model slot), ``CellRun`` (the MLflow run and JUnit record),
``Defender`` (defended cells), ``Transfers`` (examples crafted elsewhere),
``Baseline`` (the baseline's numbers on the same cell) and ``Properties`` (transforms
searched by Hypothesis, the spatial grid, corruptions). Here: the API suites call,
and the verdict.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pytest

from ..attacks import get_attack
from ..data.image_stream import stratified_subset
from ..errors import RobustnessUsageError
from ..metrics import statistics
from ..metrics.names import JUNIT_METRICS
from ..models.slot import BASELINE
from ..options.thresholds import Bound, Cell, check_bounds
from ..params import case_id
from . import ensemble, masking
from .baseline import CORRECTNESS_FILE, Baseline, correctness_npz
from .cell_run import CellRun
from .crafting import Crafter
from .defended import Defender
from .phases import PhaseTimer
from .properties import Properties
from .result import AttackResult, correctness
from .transfer import Transfers


class Robustness:
    """Handed to each suite test: its architecture's model, data, classifier and MLflow run."""

    def __init__(self, session, item: pytest.Item, architecture: str):
        self.session = session
        self.item = item
        self.architecture = architecture
        self.timer = PhaseTimer(session)
        self.cell_run = CellRun(session, item, architecture, self.timer)
        self.crafter = Crafter(session, architecture, self.timer)
        self.defender = Defender(self.crafter, self.cell_run)
        self.transfers = Transfers(self.crafter, self.cell_run)
        self.baseline = Baseline(self.crafter, self.defender)
        self.properties = Properties(self.crafter, self.cell_run, item)

    @property
    def run_id(self) -> str | None:
        return self.cell_run.run_id

    @property
    def results(self) -> list[AttackResult]:
        return self.cell_run.results

    @property
    def seconds(self) -> dict[str, float]:
        """Phase -> wall time spent in it (the benchmark reads them back from the run's tags)."""
        return self.timer.seconds

    def timed(self, phase: str):
        """Add the time spent inside to ``phase``; model training it triggered counts as ``train``."""
        return self.timer.timed(phase)

    # -- what the test works on ----------------------------------------------------------
    @property
    def seed(self) -> int:
        return self.session.settings.seed

    @property
    def dataset(self):
        return self.session.dataset

    def registered_model(self, recipe: str = ""):
        return self.session.model(self.architecture, recipe)

    def classifier(self, recipe: str = ""):
        return self.session.classifier(self.architecture, recipe)

    def eval_set(self):
        return self.session.eval_set(self.architecture)

    # -- the MLflow run of this test (``CellRun``) -------------------------------------------
    def ensure_run(self) -> str:
        return self.cell_run.ensure_run()

    def record(self, name: str, value: Any) -> None:
        """One JUnit property on this test case (it travels with the report under xdist)."""
        self.cell_run.record(name, value)

    def log_metrics(self, values: Mapping[str, float], junit: bool = True) -> None:
        self.cell_run.log_metrics(values, junit)

    def log_params(self, params: Mapping[str, Any], junit: bool = True) -> None:
        self.cell_run.log_params(params, junit)

    def log_result(self, result: AttackResult, prefix: str = "", undefended: AttackResult | None = None) -> None:
        self.cell_run.log_result(result, prefix, undefended)

    def log_examples(self, result: AttackResult, prefix: str = "", undefended: AttackResult | None = None) -> None:
        self.cell_run.log_examples(result, prefix, undefended)

    # -- attacks ---------------------------------------------------------------------------
    def attack(self, name: str, recipe: str = "", *, max_samples: int | None = None, **params: Any) -> AttackResult:
        """Run (or reuse) attack ``name`` on this test's model and log the cell. ``max_samples`` caps the
        attacked images for an attack too slow for the whole set (an explicit ``--samples`` wins)."""
        spec = get_attack(name)
        result = self.crafter.craft(spec, spec.resolve(params), self.crafter.slot(recipe), max_samples=max_samples,
                                    stream=True)
        self.log_result(result)
        if ensemble.is_ensemble(result):  # AutoAttack: which attack broke each image
            with self.timed("log"):
                ensemble.log_attribution(self.session.tracker, self.ensure_run(), result,
                                         class_names=self.session.data_info.class_names)
        return result

    def measure(self, name: str, recipe: str = "", *, max_samples: int | None = None, **params: Any) -> AttackResult:
        """Attack ``name``'s result (shared memo and cache), not logged: to compare another cell's
        result with (e.g. PGD against FGM at the same eps); the cell's own result is ``attack``'s.
        ``max_samples`` as for ``attack`` (to compare on the same images)."""
        spec = get_attack(name)
        return self.crafter.craft(spec, spec.resolve(params), self.crafter.slot(recipe), max_samples=max_samples,
                                  stream=True)

    def defend(self, result: AttackResult, defense: str, threat_model: str = "oblivious", **params: Any) -> AttackResult:
        """``result``'s attack under ``defense`` for one threat model, logged beside it (``Defender.defend``)."""
        return self.defender.defend(result, defense, threat_model, **params)

    def transfer(self, name: str, source_architecture: str, **params: Any) -> AttackResult:
        """Attack ``name`` crafted on ``source_architecture``'s model, judged here (``Transfers.transfer``)."""
        return self.transfers.transfer(name, source_architecture, **params)

    def transfer_from_baseline(self, name: str, **params: Any) -> AttackResult:
        """Attack ``name`` crafted on the ``--baseline-uri`` model, judged here (``Transfers``)."""
        return self.transfers.transfer_from_baseline(name, **params)

    def infer(self, run_id: str, artifact: str = "adversarial_examples.npz") -> AttackResult:
        """Dioptra's ``infer``: this model on the adversarial set another run logged (``Transfers.infer``)."""
        return self.transfers.infer(run_id, artifact)

    # -- properties (``Properties``) ---------------------------------------------------------------
    def invariant(self, t, threshold: float | None = None, *, per_image: bool = False,
                  max_samples: int | None = None) -> dict[str, float]:
        """Fail unless the model keeps its accuracy (or, ``per_image``, its labels) under transform ``t``."""
        return self.properties.invariant(t, threshold, per_image=per_image, max_samples=max_samples)

    def spatial_grid(self, max_translation: float = 10.0, num_translations: int = 3, max_rotation: float = 30.0,
                     num_rotations: int = 7, *, max_samples: int | None = None) -> dict[str, float]:
        """The universal and per-image worst case on ART's grid of rotations and translations."""
        return self.properties.spatial_grid(max_translation, num_translations, max_rotation, num_rotations,
                                            max_samples=max_samples)

    def corruption_errors(self, severities=(1, 2, 3, 4, 5), names=None, *,
                          max_samples: int | None = None) -> dict[str, float]:
        """Accuracy under every corruption x severity, its mean and, against the baseline, the mCE."""
        return self.properties.corruption_errors(severities, names, max_samples=max_samples)

    def baseline_metrics(self, result: AttackResult) -> dict[str, float] | None:
        return self.baseline.metrics_and_correctness(result)[0]

    def cell_key(self, result: AttackResult) -> str:
        return self.baseline.cell_key(result)

    # -- verdict -----------------------------------------------------------------------------
    def check(self, result: AttackResult | Mapping[str, float], **floors: float) -> None:
        """Fail the test, listing every violated bound: the suite's ``floors``, overridden per metric by
        configured thresholds, and with ``--baseline-uri`` no drop of more than the tolerance below
        the baseline model on the same cell."""
        if not isinstance(result, AttackResult):  # a property cell's values: configured by its kind, if any
            kind = self.properties.kind
            bounds = (self.session.thresholds.bounds_for(Cell(kind, {}, self.architecture), dict(result), floors)
                      if kind else [Bound(k, ">=", v, "suite default") for k, v in floors.items()])
            failures = check_bounds(dict(result), bounds)
            if failures:
                pytest.fail(f"{self.item.name}: " + "; ".join(failures), pytrace=False)
            return
        settings = self.session.settings
        cell = result.cell
        bounds = self.session.thresholds.bounds_for(cell, result.metrics, floors)
        baseline, baseline_correct = (self.baseline.metrics_and_correctness(result)
                                      if settings.baseline_uri_for(self.architecture) else (None, None))
        paired_failures, notes = [], []
        if baseline is not None:
            tolerance, origin = self.session.thresholds.max_regression_for(cell)
            uri = self.registered_model(BASELINE).uri
            correct = correctness(result)
            for bound in [b for b in bounds if b.op == ">=" and b.metric in baseline]:
                if baseline_correct is not None and bound.metric in correct and bound.metric in baseline_correct \
                        and len(correct[bound.metric]) == len(baseline_correct[bound.metric]):
                    failure, note = self._paired(bound.metric, correct[bound.metric], baseline_correct[bound.metric],
                                                 uri, tolerance, origin)
                    paired_failures += [failure] if failure else []
                    notes += [note] if note else []
                else:  # no per-image record of the baseline: the point comparison
                    bounds.append(Bound(bound.metric, ">=", baseline[bound.metric] - tolerance,
                                        f"baseline {uri} {baseline[bound.metric]:.4f} - max_regression {tolerance:g} "
                                        f"[{origin}]"))
        masking_line = self._gradient_masking(result)
        self._record_cell(result, cell, baseline, notes)
        failures = check_bounds(result.metrics, bounds, result.sample_sizes) + paired_failures
        suspected = masking.report(masking_line, settings.gradient_masking)
        if suspected:
            failures.append(suspected)
        if failures:
            pytest.fail(f"{self.item.name}: " + "; ".join(failures), pytrace=False)

    def _paired(self, metric: str, candidate, baseline, uri: str, tolerance: float, origin: str):
        """The paired (McNemar) comparison of one metric: a failure message or None, and a resolution note."""
        significance = self.session.settings.significance
        comparison = statistics.mcnemar(candidate, baseline)
        failure = None
        if statistics.regression(comparison, tolerance, significance):
            failure = (f"{metric} {comparison.candidate:.4f} vs baseline {uri} {comparison.baseline:.4f}: worse by "
                       f"{-comparison.difference:.4f} > max_regression {tolerance:g} [{origin}], significant: "
                       f"{comparison.describe()} < {significance:g} [--significance]")
        discordance = (comparison.only_candidate + comparison.only_baseline) / max(comparison.n, 1)
        note = statistics.resolution_note(comparison.n, tolerance, discordance, significance)
        self.log_metrics({f"{metric}_paired_p_value": comparison.p_value,
                          f"{metric}_paired_difference": comparison.difference}, junit=False)
        return failure, (f"{metric}: {note}" if note else "")

    def _gradient_masking(self, result: AttackResult) -> str:
        """Probe the classifier that crafted ``result`` (memoised per model and defense); log and return the verdict."""
        settings = self.session.settings
        if settings.gradient_masking == "off" or result.crafted_on is None:
            return ""
        slot = result.crafted_on
        n = masking.probe_size(len(result.y_true), int(np.prod(self.session.data_info.input_shape)))
        rows = stratified_subset(result.y_true, n)  # every class (a folder's images come class by class)
        y = result.y_true[rows]
        # a streamed result keeps a sample of its images: the probe's are read again
        x = self.session.stream_rows(rows) if result.kept_index is not None else result.x_clean[rows]

        def model():  # logits (behind the defense's compiled form, if any): the kernels' loss is on logits
            if slot.attack_model is not None:
                return slot.attack_model()
            return self.session.classifier(slot.architecture, slot.recipe).model

        # The compiled kernels where the cell's own attack could use them, else ART's classes (BPDA, EoT)
        compiled = settings.attack_backend == "compiled" and (not slot.defense_key or slot.attack_model is not None)
        probe = masking.Probe(self.session.score_memo(slot),
                              slot.classifier or self.session.lazy_classifier(slot.architecture, slot.recipe), model,
                              x, y, self.seed, compiled=compiled)
        with self.timed("probe"):
            values, findings = masking.assess(probe, masking.cell_eps(result.params))
        line = masking.verdict(findings)
        self.log_metrics(values, junit=False)
        self.cell_run.set_tags({
            "robustness.gradient_masking": ", ".join(f.check for f in findings) or "none suspected",
            **({"robustness.gradient_masking_detail": line} if line else {})})
        self.record("robustness.gradient_masking", ", ".join(f.check for f in findings) or "none suspected")
        return line

    def _record_cell(self, result: AttackResult, cell: Cell, baseline: Mapping[str, float] | None,
                     notes: list[str] = ()) -> None:
        """Tags (and the per-image correctness) that let later sessions reuse this cell's numbers as a
        baseline, and the summary row."""
        candidate = self.registered_model("").uri
        tags = {"robustness.cell_key": self.cell_key(result), "robustness.cell_model": candidate,
                "robustness.cell_prefix": result.log_prefix, "robustness.correctness": CORRECTNESS_FILE}
        self.session.tracker.log_bytes(self.ensure_run(), CORRECTNESS_FILE, correctness_npz(correctness(result)))
        headline = "robust_accuracy" if "robust_accuracy" in result.metrics else "adversarial_accuracy"
        value = result.metrics.get(headline, float("nan"))
        for end in ("low", "high"):
            if f"{headline}_ci_{end}" in result.metrics:
                self.record(f"robustness.value_ci_{end}", round(result.metrics[f"{headline}_ci_{end}"], 6))
        if notes:
            self.record("robustness.resolution", "; ".join(notes))
        self.record("robustness.architecture", self.architecture)
        self.record("robustness.row", f"{result.attack} {self.case_id(result.attack, result.params)}".strip())
        column = cell.defense if cell.defense == "none" else f"{cell.defense} ({cell.threat_model})"
        self.record("robustness.column", f"crafted on {cell.source_architecture}" if cell.source_architecture else column)
        self.record("robustness.value", round(float(value), 6))
        self.record("robustness.candidate", candidate)
        metrics = {}
        if baseline is not None and headline in baseline:
            self.record("robustness.baseline_value", round(float(baseline[headline]), 6))
            metrics = {f"baseline_{k}": v for k, v in baseline.items() if k in JUNIT_METRICS}
            tags["robustness.baseline_uri"] = self.registered_model(BASELINE).uri
        self.session.tracker.log_batch(self.ensure_run(), metrics=metrics, tags=tags)

    def case_id(self, attack: str, params: Mapping[str, Any]) -> str:
        """The parameters' test-id form ("" for a name no attack is registered under, e.g. ``infer``)."""
        try:
            return case_id(get_attack(attack).schema, params)
        except RobustnessUsageError:
            return ""

