"""Properties as robustness cells: ``robustness.invariant(t, threshold)`` and the spatial grid.

A property cell applies a transform (``transforms``, drawn by ``strategies``) to the cell's
evaluation images, predicts them with the cell's memoised predictor (a transform's predictions
are keyed by the transformed images' content, as any example's) and checks accuracy, or per-image
label invariance, against a threshold. Under ``@given`` Hypothesis calls the test body many times
in one pytest item: every call is one example, the cell keeps what they found (how many were
tried, the first failure, the worst transform, the last failure: the shrunk counterexample
Hypothesis replays to report) and logs it once, to the item's one MLflow run and its JUnit
properties, when the item's call ends (``plugin.property_hooks``). A part of the ``robustness``
cell, built on its ``Crafter`` (the model's slots, timing) and ``CellRun`` (logging).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from ..data.datasets import content_digest, freeze
from ..errors import RobustnessUsageError
from ..models.slot import BASELINE
from ..options.thresholds import Cell
from ..tracking.example_database import RegisteredModelExampleDatabase
from ..transforms import spatial_grid
from ..transforms.corruptions import CORRUPTIONS
from ..transforms.transform import Corruption, Transform
from . import pictures
from .cell_run import CellRun
from .crafting import Crafter

SHOWN = 8  # images in the logged picture


@dataclass
class Observation:
    index: int  # 1-based position among the examples of this item
    transform: Transform
    metric: str
    value: float
    threshold: float
    metrics: dict[str, float]
    shown: np.ndarray  # the first SHOWN transformed images
    predictions: np.ndarray
    baseline: float | None = None  # the --baseline-uri model's value under the same transform
    tolerance: float = 0.0  # max_regression below it
    baseline_uri: str = ""

    def violations(self) -> list[str]:
        name = self.metric.replace("_", " ")
        found = [f"{name} {self.value:.2f} < {self.threshold:.2f}"] if self.value < self.threshold else []
        if self.baseline is not None and self.value < self.baseline - self.tolerance:
            found.append(f"{name} {self.value:.2f} < baseline {self.baseline_uri} {self.baseline:.2f} - max_regression "
                         f"{self.tolerance:g}")
        return found

    @property
    def failed(self) -> bool:
        return bool(self.violations())

    def message(self) -> str:
        return f"{self.transform.describe()}: {'; '.join(self.violations())}"


@dataclass
class PropertySearch:
    """What the examples of one item found."""

    tried: int = 0
    first_failure: Observation | None = None
    last_failure: Observation | None = None
    worst: Observation | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def observe(self, seen: Observation) -> None:
        self.tried += 1
        if seen.failed:
            self.first_failure = self.first_failure or seen
            self.last_failure = seen
        if self.worst is None or seen.value < self.worst.value:
            self.worst = seen


class Properties:
    """The property cells of one test: ``invariant`` (searched by Hypothesis), the spatial grid and the
    corruption errors, on the cell's model."""

    def __init__(self, crafter: Crafter, cell_run: CellRun, item: pytest.Item):
        self.crafter = crafter
        self.cell_run = cell_run
        self.item = item
        self.session = crafter.session
        self.architecture = crafter.architecture
        self.timer = crafter.timer
        self._search: PropertySearch | None = None
        self.kind = ""  # "spatial_grid" or "corruption_errors" once run: configured thresholds select it
        self.spatial_found = None

    @property
    def search(self) -> PropertySearch:
        if self._search is None:
            self._search = PropertySearch()
        return self._search

    def images(self, max_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.crafter.eval_set()
        if max_samples and not self.session.settings.samples:
            x, y = x[:max_samples], y[:max_samples]
        return x, y

    def transformed_predictions(self, t: Transform, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(transformed images, probabilities), the predictions memoised by the images' content."""
        x_t = self.transformed(t, x)
        with self.timer.timed("score"):
            return x_t, self.session.predictor(self.crafter.slot()).predict(x_t)

    def invariant(self, t: Transform, threshold: float | None = None, *, per_image: bool = False,
                  max_samples: int | None = None) -> dict[str, float]:
        """Fail unless the model keeps its accuracy under ``t``: ``transformed_accuracy >= threshold``;
        with ``per_image`` the fraction of images whose predicted label ``t`` leaves unchanged,
        ``label_invariance >= threshold`` (default 1.0: every image). Returns the metrics."""
        if not isinstance(t, Transform):
            raise RobustnessUsageError(f"robustness.invariant: expected a transform (pytest_robustness.strategies "
                                       f"draws them), got {t!r}")
        if threshold is None and not per_image:
            raise RobustnessUsageError("robustness.invariant: give the accuracy threshold, e.g. invariant(t, 0.8)")
        threshold = 1.0 if threshold is None else float(threshold)
        metric = "label_invariance" if per_image else "transformed_accuracy"
        x, y = self.images(max_samples)
        clean = self.session.predictor(self.crafter.slot()).predict(x).argmax(axis=1)
        x_t, probabilities = self.transformed_predictions(t, x)
        predicted = probabilities.argmax(axis=1)
        values = {"clean_accuracy": float((clean == y).mean()), "transformed_accuracy": float((predicted == y).mean()),
                  "label_invariance": float((predicted == clean).mean())}
        # a configured floor (``attack = "invariant"``) replaces the suite's, as for any cell
        configured = [b for b in self.session.thresholds.bounds_for(Cell("invariant", {}, self.architecture), values,
                                                                    {metric: threshold})
                      if b.metric == metric and b.op == ">="]
        threshold = configured[0].value if configured else threshold
        seen = Observation(self.search.tried + 1, t, metric, values[metric], threshold, values,
                           np.array(x_t[:SHOWN]), predicted[:SHOWN])
        if self.session.settings.baseline_uri_for(self.architecture):
            self._against_baseline(seen, x, y, x_t)
        self.search.observe(seen)
        self.search.extra["samples"] = len(x)
        if seen.failed:
            pytest.fail(f"{self.item.name}: {seen.message()}", pytrace=False)
        return values

    def _against_baseline(self, seen: Observation, x: np.ndarray, y: np.ndarray, x_t: np.ndarray) -> None:
        """With ``--baseline-uri``: the baseline model under the same transform, no more than max_regression
        better than the candidate."""
        baseline = self.session.predictor(self.crafter.slot(BASELINE))
        with self.timer.timed("score"):
            clean, predicted = baseline.predict(x).argmax(axis=1), baseline.predict(x_t).argmax(axis=1)
        value = float((predicted == (clean if seen.metric == "label_invariance" else y)).mean())
        seen.baseline, seen.baseline_uri = value, self.session.model(self.architecture, BASELINE).uri
        seen.tolerance = self.session.thresholds.max_regression_for(Cell("invariant", {}, self.architecture))[0]
        seen.metrics[f"baseline_{seen.metric}"] = value

    # -- Hypothesis: the database of this cell's counterexamples ----------------------------------
    def example_database(self, cell: str):
        """Counterexamples of ``cell`` kept on this cell's registered model (``tracking.example_database``)."""
        return RegisteredModelExampleDatabase(self.session.tracker.client, self.session.model(self.architecture).name, cell)

    # -- the spatial grid (ART's SpatialTransformation) ---------------------------------------
    def spatial_grid(self, max_translation: float = 10.0, num_translations: int = 3, max_rotation: float = 30.0,
                     num_rotations: int = 7, *, max_samples: int | None = None) -> dict[str, float]:
        """Universal (ART's choice) and per-image (worst-of-k) worst case on ART's grid; logged, returned."""
        x, y = self.images(max_samples)
        grid = spatial_grid.art_grid(x.shape[1:], max_translation, num_translations, max_rotation, num_rotations)
        predictor = self.session.predictor(self.crafter.slot())
        with self.timer.timed("score"):
            found = spatial_grid.search(grid, x, y, predictor.predict)
        values = found.metrics()
        self.kind = "spatial_grid"
        universal = found.universal
        params = {"spatial.max_translation": max_translation, "spatial.num_translations": num_translations,
                  "spatial.max_rotation": max_rotation, "spatial.num_rotations": num_rotations, "samples": len(x),
                  "spatial.universal": universal.describe(), **universal.params()}
        self.cell_run.log_params(params)
        self.cell_run.log_metrics(values)
        x_u = universal.apply(x[:SHOWN])
        worst = [grid[i].apply(x[j:j + 1])[0] for j, i in enumerate(found.per_image_worst()[:SHOWN])]
        self._log_picture([("clean", x[:SHOWN], [f"true {v}" for v in y[:SHOWN]]),
                           (f"universal\n{universal.describe()}", x_u,
                            [f"pred {p}" for p in (found.predictions[found.universal_index][:SHOWN]
                                                   if found.universal_index >= 0 else found.clean_predictions[:SHOWN])]),
                           ("per-image worst", np.stack(worst), [grid[i].describe() for i in found.per_image_worst()[:SHOWN]])])
        self._summary_row("spatial grid (universal)", values["universal_accuracy"])
        self.spatial_found = found
        return values

    # -- logging, once per item -----------------------------------------------------------------
    def _log_picture(self, columns) -> None:
        self.session.tracker.log_bytes(self.cell_run.ensure_run(), "samples.png", pictures.sample_grid_png(columns))

    def _summary_row(self, row: str, value: float) -> None:
        self.cell_run.record("robustness.architecture", self.architecture)
        self.cell_run.record("robustness.row", row)
        self.cell_run.record("robustness.column", "none")
        self.cell_run.record("robustness.value", round(float(value), 6))
        self.cell_run.record("robustness.candidate", self.session.model(self.architecture).uri)

    def finish(self) -> None:
        """Log what the item's examples found: the counterexample (failed) or the worst transform (passed)."""
        search = self._search
        if search is None or search.tried == 0:
            return
        reported = search.last_failure or search.worst
        key = "counterexample" if search.last_failure is not None else "worst_transform"
        params = {f"property.{key}": reported.transform.describe(), "property.metric": reported.metric,
                  "property.threshold": reported.threshold, "samples": search.extra.get("samples", 0),
                  **{f"property.{k}": v for k, v in reported.transform.params().items()}}
        metrics = {"property.examples_tried": search.tried, f"property.{reported.metric}": reported.value,
                   "property.worst_value": search.worst.value, **{f"property.{k}": v for k, v in reported.metrics.items()}}
        if search.first_failure is not None:
            metrics["property.first_failure_index"] = search.first_failure.index
            params["property.first_failure"] = search.first_failure.transform.describe()
        self.cell_run.log_params(params)
        self.cell_run.log_metrics(metrics)
        x, y = self.images(search.extra.get("samples"))
        self._log_picture([("clean", x[:SHOWN], [f"true {v}" for v in y[:SHOWN]]),
                           (reported.transform.describe()[:40], reported.shown,
                            [f"pred {p}" for p in reported.predictions])])
        row = reported.transform.describe() if isinstance(reported.transform, Corruption) else \
            f"{self.item.originalname.removeprefix('test_')} ({key.replace('_', ' ')}: {reported.transform.describe()})"
        self._summary_row(row, reported.value)

    # -- common corruptions: mean corruption accuracy and, against a baseline, the corruption errors --------
    def corruption_errors(self, severities=(1, 2, 3, 4, 5), names=None, *,
                          max_samples: int | None = None) -> dict[str, float]:
        """Accuracy under every corruption x severity, their mean (``mean_corruption_accuracy``) and, with
        ``--baseline-uri``, Hendrycks & Dietterich's ``mce`` (each corruption's summed error over the
        baseline's, averaged) and ``relative_mce`` (the same on errors beyond each model's clean error),
        the baseline in AlexNet's place. Logged and returned."""
        names = tuple(names or CORRUPTIONS)
        x, y = self.images(max_samples)
        slots = [("candidate", "")]
        if self.session.settings.baseline_uri_for(self.architecture):
            slots.append(("baseline", BASELINE))
        errors: dict[str, dict[tuple[str, int], float]] = {}
        clean_error: dict[str, float] = {}
        for slot, recipe in slots:
            predictor = self.session.predictor(self.crafter.slot(recipe))
            clean_error[slot] = float((predictor.predict(x).argmax(1) != y).mean())
            errors[slot] = {}
            for name in names:
                for severity in severities:
                    x_c = self.transformed(Corruption(name, severity, self.session.settings.seed), x)
                    with self.timer.timed("score"):
                        errors[slot][name, severity] = float((predictor.predict(x_c).argmax(1) != y).mean())
        self.kind = "corruption_errors"
        mine = errors["candidate"]
        values = {f"corruption_accuracy.{n}.{s}": 1.0 - e for (n, s), e in mine.items()}
        values["clean_accuracy"] = 1.0 - clean_error["candidate"]
        values["mean_corruption_accuracy"] = 1.0 - float(np.mean(list(mine.values())))
        if "baseline" in errors:
            base = errors["baseline"]
            ce = [sum(mine[n, s] for s in severities) / max(sum(base[n, s] for s in severities), 1e-12) for n in names]
            relative = [sum(mine[n, s] - clean_error["candidate"] for s in severities)
                        / max(sum(base[n, s] - clean_error["baseline"] for s in severities), 1e-12) for n in names]
            values.update({"mce": float(np.mean(ce)), "relative_mce": float(np.mean(relative)),
                           "baseline_mean_corruption_accuracy": 1.0 - float(np.mean(list(base.values()))),
                           **{f"corruption_error.{n}": v for n, v in zip(names, ce)}})
        self.cell_run.log_params({"samples": len(x), "corruption.severities": ",".join(map(str, severities)),
                         "corruption.names": ",".join(names)}, junit=False)
        self.cell_run.log_metrics({k: v for k, v in values.items() if "." not in k})
        self.cell_run.log_metrics({k: v for k, v in values.items() if "." in k}, junit=False)
        self._summary_row("mean corruption accuracy", values["mean_corruption_accuracy"])
        return values

    def transformed(self, t: Transform, x: np.ndarray) -> np.ndarray:
        """``t.apply(x)``; a corruption's once per process (the corruption cells and their mean share it;
        a search's examples are not kept: hundreds of transformed sets would fill the memory)."""
        def apply() -> np.ndarray:
            out = t.apply(x)
            freeze(out)
            return out

        with self.timer.timed("transform"):
            if not isinstance(t, Corruption):
                return t.apply(x)
            return self.session.memo.once(("transformed", t, content_digest(x)), apply)
