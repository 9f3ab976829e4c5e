"""Per-process state of a robustness session: data, models, classifiers and attack results.

Everything expensive is computed once per process and memoised here (and, for
adversarial examples, in the on-disk cache), so tests that share a model,
an attack or its examples never redo the work.

TensorFlow is set up, and models are loaded, only when something needs them:
keys use the registry's weights digest, classifiers are built on first use, so
a session whose every result is cached imports neither.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import tracking
from .architectures import get_architecture
from .attacks import AttackTarget, Deployed, get_attack
from .cache import ArrayCache
from .attacks.base import apply_pending_seed, seed_everything
from .classifiers import make_classifier, softmax
from .datasets import Dataset, content_digest, dataset_key, freeze, load_dataset
from .defenses import recipe as registered_recipe
from .devices import configure_gpus
from .errors import RobustnessUsageError
from .model_files import register_model_file
from .model_loading import file_digest
from .model_registry import (
    PIP_REQUIREMENTS,
    RegisteredModel,
    find_or_train,
    load_registered,
    registered_model_name,
    resolve_model_version,
    training_digest,
)
from .progress import Progress, log_progress
from .server_health import health
from .recipes import TRAINING_RECIPES, Recipe, plain_training  # noqa: F401  (re-exported: recipes live there)
from .settings import Settings
from .thresholds import ThresholdTable
from .training import TrainingParams, compile_model

log = logging.getLogger("pytest_robustness")


# Attacks that take longer than this get a progress line.
LONG_STEP_SECONDS = 2.0

# Not a recipe: the model slot of --baseline-uri, so the baseline shares every memo and cache.
BASELINE = "@baseline"


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

    def __init__(self, classifier, key: tuple, cache: ArrayCache, memo: dict):
        self.classifier = classifier
        self.key = key
        self._cache = cache
        self._memo = memo

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        key = self._cache.key("predict", *self.key, content_digest(x))
        if key not in self._memo:
            cached = self._cache.get(key)
            if cached is None:
                cached = {"probabilities": predict_in_batches(self.classifier, x, batch_size).astype(np.float32)}
                freeze(*cached.values())
                self._cache.put(key, **cached)
            self._memo[key] = cached["probabilities"]
        return self._memo[key]

    def __getattr__(self, name: str):
        return getattr(self.classifier, name)


@dataclass
class AttackRun:
    """Adversarial examples for one (model, attack, parameters, samples) and how they were obtained."""

    x_adv: np.ndarray
    artifacts: dict[str, Any] = field(default_factory=dict)
    extra_params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    reused: str = ""  # "", "memory" or "cache"
    key: tuple = ()  # the memo key: what determined these examples


class RobustnessSession:
    def __init__(self, settings: Settings, tracker: tracking.Tracker, device: str = "/CPU:0",
                 thresholds: ThresholdTable | None = None, progress: Progress = log_progress):
        self.settings = settings
        self.progress = progress  # one line per step of long work: training, PGD training, patches
        self.tracker = tracker
        self.device = device
        self._dataset: Dataset | None = None
        self._models: dict[tuple[str, str], RegisteredModel] = {}
        self._classifiers: dict[tuple[str, str], Any] = {}
        self._defended_models: dict[tuple[str, str, str], Any] = {}
        self._attack_runs: dict[tuple, AttackRun] = {}
        self._predictions: dict[str, np.ndarray] = {}
        self._deployments: dict[tuple, Any] = {}
        self._memo: dict[str, dict[str, np.ndarray]] = {}
        self.cache = ArrayCache(settings.cache_dir / "arrays", settings.cache_mode)
        self.thresholds = thresholds or ThresholdTable(default_max_regression=settings.max_regression)
        self._tf = None
        self.training_seconds = 0.0  # wall time this process spent training models (a phase of its own)
        self._device_scopes: list[contextlib.ExitStack] = []

    # -- TensorFlow, on first use -------------------------------------------------------------
    def tensorflow(self):
        """TensorFlow, set up on first use: op determinism, GPUs (``--gpu``), the device of the
        open cell, and the seed a cell set before TensorFlow was loaded."""
        if self._tf is None:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            import tensorflow as tf

            self.device = configure_gpus(self.settings.gpu)
            tf.config.experimental.enable_op_determinism()  # same seed, same numbers
            self._tf = tf
            apply_pending_seed()
            for stack in self._device_scopes:
                stack.enter_context(tf.device(self.device))
        return self._tf

    @contextlib.contextmanager
    def device_scope(self):
        """A cell runs on the session's device: entered now if TensorFlow is loaded, else when it is."""
        with contextlib.ExitStack() as stack:
            self._device_scopes.append(stack)
            try:
                if self._tf is not None:
                    stack.enter_context(self._tf.device(self.device))
                yield
            finally:
                self._device_scopes.remove(stack)

    # -- data ------------------------------------------------------------------------------
    @property
    def dataset(self) -> Dataset:
        if self._dataset is None:
            self._dataset = self._load_dataset()
        return self._dataset

    def _load_dataset(self) -> Dataset:
        """Built-in data (its name and the seed) and folders (their listing and the image size) are cached:
        decoding thousands of image files is the slow part. An .npz is read directly (as fast as the cache).
        """
        spec, seed, image_size = self.settings.dataset, self.settings.seed, self.settings.image_size
        key = dataset_key(spec, seed, image_size)
        if key is None:
            return load_dataset(spec, seed, image_size)

        def split() -> dict[str, np.ndarray]:
            data = load_dataset(spec, seed, image_size)
            return {"x_train": data.x_train, "y_train": data.y_train, "x_test": data.x_test, "y_test": data.y_test,
                    "class_names": np.array(data.class_names), "digest": np.array(data.digest),
                    "source": np.array(data.source), "name": np.array(data.name)}

        arrays = self.memoised(key, split)
        return Dataset(str(arrays["name"]) if "name" in arrays else spec, arrays["x_train"], arrays["y_train"],
                       arrays["x_test"], arrays["y_test"], tuple(str(c) for c in arrays["class_names"]),
                       str(arrays["source"]), str(arrays["digest"]))

    def eval_set(self, architecture: str, samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The first N test images: views, never copies, of the one loaded test set."""
        data = self.dataset
        n = samples or self.settings.samples_for(architecture, len(data.x_test))
        return data.x_test[:n], data.y_test[:n]

    # -- models ----------------------------------------------------------------------------
    def model(self, architecture: str, recipe: str = "") -> RegisteredModel:
        key = (architecture, recipe)
        if key not in self._models:
            self._models[key] = self._load_or_train(architecture, recipe)
        return self._models[key]

    def _load_or_train(self, architecture: str, recipe: str) -> RegisteredModel:
        client = self.tracker.client
        trust = self.settings.model.trust_code
        if recipe == BASELINE:
            name, version = resolve_model_version(client, self.settings.baseline_uri_for(architecture), "--baseline-uri")
            return load_registered(client, name, version, self.tensorflow, trust_code=trust)
        if self.settings.model_uri_for(architecture) and not recipe:
            name, version = resolve_model_version(client, self.settings.model_uri_for(architecture))
            return load_registered(client, name, version, self.tensorflow, trust_code=trust)
        if self.settings.model.model_file is not None and not recipe:
            return register_model_file(self, architecture)
        if architecture in self.settings.model.user_architectures:
            raise RobustnessUsageError(f"{recipe} training of a given model ({architecture}) is not supported: the "
                                       "harness trains only its own architectures; deselect with -m 'not slow'")
        # Plain training, else a recipe a defense registered in this session's registry.
        recipe_fn, recipe_params = TRAINING_RECIPES[recipe] if recipe in TRAINING_RECIPES else registered_recipe(recipe)
        params = self.settings.training_for(architecture)
        data = self.dataset
        name = registered_model_name(self.settings.experiment, architecture, recipe or None)
        identity = dict(architecture=architecture, recipe=recipe, recipe_params=recipe_params,
                        training=params.as_dict(), dataset=data.digest, seed=self.settings.seed)
        base_weights = self.settings.model.base_weights_for(architecture)
        if base_weights is not None:  # a pretrained base (frozen): its file's content is part of the identity
            identity["base_weights"] = file_digest(base_weights)
        if recipe:  # a recipe's trainer (ART's or the compiled one) makes other weights
            identity["trainer"] = self.settings.attack_backend
        digest = training_digest(**identity)

        def train():
            started = time.perf_counter()
            try:
                return self._train_and_register(name, architecture, recipe, recipe_fn, params)
            finally:
                self.training_seconds += time.perf_counter() - started

        return find_or_train(
            self.tracker.client, name=name, digest=digest, lock_dir=self.settings.cache_dir / "locks", train=train,
            tags={"architecture": architecture, "recipe": recipe or "standard", "dataset_digest": data.digest,
                  "seed": str(self.settings.seed)},
            prepare=self.tensorflow,
        )

    def _train_and_register(self, name, architecture, recipe, recipe_fn, params):
        self.tensorflow()
        import keras
        import mlflow

        data = self.dataset
        run_id = self.tracker.start_child_run(f"train {name}", {"robustness.kind": "training"})
        started = time.perf_counter()
        log.info("training %s (%s recipe): %s on %d images", name, recipe or "standard", params, len(data.x_train))
        try:
            keras.utils.set_random_seed(self.settings.seed)
            base_weights = self.settings.model.base_weights_for(architecture)
            model = get_architecture(architecture).build(data.input_shape, data.n_classes,
                                                         str(base_weights) if base_weights else None)
            compile_model(model, params)
            self.tracker.log_params(run_id, {**params.as_dict(), "model_architecture": architecture,
                                             "recipe": recipe or "standard", **data.params,
                                             "dataset_digest": data.digest, "seed": self.settings.seed})
            metrics = recipe_fn(self, model, architecture, params)
            x_test, y_test = data.x_test, keras.utils.to_categorical(data.y_test, data.n_classes)
            loss, acc = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
            self.tracker.log_metrics(run_id, {**metrics, "test_loss": loss, "test_accuracy": acc})
            mlflow.set_tracking_uri(self.settings.mlflow_uri)
            with health(self.settings.mlflow_uri).guard(f"could not register {name}"), mlflow.start_run(run_id=run_id):
                info = mlflow.tensorflow.log_model(model, name="model", registered_model_name=name,
                                                   pip_requirements=PIP_REQUIREMENTS)
        except BaseException:
            self.tracker.end_run(run_id, "FAILED")
            raise
        self.tracker.end_run(run_id, "FINISHED")
        log.info("trained %s in %.1f s (test accuracy %.3f); registered as version %s",
                 name, time.perf_counter() - started, acc, info.registered_model_version)
        return model, info.registered_model_version, run_id

    def memoised(self, key_parts: tuple, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Arrays that are a pure function of ``key_parts``: from memory, the disk cache, or ``compute``."""
        key = self.cache.key(*key_parts)
        if key not in self._memo:
            found = self.cache.get(key)
            if found is None:
                found = compute()
                freeze(*found.values())  # shared and keyed by content: read-only
                self.cache.put(key, **found)
            self._memo[key] = found
        return self._memo[key]

    def scoring_key(self, architecture: str, recipe: str = "", defence_key: str = "") -> tuple:
        """What a classifier's predictions depend on besides the input: weights, how the model is read,
        defences, seed."""
        return (self.model_digest(architecture, recipe), self.adaptation(architecture, recipe), defence_key,
                self.settings.seed)

    def model_output(self, architecture: str, recipe: str = "") -> str:
        """What the model outputs, as logged: declared by --model-output, else detected (ours: probabilities)."""
        _, declared, _ = self.adaptation(architecture, recipe)
        if declared != "auto":
            return declared
        given = recipe == BASELINE or (not recipe and architecture in self.settings.model.user_architectures)
        return self.model(architecture, recipe).output_kind if given else "probabilities"

    def adaptation(self, architecture: str, recipe: str = "") -> tuple:
        """How the model is read (output kind, input range): the user's options for a given model, else
        ours (a final softmax, [0, 1]). It keys results: the same weights read otherwise differ."""
        options = self.settings.model
        given = recipe == BASELINE or (not recipe and architecture in options.user_architectures)
        return ("logits-1", options.output, options.input_range) if given else ("logits-1", "auto", (0.0, 1.0))

    def model_digest(self, architecture: str, recipe: str = "") -> str:
        """The registered version's weights digest (its tag: no model load needed)."""
        return self.model(architecture, recipe).weights_digest

    def predictor(self, architecture: str, recipe: str = "", defences=(), defence_key: str = "") -> CachedPredictor:
        """The classifier for scoring: same predictions, memoised by input content; built on first miss."""
        classifier = self.lazy_classifier(architecture, recipe, defences, defence_key)
        return CachedPredictor(classifier, self.scoring_key(architecture, recipe, defence_key), self.cache,
                               self._predictions)

    def lazy_classifier(self, architecture: str, recipe: str = "", defences=(), defence_key: str = "") -> LazyClassifier:
        """``classifier(...)``, built only when first used (a cached result needs none)."""
        return LazyClassifier(lambda: self.classifier(architecture, recipe, defences, defence_key))

    def classifier(self, architecture: str, recipe: str = "", defences=(), defence_key: str = ""):
        """ART wrapper of a registered model; with ``defences`` (a tuple, or a callable returning
        one) attached as preprocessors."""
        key = (architecture, recipe, defence_key)
        if key not in self._classifiers:
            self.tensorflow()
            model = self.model(architecture, recipe).model
            data = self.dataset
            _, output, input_range = self.adaptation(architecture, recipe)
            self._classifiers[key] = make_classifier(model, data.n_classes, data.input_shape,
                                                     preprocessing_defences=defences() if callable(defences) else defences,
                                                     model_output=output, input_range=input_range)
        return self._classifiers[key]

    def defended_model(self, architecture: str, recipe: str, defence_key: str, defence) -> Any:
        """The registered model behind ``defence`` (a TensorFlow function) with BPDA gradients, built once
        per defence: compiled kernels are cached on the model they attack."""
        key = (architecture, recipe, defence_key)
        if key not in self._defended_models:
            self.tensorflow()
            from .attacks.defense_kernels import bpda_model

            # the classifier's logits wrapper behind the defence: the kernels' loss is on logits
            self._defended_models[key] = bpda_model(self.classifier(architecture, recipe).model, defence)
        return self._defended_models[key]

    # -- attacks ---------------------------------------------------------------------------
    def attack_run(self, architecture: str, attack: str, params: dict[str, Any], x: np.ndarray, *,
                   recipe: str = "", classifier=None, defence_key: str = "",
                   attack_model: Callable[[], Any] | None = None) -> AttackRun:
        """Adversarial examples, from memory, the disk cache, or by running the attack once.

        With defences on the classifier (the adaptive threat model) the compiled kernels
        attack ``attack_model()`` (the model behind the defence's TensorFlow form, with BPDA
        gradients); a defence without one runs on the ART backend, whose BPDA is the reference.
        """
        registered = self.model(architecture, recipe)
        spec = get_attack(attack)
        resolved = spec.generation_params(spec.resolve(params))  # deployment parameters never key generation
        backend = "art" if defence_key and attack_model is None else self.settings.attack_backend
        key = (registered.uri, self.model_digest(architecture, recipe), attack, tuple(sorted(resolved.items())),
               content_digest(x), self.settings.seed, backend, defence_key, self.adaptation(architecture, recipe),
               spec.code_version(backend))
        if key in self._attack_runs:
            found = self._attack_runs[key]
            return AttackRun(found.x_adv, found.artifacts, found.extra_params, found.seconds, "memory", key)
        cache_key = self.cache.key(*key[1:])
        cached = self.cache.get(cache_key)
        if cached is not None:
            run = AttackRun(cached.pop("x_adv"), {k: v for k, v in cached.items() if not k.startswith("param__")},
                            {k[len("param__"):]: v.item() for k, v in cached.items() if k.startswith("param__")},
                            reused="cache", key=key)
        else:
            art_classifier = unwrap(classifier) if classifier is not None else self.classifier(architecture, recipe)
            # The compiled kernels attack logits: the classifier's own model (the logits wrapper), or that
            # wrapper behind a defence's TensorFlow form
            target = AttackTarget(art_classifier,
                                  attack_model() if attack_model is not None and backend != "art" else art_classifier.model,
                                  self.settings.seed, self.dataset.n_classes)
            seed_everything(self.settings.seed)
            started = time.perf_counter()
            output = spec.generator(backend)(target, x, resolved)
            run = AttackRun(np.asarray(output.x_adv, dtype=np.float32), output.artifacts, output.extra_params,
                            time.perf_counter() - started, key=key)
            freeze(run.x_adv)
            log.info("%s on %s (%s backend, %d images) took %.2f s", attack, registered.uri, backend, len(x),
                     run.seconds)
            if run.seconds >= LONG_STEP_SECONDS:
                self.progress(f"{attack} on {registered.uri} ({backend}, {len(x)} images): {run.seconds:.1f} s")
            self.cache.put(cache_key, x_adv=run.x_adv, **{k: np.asarray(v) for k, v in run.artifacts.items()},
                           **{f"param__{k}": np.asarray(v) for k, v in run.extra_params.items()})
        self._attack_runs[key] = run
        return run

    def deployment(self, run: AttackRun, x: np.ndarray, params: dict[str, Any]):
        """An attack's output deployed onto ``x`` (e.g. patches pasted), once per run and parameters.

        Deployment is seeded, so recomputing would give the same arrays; the memo
        makes every cell and defense that uses these examples share the very same ones.
        """
        spec = get_attack(run.key[2])
        resolved = spec.resolve(params)
        deploy = {name: resolved[name] for name in spec.deploy_params}
        key = (run.key, content_digest(x), tuple(sorted(deploy.items())))
        if key not in self._deployments:
            def deploy() -> dict[str, np.ndarray]:
                done = spec.deploy(run.x_adv, x, resolved, self.settings.seed)
                return {"x": done.x, "source_index": done.source_index, "modified": done.modified}

            arrays = self.memoised(("deployment", *key[1:], *run.key[1:]), deploy)
            self._deployments[key] = Deployed(arrays["x"], arrays["source_index"], arrays["modified"])
        return self._deployments[key]
