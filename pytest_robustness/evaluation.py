"""The ``robustness`` fixture's object: run an attack on this test's model, log it, check thresholds.

One test = one cell of the robustness matrix = one nested MLflow run. Metrics
go to that run and to the JUnit test case as properties; the examples they were
computed on go to the run as ``adversarial_examples.npz`` so anyone can
recompute them with ART and the registered model.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import pytest

from . import evidence, masking
from . import metrics as m
from . import patch_control, randomised, statistics
from .attacks import Deployed, get_attack
from .attacks.base import seed_everything
from .datasets import content_digest, freeze
from .defenses import bpda, check_threat_model, get_defense
from .errors import RobustnessUsageError
from .metric_names import DEFENSE_METRICS, JUNIT_METRICS, KNOWN_METRICS, PAIRED_METRICS  # noqa: F401  (re-exported)
from .mlflow_search import all_of, equals
from .params import case_id
from .session import AttackRun, LazyClassifier, RobustnessSession, predict_in_batches, unwrap
from .session import BASELINE
from .thresholds import Bound, Cell, check_bounds
from .transfer_cells import TransferCell


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
    # What crafted the examples: (recipe, defence key, classifier or None for the undefended model).
    crafted_on: tuple | None = None
    # Transfer cells (examples crafted on another model): where the examples came from.
    source_architecture: str = ""
    source_model_uri: str = ""
    examples_uri: str = ""  # runs:/ID/ARTIFACT when read back from another MLflow run

    @property
    def clean_predictions(self) -> np.ndarray:
        return self.clean_probabilities.argmax(axis=1)

    @property
    def adversarial_predictions(self) -> np.ndarray:
        return self.adversarial_probabilities.argmax(axis=1)

    @property
    def source_index(self) -> np.ndarray:
        return self.deployed.source_index if self.deployed is not None else np.arange(len(self.x_adv))

    @property
    def modified(self) -> np.ndarray:
        """Which adversarial-set images carry the attack (all, except for deployed attacks)."""
        return self.deployed.modified if self.deployed is not None else np.ones(len(self.x_adv), dtype=bool)

    @property
    def y_adversarial(self) -> np.ndarray:
        return self.y_true[self.source_index]


SCORE_VERSION = 2  # 2: keyed by one digest per array (each array is hashed once per session)
EVIDENCE_VERSION = 1  # bump when the evidence pictures change: it keys the cached PNGs


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


def score(attack: str, params: Mapping[str, Any], model_uri: str, x_clean, y_true, x_adv, classifier,
          run: AttackRun | None = None, deployed: Deployed | None = None, target: int | None = None,
          *, memo: Callable[[tuple, Callable[[], dict]], dict] | None = None) -> AttackResult:
    """Predict clean and adversarial sets once and derive every metric from those predictions.

    For a deployed attack the adversarial set is the deployed one (Dioptra's
    ``infer`` on the patched data set: with ``augment`` or a rate below 1 it holds
    clean images too); ``patched_accuracy`` and ``targeted_success_rate`` (the
    fraction classified as ``target``) are measured on the patched images only.

    ``memo(key, compute)`` (the session's content-addressed memo, keyed by the
    classifier's weights, defences and seed) lets a re-run skip the prediction
    and the metric arithmetic: same inputs, same arrays, same numbers.
    """
    source = deployed.source_index if deployed is not None else identity_index(len(x_adv))
    modified = deployed.modified if deployed is not None else all_modified(len(x_adv))

    def measure() -> dict[str, np.ndarray]:
        clean_p = predict_in_batches(classifier, x_clean, 256)
        adv_p = predict_in_batches(classifier, x_adv, 256)
        distances = m.distance_table(x_clean, x_adv, source)
        values = _metrics(y_true, clean_p, adv_p, source, modified if deployed is not None else None, target,
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
    return AttackResult(attack, dict(params), model_uri, x_clean, y_true, x_adv, parts["clean_probabilities"],
                        parts["adversarial_probabilities"], values, distances, run, deployed=deployed,
                        sample_sizes=sizes)


def _metrics(y_true, clean_p, adv_p, source, modified, target, distances) -> dict[str, float]:
    y_adv = y_true[source]
    clean_pred, adv_pred = clean_p.argmax(1), adv_p.argmax(1)
    values = {
        "clean_accuracy": m.accuracy(y_true, clean_pred),
        "adversarial_accuracy": m.accuracy(y_adv, adv_pred),
        "attack_success_rate": m.attack_success_rate(y_adv, clean_pred[source], adv_pred),
        **m.summarise_distances(distances),
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


class Robustness(TransferCell):
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
        return result

    def measure(self, name: str, recipe: str = "", **params: Any) -> AttackResult:
        """Attack ``name``'s result (shared memo and cache), not logged: to compare another cell's
        result with (e.g. PGD against FGM at the same eps); the cell's own result is ``attack``'s."""
        spec = get_attack(name)
        return self._craft(spec, spec.resolve(params), recipe=recipe)

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
        result.crafted_on = (recipe, defence_key, classifier)
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

    # -- defenses ------------------------------------------------------------------------------
    def defend(self, result: AttackResult, defense: str, threat_model: str = "oblivious", **params: Any) -> AttackResult:
        """``result``'s attack under ``defense``, for one threat model; logged beside ``result``.

        ``oblivious``: ``result``'s own examples (not regenerated) through the
        defended classifier. ``adaptive``: the same attack and parameters crafted
        against the defended classifier (BPDA through preprocessors; for ``pgd``,
        against the adversarially trained model). ``defended_accuracy`` is the
        defended model's accuracy on its examples; ``accuracy_gain`` is that minus
        ``result``'s adversarial accuracy (on the very same examples when oblivious).
        """
        resolved = get_defense(defense).resolve(params)
        check_threat_model(threat_model)
        defended = self._defend(result, defense, threat_model, resolved)
        self.log_defended(result, defended)
        return defended

    def _defend(self, result: AttackResult, defense: str, threat_model: str, resolved: dict[str, Any],
                base_recipe: str = "") -> AttackResult:
        """``defend`` without logging; ``base_recipe`` picks the defended model's slot (the baseline's too)."""
        spec = get_defense(defense)
        attack = get_attack(result.attack)
        attack_params = attack.resolve({k: v for k, v in result.params.items() if k in attack.schema})
        recipe = spec.training_recipe(resolved) or base_recipe  # adversarial training, apply_fit: own model
        key = spec.key(resolved) if spec.preprocessor is not None else ""
        # Built on first use: a cached result needs neither the model nor the defense.
        draws = randomised.eot_samples(resolved) if key else 1
        classifier = self.session.lazy_classifier(
            self.architecture, recipe, defences=(lambda: (bpda(spec.preprocessor(resolved)),)) if key else (),
            defence_key=key)
        if draws > 1:  # a randomised defense: adaptive gradients by Expectation over Transformation
            classifier = LazyClassifier(lambda plain=classifier: randomised.with_eot(unwrap(plain), draws))
        if threat_model == "oblivious":
            seed_everything(self.seed)
            with self.timed("score"):
                defended = score(result.attack, result.params, self.registered_model(recipe).uri, result.x_clean,
                                 result.y_true, result.x_adv, classifier, result.run, result.deployed,
                                 result.params.get("patch_target"), memo=self._score_memo(recipe, key))
            defended.crafted_on = result.crafted_on
            if result.deployed is not None:
                with self.timed("score"):
                    self._add_control(defended, attack, result.params, classifier, recipe, key)
        else:
            compiled_form = spec.compiled(resolved) if key and spec.compiled is not None else None
            attack_model = (lambda: self.session.defended_model(self.architecture, recipe, key, compiled_form)
                            ) if compiled_form is not None else None
            defended = self._craft(attack, attack_params, recipe=recipe, classifier=classifier if key else None,
                                   defence_key=key, attack_model=attack_model)
        rows = defended.x_adv[_grid_rows(defended)]
        if spec.preprocessor is None or not resolved["apply_predict"]:
            defended.defended_inputs = rows
        else:
            def view(seed=self.seed) -> np.ndarray:
                seed_everything(seed)  # randomised defenses (Gaussian noise) draw reproducibly
                return np.asarray(spec.preprocessor(resolved)(rows)[0])

            defended.defended_inputs = Deferred(("defended_view", key, self.seed, content_digest(rows)),
                                                view)
        defended.architecture, defended.defense, defended.threat_model = self.architecture, defense, threat_model
        defended.defense_params = resolved
        defended.undefended = result
        accuracy, spread = defended.metrics["adversarial_accuracy"], {}
        if draws > 1:  # defended accuracy of a randomised defense: the mean over prediction draws
            def over_draws() -> dict[str, np.ndarray]:
                seed_everything(self.seed)
                return {"accuracy": randomised.accuracy_over_draws(classifier, defended.x_adv,
                                                                   defended.y_adversarial, draws)}

            per_draw = self._score_memo(recipe, key)(
                ("accuracy_over_draws", content_digest(defended.x_adv), content_digest(defended.y_adversarial),
                 draws), over_draws)["accuracy"]
            accuracy, spread = float(per_draw.mean()), {"defended_accuracy_std": float(per_draw.std())}
        defended.metrics.update({
            "defended_accuracy": accuracy, **spread,
            "accuracy_gain": accuracy - result.metrics["adversarial_accuracy"],
            "clean_accuracy_gain": defended.metrics["clean_accuracy"] - result.metrics["clean_accuracy"],
        })
        defended.metrics.update(statistics.intervals({"defended_accuracy": accuracy}, defended.sample_sizes))
        return defended

    def log_defended(self, undefended: AttackResult, defended: AttackResult) -> None:
        self.log_params({"defense": defended.defense, "threat_model": defended.threat_model,
                         **{f"{defended.defense}.{k}": v for k, v in defended.defense_params.items()}})
        self.session.tracker.set_tags(self.ensure_run(), {"robustness.defense": defended.defense,
                                                          "robustness.threat_model": defended.threat_model})
        self.log_result(defended, prefix="defended_", undefended=undefended)

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
        """Examples, per-image distances and evidence PNGs. The examples file is content-addressed
        in the cache, so a re-run copies it instead of compressing megabytes again."""
        tracker, run_id, cache = self.session.tracker, self.ensure_run(), self.session.cache
        if undefended is None or result.x_adv is not undefended.x_adv:  # oblivious: the same examples, logged once
            # A deployed attack's rows also say which clean image each derives from and whether it carries
            # the attack, so the file alone gives every adversarial image its label.
            pairing = {"source_index": result.source_index, "modified": result.modified} if result.deployed else {}
            key = cache.key("examples", 2, *(content_digest(a) for a in (result.x_clean, result.x_adv, result.y_true,
                                                                           *pairing.values())))
            with cache.file(key, f"{prefix}adversarial_examples.npz", lambda path: write_npz(
                    path, x_clean=result.x_clean, x_adv=result.x_adv, y_true=result.y_true, **pairing)) as npz:
                tracker.log_artifact(run_id, npz)
            if result.distances:
                with cache.file(key, f"{prefix}distance_metrics.csv",
                                lambda path: path.write_bytes(distance_csv(result.distances))) as csv_file:
                    tracker.log_artifact(run_id, csv_file)
        # Pictures are content-addressed too: keyed by what is drawn, drawn only when missing.
        if result.attack == "patch" and result.run is not None:
            patches = result.run.x_adv
            key = cache.key("patch.png", EVIDENCE_VERSION, content_digest(patches))
            with cache.file(key, f"{prefix}patch.png",
                            lambda path: path.write_bytes(evidence.patch_png(patches))) as png:
                tracker.log_artifact(run_id, png)
        columns = sample_columns(result, undefended, self.dataset.class_names)
        key = cache.key("samples.png", EVIDENCE_VERSION,
                        [(title, images.key if isinstance(images, Deferred) else content_digest(images), list(captions))
                         for title, images, captions in columns])
        with cache.file(key, f"{prefix}samples.png", lambda path: path.write_bytes(evidence.sample_grid_png(
                [(title, np.asarray(images), captions) for title, images, captions in columns]))) as png:
            tracker.log_artifact(run_id, png)

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
        recipe, defence_key, classifier = result.crafted_on
        n = min(masking.PROBE_IMAGES, len(result.x_clean))
        x, y = result.x_clean[:n], result.y_true[:n]

        def model():  # the classifier's logits model: the compiled kernels' loss is on logits
            return self.session.classifier(self.architecture, recipe).model

        probe = masking.Probe(self._score_memo(recipe, defence_key),
                              classifier or self.session.lazy_classifier(self.architecture, recipe), model, x, y,
                              self.seed, compiled=not defence_key)
        values, findings = masking.assess(probe, masking.cell_eps(result.params))
        line = masking.verdict(findings)
        self.log_metrics(values, junit=False)
        self.session.tracker.set_tags(self.ensure_run(), {
            "robustness.gradient_masking": ", ".join(f.check for f in findings) or "none suspected",
            **({"robustness.gradient_masking_detail": line} if line else {})})
        self.record("robustness.gradient_masking", ", ".join(f.check for f in findings) or "none suspected")
        return line

    # -- baseline ------------------------------------------------------------------------------
    def cell_key(self, result: AttackResult) -> str:
        """Identity of a cell's numbers apart from the model: attack, parameters, defense, data, seed,
        backend (and, through the cache key, the library versions; for transfer cells, where the examples
        came from)."""
        source = [result.source_architecture, result.source_model_uri, result.examples_uri]
        return self.session.cache.key("cell", result.attack, sorted(result.params.items()), result.defense,
                                      sorted(result.defense_params.items()), result.threat_model,
                                      self.dataset.digest, self.seed, len(result.x_clean), self.architecture,
                                      self.session.settings.attack_backend, *(source if any(source) else []))

    def baseline_metrics(self, result: AttackResult) -> dict[str, float] | None:
        return self._baseline(result)[0]

    def _baseline(self, result: AttackResult) -> tuple[dict[str, float] | None, dict[str, np.ndarray] | None]:
        """The baseline model's metrics on the same cell, and its per-image correctness: from an earlier
        MLflow run that computed them (e.g. when the baseline was itself the candidate), else computed now."""
        stored = self._stored_cell_metrics(self.cell_key(result), self.registered_model(BASELINE).uri)
        if stored is not None:
            return stored
        if result.source_model_uri:  # a transfer cell: the baseline on the very same examples
            judged = self._judge(result, BASELINE)
            return judged.metrics, correctness(judged)
        spec = get_attack(result.attack)
        resolved = spec.resolve({k: v for k, v in result.params.items() if k in spec.schema})
        if result.defense == "none":
            base = self._craft(spec, resolved, recipe=BASELINE)
            return base.metrics, correctness(base)
        if result.undefended is None or get_defense(result.defense).training_recipe(result.defense_params):
            return None, None  # adversarially trained variants are derived from the candidate: no baseline cell
        base = self._craft(spec, resolved, recipe=BASELINE)
        defended = self._defend(base, result.defense, result.threat_model, result.defense_params, BASELINE)
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

    def _record_cell(self, result: AttackResult, cell: Cell, baseline: Mapping[str, float] | None,
                     notes: list[str] = ()) -> None:
        """Tags (and the per-image correctness) that let later sessions reuse this cell's numbers as a
        baseline, and the summary row."""
        candidate = self.registered_model("").uri
        tags = {"robustness.cell_key": self.cell_key(result), "robustness.cell_model": candidate,
                "robustness.cell_prefix": result.log_prefix, "robustness.correctness": CORRECTNESS_FILE}
        buffer = io.BytesIO()
        correct = correctness(result)
        np.savez_compressed(buffer, **{name: statistics.pack(v) for name, v in correct.items()},
                            **{f"{name}__n": np.array(len(v)) for name, v in correct.items()})
        self.session.tracker.log_bytes(self.ensure_run(), CORRECTNESS_FILE, buffer.getvalue())
        value = result.metrics.get("adversarial_accuracy", float("nan"))
        for end in ("low", "high"):
            if f"adversarial_accuracy_ci_{end}" in result.metrics:
                self.record(f"robustness.value_ci_{end}", round(result.metrics[f"adversarial_accuracy_ci_{end}"], 6))
        if notes:
            self.record("robustness.resolution", "; ".join(notes))
        self.record("robustness.architecture", self.architecture)
        self.record("robustness.row", f"{result.attack} {self.case_id(result.attack, result.params)}".strip())
        column = cell.defense if cell.defense == "none" else f"{cell.defense} ({cell.threat_model})"
        self.record("robustness.column", f"crafted on {cell.source_architecture}" if cell.source_architecture else column)
        self.record("robustness.value", round(float(value), 6))
        self.record("robustness.candidate", candidate)
        metrics = {}
        if baseline is not None and "adversarial_accuracy" in baseline:
            self.record("robustness.baseline_value", round(float(baseline["adversarial_accuracy"]), 6))
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


CORRECTNESS_FILE = "correctness.npz"


def correctness(result: AttackResult) -> dict[str, np.ndarray]:
    """Per-image correctness behind the paired metrics (a randomised defense: its first prediction draw)."""
    correct = {"clean_accuracy": result.clean_predictions == result.y_true,
               "adversarial_accuracy": result.adversarial_predictions == result.y_adversarial}
    if result.defense != "none":
        correct["defended_accuracy"] = correct["adversarial_accuracy"]
    return correct


GRID_ROWS = 8


def _grid_rows(result: AttackResult) -> np.ndarray:
    """The first few adversarial-set images that carry the attack."""
    return np.flatnonzero(result.modified)[:GRID_ROWS]


def sample_columns(result: AttackResult, undefended: AttackResult | None = None, class_names=()) -> list:
    """Columns of the evidence grid: clean / adversarial (undefended model) / defended input (defended model),
    captioned with class names (the label index where there are none)."""
    def name(label) -> str:
        return class_names[label] if 0 <= label < len(class_names) else str(label)

    base = undefended or result
    rows = _grid_rows(result)
    source = result.source_index[rows]
    columns = [
        ("clean", result.x_clean[source],
         [f"true {name(t)} pred {name(p)}" for t, p in zip(result.y_true[source], base.clean_predictions[source])]),
    ]
    if undefended is None:
        columns.append(("adversarial", result.x_adv[rows], [f"pred {name(p)}" for p in result.adversarial_predictions[rows]]))
        return columns
    # The undefended model on ``result``'s examples' counterparts (same positions, same sources).
    base_rows = _grid_rows(base)[:len(rows)]
    columns.append(("adversarial\n(undefended)", base.x_adv[base_rows],
                    [f"pred {name(p)}" for p in base.adversarial_predictions[base_rows]]))
    shown = result.defended_inputs if result.defended_inputs is not None else result.x_adv[rows]
    columns.append((f"{result.defense}\n({result.threat_model})", shown,
                    [f"pred {name(p)}" for p in result.adversarial_predictions[rows]]))
    return columns


NPZ_BLOCK = 1 << 20


def write_npz(path, **arrays: np.ndarray) -> None:
    """``np.savez_compressed``, streaming each array's bytes in blocks (numpy's writer copies each
    array whole, ``tobytes``, before compressing it)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for name, array in arrays.items():
            array = np.ascontiguousarray(array)
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, np.lib.format.header_data_from_array_1_0(array))
                data = memoryview(array.reshape(-1).view(np.uint8)) if array.size else memoryview(b"")
                for start in range(0, len(data), NPZ_BLOCK):
                    member.write(data[start:start + NPZ_BLOCK])


def distance_csv(table: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    names = list(table)
    writer.writerow(["image", *names])
    for i, row in enumerate(zip(*(table[n] for n in names))):
        writer.writerow([i, *(f"{v:.8g}" for v in row)])
    return buffer.getvalue().encode()


__all__ = ["AttackResult", "Robustness", "score"]
