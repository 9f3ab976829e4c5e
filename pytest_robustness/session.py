"""Per-process state of a robustness session: data, models, classifiers and attack results.

Everything expensive is computed once per process and memoised here (and, for
adversarial examples, in the on-disk cache), so tests that share a model,
an attack or its examples never redo the work.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import tracking
from .architectures import get_architecture
from .attacks import AttackTarget, get_attack
from .cache import ArrayCache
from .classifiers import make_classifier
from .datasets import Dataset, load_dataset
from .model_registry import (
    RegisteredModel,
    find_or_train,
    load_registered,
    registered_model_name,
    resolve_model_version,
    training_digest,
)
from .settings import Settings
from .training import TrainingParams, compile_model, fit

PIP_REQUIREMENTS = ["tensorflow-cpu>=2.21,<2.22", "keras>=3.10,<4"]

# A training recipe turns a freshly built, compiled model into a trained one.
# "" is plain training; other recipes (e.g. "pgd" adversarial training) register
# here and become their own registered model, tagged with the recipe name.
Recipe = Callable[["RobustnessSession", Any, str, TrainingParams], dict[str, float]]


def plain_training(session: "RobustnessSession", model, architecture: str, params: TrainingParams) -> dict[str, float]:
    data = session.dataset
    return fit(model, data.x_train, data.y_train, params, data.n_classes, session.settings.seed)


TRAINING_RECIPES: dict[str, tuple[Recipe, dict[str, Any]]] = {"": (plain_training, {})}


def weights_digest(model) -> str:
    """Content address of a model: its weights, whatever registry version number it got."""
    h = hashlib.sha256()
    for w in model.weights:
        h.update(np.ascontiguousarray(w.numpy()).tobytes())
    return h.hexdigest()[:16]


@dataclass
class AttackRun:
    """Adversarial examples for one (model, attack, parameters, samples) and how they were obtained."""

    x_adv: np.ndarray
    artifacts: dict[str, Any] = field(default_factory=dict)
    extra_params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    reused: str = ""  # "", "memory" or "cache"


class RobustnessSession:
    def __init__(self, settings: Settings, tracker: tracking.Tracker, device: str = "/CPU:0"):
        self.settings = settings
        self.tracker = tracker
        self.device = device
        self._dataset: Dataset | None = None
        self._models: dict[tuple[str, str], RegisteredModel] = {}
        self._classifiers: dict[tuple[str, str], Any] = {}
        self._attack_runs: dict[tuple, AttackRun] = {}
        self.cache = ArrayCache(settings.cache_dir / "arrays", settings.cache_mode)
        self.reuse_log: list[str] = []

    # -- data ------------------------------------------------------------------------------
    @property
    def dataset(self) -> Dataset:
        if self._dataset is None:
            self._dataset = load_dataset(self.settings.dataset, self.settings.seed)
        return self._dataset

    def eval_set(self, architecture: str, samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The first N test images: views, never copies, of the one loaded test set."""
        data = self.dataset
        n = samples or self.settings.samples_for(architecture, len(data.x_test))
        return data.x_test[:n], data.y_test[:n]

    # -- models ----------------------------------------------------------------------------
    def model(self, architecture: str, recipe: str = "") -> RegisteredModel:
        key = (architecture, recipe)
        if key not in self._models:
            registered = self._load_or_train(architecture, recipe)
            if not registered.trained_now:  # the terminal summary says what was reused, not only what was trained
                self.reuse_log.append(f"reused registered model {registered.name} v{registered.version}")
            self._models[key] = registered
        return self._models[key]

    def _load_or_train(self, architecture: str, recipe: str) -> RegisteredModel:
        if self.settings.model_uri and not recipe:
            name, version = resolve_model_version(self.tracker.client, self.settings.model_uri)
            return load_registered(name, version)
        recipe_fn, recipe_params = TRAINING_RECIPES[recipe]
        params = self.settings.training_for(architecture)
        data = self.dataset
        name = registered_model_name(self.settings.experiment, architecture, recipe or None)
        identity = dict(architecture=architecture, recipe=recipe, recipe_params=recipe_params,
                        training=params.as_dict(), dataset=data.digest, seed=self.settings.seed)
        digest = training_digest(**identity)

        def train():
            return self._train_and_register(name, architecture, recipe, recipe_fn, params)

        return find_or_train(
            self.tracker.client, name=name, digest=digest, lock_dir=self.settings.cache_dir / "locks", train=train,
            tags={"architecture": architecture, "recipe": recipe or "standard", "dataset_digest": data.digest,
                  "seed": str(self.settings.seed)},
        )

    def _train_and_register(self, name, architecture, recipe, recipe_fn, params):
        import keras
        import mlflow

        data = self.dataset
        run_id = self.tracker.start_child_run(f"train {name}", {"robustness.kind": "training"})
        try:
            keras.utils.set_random_seed(self.settings.seed)
            model = get_architecture(architecture).build(data.input_shape, data.n_classes)
            compile_model(model, params)
            self.tracker.log_params(run_id, {**params.as_dict(), "model_architecture": architecture,
                                             "recipe": recipe or "standard", "dataset": data.source,
                                             "dataset_digest": data.digest, "seed": self.settings.seed})
            metrics = recipe_fn(self, model, architecture, params)
            x_test, y_test = data.x_test, keras.utils.to_categorical(data.y_test, data.n_classes)
            loss, acc = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
            self.tracker.log_metrics(run_id, {**metrics, "test_loss": loss, "test_accuracy": acc})
            mlflow.set_tracking_uri(self.settings.mlflow_uri)
            with mlflow.start_run(run_id=run_id):
                info = mlflow.tensorflow.log_model(model, name="model", registered_model_name=name,
                                                   pip_requirements=PIP_REQUIREMENTS)
        except BaseException:
            self.tracker.end_run(run_id, "FAILED")
            raise
        self.tracker.end_run(run_id, "FINISHED")
        self.reuse_log.append(f"trained and registered {name} v{info.registered_model_version}")
        return model, info.registered_model_version, run_id

    def classifier(self, architecture: str, recipe: str = "", defences: tuple = (), defence_key: str = ""):
        """ART wrapper of a registered model; with ``defences`` attached as preprocessors."""
        key = (architecture, recipe, defence_key)
        if key not in self._classifiers:
            data = self.dataset
            self._classifiers[key] = make_classifier(self.model(architecture, recipe).model, data.n_classes,
                                                     data.input_shape, preprocessing_defences=defences)
        return self._classifiers[key]

    # -- attacks ---------------------------------------------------------------------------
    def attack_run(self, architecture: str, attack: str, params: dict[str, Any], x: np.ndarray, *,
                   recipe: str = "", classifier=None, defence_key: str = "") -> AttackRun:
        """Adversarial examples, from memory, the disk cache, or by running the attack once.

        With defences on the classifier (the adaptive threat model) the ART
        backend is used: its BPDA gradients through the defence are the reference.
        """
        import time

        registered = self.model(architecture, recipe)
        spec = get_attack(attack)
        resolved = spec.resolve(params)
        backend = "art" if defence_key else self.settings.attack_backend
        key = (registered.uri, weights_digest(registered.model), attack, tuple(sorted(resolved.items())),
               len(x), self.settings.seed, backend, defence_key, self.dataset.digest)
        if key in self._attack_runs:
            found = self._attack_runs[key]
            return AttackRun(found.x_adv, found.artifacts, found.extra_params, found.seconds, "memory")
        cache_key = self.cache.key(*key[1:])
        cached = self.cache.get(cache_key)
        if cached is not None:
            run = AttackRun(cached.pop("x_adv"), {k: v for k, v in cached.items() if not k.startswith("param__")},
                            {k[len("param__"):]: v.item() for k, v in cached.items() if k.startswith("param__")},
                            reused="cache")
            self.reuse_log.append(f"reused {attack} examples for {registered.uri} from the cache")
        else:
            from .attacks.base import seed_everything

            target = AttackTarget(classifier or self.classifier(architecture, recipe), registered.model,
                                  self.settings.seed, self.dataset.n_classes)
            seed_everything(self.settings.seed)
            started = time.perf_counter()
            output = spec.generator(backend)(target, x, resolved)
            run = AttackRun(np.asarray(output.x_adv, dtype=np.float32), output.artifacts, output.extra_params,
                            time.perf_counter() - started)
            self.cache.put(cache_key, x_adv=run.x_adv, **{k: np.asarray(v) for k, v in run.artifacts.items()},
                           **{f"param__{k}": np.asarray(v) for k, v in run.extra_params.items()})
        self._attack_runs[key] = run
        return run
