"""The ``robustness`` fixture's object: run an attack on this test's model, log it, check thresholds.

One test = one cell of the robustness matrix = one nested MLflow run. Metrics
go to that run and to the JUnit test case as properties; the examples they were
computed on go to the run as ``adversarial_examples.npz`` so anyone can
recompute them with ART and the registered model.

The cell API lives here; scoring (``scoring``), the cell's artifacts
(``cell_artifacts``), defended cells (``defended_cells``), the baseline look-up
(``baselines``) and transfer cells (``transfer_cells``) have their own modules.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Mapping

import pytest

from . import cell_artifacts, ensemble, masking, patch_control, per_class, statistics, targets
from .attack_result import AttackResult, correctness
from .attacks import get_attack
from .attacks.base import seed_everything
from .baselines import CORRECTNESS_FILE, BaselineCell, correctness_npz
from .defended_cells import DefendedCell
from .errors import RobustnessUsageError
from .metric_names import DEFENSE_METRICS, JUNIT_METRICS
from .model_slots import BASELINE
from .params import case_id
from .scoring import score
from .session import RobustnessSession
from .thresholds import Bound, Cell, check_bounds
from .transfer_cells import TransferCell


class Robustness(TransferCell, DefendedCell, BaselineCell):
    """Handed to each suite test: its architecture's model, data, classifier and MLflow run."""

    def __init__(self, session: RobustnessSession, item: pytest.Item, architecture: str):
        self.session = session
        self.item = item
        self.architecture = architecture
        self.run_id: str | None = None
        self.results: list[AttackResult] = []
        self.seconds: dict[str, float] = {}  # phase -> wall time spent in it (the benchmark reads them back)

    @contextlib.contextmanager
    def timed(self, phase: str):
        """Add the time spent inside to ``phase``; model training it triggered counts as ``train``."""
        started, trained = time.perf_counter(), self.session.training_seconds
        try:
            yield
        finally:
            trained = self.session.training_seconds - trained
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - started - trained
            if trained:
                self.seconds["train"] = self.seconds.get("train", 0.0) + trained

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

    # -- the MLflow run of this test -----------------------------------------------------
    def ensure_run(self) -> str:
        if self.run_id is None:
            tracker = self.session.tracker
            self.run_id = tracker.start_child_run(self.item.name, {
                "robustness.nodeid": self.item.nodeid, "robustness.architecture": self.architecture,
                "robustness.kind": "test"}, buffered=True)
            _, _, input_range = self.session.adaptation(self.architecture)
            model_output = self.session.model_output(self.architecture)
            tracker.log_params(self.run_id, {"architecture": self.architecture, "seed": self.seed,
                                             **self.session.dataset.params,
                                             "attack_backend": self.session.settings.attack_backend,
                                             "model_output": model_output,
                                             "input_range": ",".join(f"{v:g}" for v in input_range)})
        return self.run_id

    def record(self, name: str, value: Any) -> None:
        """One JUnit property on this test case (it travels with the report under xdist)."""
        self.item.user_properties.append((name, value))

    # JUnit first, MLflow second: a fault of the tracking server loses nothing from the report.
    def log_metrics(self, values: Mapping[str, float], junit: bool = True) -> None:
        if junit:
            for name, value in values.items():
                self.record(name, round(float(value), 6))
        self.session.tracker.log_metrics(self.ensure_run(), values)

    def log_params(self, params: Mapping[str, Any], junit: bool = True) -> None:
        if junit:
            for name, value in params.items():
                self.record(name, value)
        self.session.tracker.log_params(self.ensure_run(), params)

    # -- attacks ---------------------------------------------------------------------------
    def attack(self, name: str, recipe: str = "", *, max_samples: int | None = None, **params: Any) -> AttackResult:
        """Run (or reuse) attack ``name`` on this test's model and log the cell. ``max_samples`` caps the
        attacked images for an attack too slow for the whole set (an explicit ``--samples`` wins)."""
        spec = get_attack(name)
        result = self._craft(spec, spec.resolve(params), recipe=recipe, max_samples=max_samples)
        self.log_result(result)
        if ensemble.is_ensemble(result):  # AutoAttack: which attack broke each image
            with self.timed("log"):
                ensemble.log_attribution(self.session.tracker, self.ensure_run(), result,
                                         class_names=self.dataset.class_names)
        return result

    def measure(self, name: str, recipe: str = "", *, max_samples: int | None = None, **params: Any) -> AttackResult:
        """Attack ``name``'s result (shared memo and cache), not logged: to compare another cell's
        result with (e.g. PGD against FGM at the same eps); the cell's own result is ``attack``'s. ``max_samples``
        as for ``attack`` (to compare on the same images)."""
        spec = get_attack(name)
        return self._craft(spec, spec.resolve(params), recipe=recipe, max_samples=max_samples)

    def _craft(self, spec, resolved: dict[str, Any], *, recipe: str = "", classifier=None,
               defence_key: str = "", attack_model=None, max_samples: int | None = None) -> AttackResult:
        """Examples of attack ``spec`` (memoised/cached generation, then any deployment), scored
        by ``classifier`` (default: the recipe's undefended classifier), which they were crafted on."""
        x, y = self.eval_set()
        if max_samples and not self.session.settings.samples:
            x, y = x[:max_samples], y[:max_samples]
        source = self.dataset.x_train if spec.generate_on == "train" else x
        with self.timed("craft_adaptive" if defence_key or recipe else "craft"):
            run = self.session.attack_run(self.architecture, spec.name, resolved, source, recipe=recipe,
                                          classifier=classifier, defence_key=defence_key, attack_model=attack_model)
            deployed = self.session.deployment(run, x, resolved) if spec.deploy is not None else None
        params = {**resolved, **run.extra_params}
        seed_everything(self.seed)  # randomised defenses (Gaussian noise) predict reproducibly
        scorer = classifier or self.session.predictor(self.architecture, recipe)
        with self.timed("score"):
            result = score(spec.name, params, self.registered_model(recipe).uri, x, y,
                           deployed.x if deployed is not None else run.x_adv, scorer, run, deployed,
                           params.get("patch_target"), memo=self._score_memo(recipe, defence_key))
        result.architecture = self.architecture
        result.crafted_on = (recipe, defence_key, classifier, attack_model)
        robust = None
        if ensemble.is_ensemble(result):
            ensemble.add_metrics(result)
            robust = ensemble.robust_images(result)
        per_class.add_metrics(result, self.dataset.class_names, robust)
        if targets.has_targets(result):  # per-image targets (APGD-T): the attacker's view beside the defender's
            targets.add_metrics(result)
        if deployed is not None:
            with self.timed("score"):
                self._add_control(result, spec, params, scorer, recipe, defence_key)
        return result

    def _add_control(self, result: AttackResult, spec, params: dict[str, Any], classifier, recipe: str,
                     defence_key: str) -> None:
        """A patch cell's random-noise control, deployed the same way, scored by the same classifier."""
        values = patch_control.control_metrics(
            self._score_memo(recipe, defence_key), spec, result.run.x_adv, result.x_clean, result.y_true,
            result.clean_predictions, params, self.seed, classifier, params.get("patch_target"), result.metrics)
        result.metrics.update(values)
        result.metrics.update(statistics.intervals(values, result.sample_sizes))

    def _score_memo(self, recipe: str, defence_key: str):
        """Scores are a pure function of the classifier (weights, defences, seed) and the inputs."""
        scoring = self.session.scoring_key(self.architecture, recipe, defence_key)
        return lambda key, compute: self.session.memoised((*scoring, *key), compute)

    # -- logging -------------------------------------------------------------------------------
    def log_result(self, result: AttackResult, prefix: str = "", undefended: AttackResult | None = None) -> None:
        """Params, metrics and evidence of ``result``; with ``prefix`` (a defended result beside
        its undefended one in the same run) every name gets it, except the defense's own metrics."""
        with self.timed("log"):
            self._log_result(result, prefix, undefended)

    def _log_result(self, result: AttackResult, prefix: str, undefended: AttackResult | None) -> None:
        self.results.append(result)
        result.log_prefix = prefix
        params = {f"{prefix}{k}": v for k, v in {
            "attack": result.attack, "model_uri": result.model_uri, "samples": len(result.x_clean),
            **{f"{result.attack}.{k}": v for k, v in result.params.items()}}.items()}
        named = {(k if k in DEFENSE_METRICS else f"{prefix}{k}"): v for k, v in result.metrics.items()}
        tags = {f"robustness.{prefix}examples": result.run.reused or "computed"} if result.run is not None else {}
        for name, value in params.items():  # the JUnit report first: it holds whatever MLflow loses
            self.record(name, value)
        for name, value in named.items():
            if name in JUNIT_METRICS or name.removeprefix(prefix) in JUNIT_METRICS:
                self.record(name, round(float(value), 6))
        # One round trip to the tracking store per result, not one per kind of record.
        self.session.tracker.log_batch(self.ensure_run(), params=params, metrics=named, tags=tags)
        self.log_examples(result, prefix, undefended)

    def log_examples(self, result: AttackResult, prefix: str = "", undefended: AttackResult | None = None) -> None:
        """Examples, per-image distances and evidence PNGs (``cell_artifacts``) into this test's run."""
        cell_artifacts.log_examples(self.session.tracker, self.ensure_run(), self.session.cache, result, prefix,
                                    undefended, self.dataset.class_names)

    # -- verdict -----------------------------------------------------------------------------
    def check(self, result: AttackResult | Mapping[str, float], **floors: float) -> None:
        """Fail the test, listing every violated bound: the suite's ``floors``, overridden per metric by
        configured thresholds, and with ``--baseline-uri`` no drop of more than the tolerance below
        the baseline model on the same cell."""
        if not isinstance(result, AttackResult):
            failures = check_bounds(dict(result), [Bound(k, ">=", v, "suite default") for k, v in floors.items()])
            if failures:
                pytest.fail(f"{self.item.name}: " + "; ".join(failures), pytrace=False)
            return
        settings = self.session.settings
        cell = Cell(result.attack, result.params, self.architecture, result.defense, result.threat_model,
                    result.source_architecture)
        bounds = self.session.thresholds.bounds_for(cell, result.metrics, floors)
        baseline, baseline_correct = (self._baseline(result) if settings.baseline_uri_for(self.architecture)
                                      else (None, None))
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
        recipe, defence_key, classifier, attack_model = result.crafted_on
        n = min(masking.PROBE_IMAGES, len(result.x_clean))
        x, y = result.x_clean[:n], result.y_true[:n]

        def model():  # logits (behind the defense's compiled form, if any): the kernels' loss is on logits
            if attack_model is not None:
                return attack_model()
            return self.session.classifier(self.architecture, recipe).model

        # The compiled kernels where the cell's own attack could use them, else ART's classes (BPDA, EoT)
        compiled = settings.attack_backend == "compiled" and (not defence_key or attack_model is not None)
        probe = masking.Probe(self._score_memo(recipe, defence_key),
                              classifier or self.session.lazy_classifier(self.architecture, recipe), model, x, y,
                              self.seed, compiled=compiled)
        with self.timed("probe"):
            values, findings = masking.assess(probe, masking.cell_eps(result.params))
        line = masking.verdict(findings)
        self.log_metrics(values, junit=False)
        self.session.tracker.set_tags(self.ensure_run(), {
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

    # -- transfer (transfer_cells.TransferCell has the public methods) ------------------------------
    def _judge(self, crafted: AttackResult, recipe: str = "") -> AttackResult:
        """This cell's model (``recipe``'s slot) scored on ``crafted``'s examples as they are."""
        seed_everything(self.seed)
        with self.timed("score"):
            judged = score(crafted.attack, crafted.params, self.registered_model(recipe).uri, crafted.x_clean,
                           crafted.y_true, crafted.x_adv, self.session.predictor(self.architecture, recipe),
                           crafted.run, crafted.deployed, crafted.params.get("patch_target"),
                           memo=self._score_memo(recipe, ""))
        judged.architecture = self.architecture
        judged.source_architecture = crafted.source_architecture or crafted.architecture
        judged.source_model_uri, judged.examples_uri = crafted.source_model_uri or crafted.model_uri, crafted.examples_uri
        return judged



__all__ = ["AttackResult", "Robustness", "score"]
