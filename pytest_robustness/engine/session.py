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

from ..attacks import AttackTarget, Deployed, get_attack
from ..attacks.base import apply_pending_seed, seed_everything
from ..data import example_files
from ..data.cache import ArrayCache
from ..data.datasets import Dataset, content_digest, dataset_key, freeze, is_folder, load_dataset, open_stream
from ..data.image_stream import DataInfo, FolderStream, stratified_subset
from ..models.classifiers import make_classifier
from ..models.devices import configure_gpus
from ..models.predictors import CachedPredictor, LazyClassifier, unwrap
from ..models.registered import RegisteredModel
from ..models.slot import BASELINE, ModelSlot
from ..options.settings import Settings
from ..options.thresholds import ThresholdTable
from ..tracking.runs import Tracker
from .memo import Memo
from .progress import Progress, log_progress
from .slot_models import load_or_train

log = logging.getLogger("pytest_robustness")


# Attacks that take longer than this get a progress line.
LONG_STEP_SECONDS = 2.0

__all__ = ["BASELINE", "AttackRun", "ModelSlot", "RobustnessSession"]


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
    """A process's data, models, classifiers and attack results, each computed once (``memo``)."""

    def __init__(self, settings: Settings, tracker: Tracker, device: str = "/CPU:0",
                 thresholds: ThresholdTable | None = None, progress: Progress = log_progress):
        self.settings = settings
        self.progress = progress  # one line per step of long work: training, PGD training, patches
        self.tracker = tracker
        self.device = device
        self._dataset: Dataset | None = None
        # models, classifiers, defended models, attack runs, deployments, predictions, arrays: one memo
        self.memo = Memo()
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

    @property
    def stream(self) -> FolderStream | None:
        """The folder's test images read batch by batch (``--stream-batch``), or None: loaded whole."""
        settings = self.settings
        if not settings.stream_batch:
            return None
        return self.memo.once(("stream",), lambda: open_stream(settings.dataset, settings.image_size,
                                                                settings.samples, settings.stream_batch))

    @property
    def data_info(self) -> Dataset | DataInfo:
        """Names, shape and identity of the data: from the stream's listing when streamed (no image decoded)."""
        return self.stream.info if self.stream is not None else self.dataset

    def eval_size(self, architecture: str) -> int:
        available = len(self.stream) if self.stream is not None else len(self.dataset.y_test)
        return self.settings.samples_for(architecture, available)

    def eval_set(self, architecture: str, samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The test images a cell attacks: the first N (views of the one loaded test set), or for a folder
        (listed class by class) a stratified subset; a streamed folder's, read whole (cells that need every
        image at once: defenses, transfers, patches)."""
        n = samples or self.eval_size(architecture)
        if self.stream is not None:
            return self.memo.once(("stream_set", n), lambda: (self.stream.read(0, n), self.stream.labels[:n]))
        data = self.dataset
        if is_folder(self.settings.dataset) and n < len(data.y_test):
            return self.memo.once(("folder_subset", n), lambda: self._folder_subset(n))
        return data.x_test[:n], data.y_test[:n]

    def _folder_subset(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        index = stratified_subset(self.dataset.y_test, n)
        x, y = self.dataset.x_test[index], self.dataset.y_test[index]
        freeze(x, y)
        return x, y

    def stream_rows(self, index: np.ndarray) -> np.ndarray:
        """Images of the streamed evaluation set at positions ``index``, decoded once per session."""
        return self.memo.once(("stream_rows", content_digest(np.asarray(index))), lambda: self._frozen_rows(index))

    def _frozen_rows(self, index: np.ndarray) -> np.ndarray:
        x = self.stream.read_rows(index)
        freeze(x)
        return x

    def model(self, architecture: str, recipe: str = "") -> RegisteredModel:
        """The registered model of slot (``architecture``, ``recipe``), loaded or trained once (``slot_models``)."""
        return self.memo.once(("model", architecture, recipe), lambda: load_or_train(self, architecture, recipe))

    def memoised(self, key_parts: tuple, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Arrays that are a pure function of ``key_parts``: from memory, the disk cache, or ``compute``."""
        key = self.cache.key(*key_parts)

        def load_or_compute() -> dict[str, np.ndarray]:
            found = self.cache.get(key)
            if found is None:
                found = compute()
                freeze(*found.values())  # shared and keyed by content: read-only
                self.cache.put(key, **found)
            return found

        return self.memo.once(("arrays", key), load_or_compute)

    def scoring_key(self, slot: ModelSlot) -> tuple:
        """What a slot's predictions depend on besides the input: weights, how the model is read,
        the defense, the seed."""
        return (self.model_digest(slot.architecture, slot.recipe), self.adaptation(slot.architecture, slot.recipe),
                slot.defense_key, self.settings.seed)

    def score_memo(self, slot: ModelSlot) -> Callable[[tuple, Callable[[], dict]], dict]:
        """``memo(key, compute)`` for numbers a slot's predictions determine: scores are a pure function
        of the classifier (weights, defense, seed) and the inputs."""
        scoring = self.scoring_key(slot)
        return lambda key, compute: self.memoised((*scoring, *key), compute)

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

    def predictor(self, slot: ModelSlot):
        """What scores with ``slot``: its defended classifier as it is, else the model's classifier with
        its predictions memoised by input content (built on first miss)."""
        if slot.classifier is not None:
            return slot.classifier
        classifier = self.lazy_classifier(slot.architecture, slot.recipe)
        return CachedPredictor(classifier, self.scoring_key(slot), self.memoised)

    def lazy_classifier(self, architecture: str, recipe: str = "", defenses=(), defense_key: str = "") -> LazyClassifier:
        """``classifier(...)``, built only when first used (a cached result needs none)."""
        return LazyClassifier(lambda: self.classifier(architecture, recipe, defenses, defense_key))

    def classifier(self, architecture: str, recipe: str = "", defenses=(), defense_key: str = ""):
        """ART wrapper of a registered model; with ``defenses`` (a tuple, or a callable returning
        one) attached as preprocessors."""
        def build():
            self.tensorflow()
            model = self.model(architecture, recipe).model
            data = self.data_info
            _, output, input_range = self.adaptation(architecture, recipe)
            return make_classifier(model, data.n_classes, data.input_shape,
                                   preprocessing_defences=defenses() if callable(defenses) else defenses,
                                   model_output=output, input_range=input_range)

        return self.memo.once(("classifier", architecture, recipe, defense_key), build)

    def defended_model(self, architecture: str, recipe: str, defense_key: str, build_defense) -> Any:
        """The registered model behind the defense ``build_defense()`` builds (a TensorFlow function) with
        BPDA gradients, built once per defense: compiled kernels are cached on the model they attack."""
        def build():
            self.tensorflow()
            from ..defenses.compiled.preprocessors import bpda_model

            # the classifier's logits wrapper behind the defense: the kernels' loss is on logits
            return bpda_model(self.classifier(architecture, recipe).model, build_defense())

        return self.memo.once(("defended_model", architecture, recipe, defense_key), build)

    # -- attacks ---------------------------------------------------------------------------
    def attack_run(self, slot: ModelSlot, attack: str, params: dict[str, Any], x: np.ndarray, *,
                   remember: bool = True) -> AttackRun:
        """Adversarial examples crafted on ``slot``, from memory, the disk cache, or by running the attack once.
        ``remember=False`` (a streamed batch): kept in the disk cache only, not in this process's memory.

        With a defense in the slot (the adaptive threat model) the compiled kernels attack
        ``slot.attack_model()`` (the model behind the defense's TensorFlow form, with BPDA
        gradients); a defense without one runs on the ART backend, whose BPDA is the reference.
        """
        architecture, recipe, defense_key = slot.architecture, slot.recipe, slot.defense_key
        classifier, attack_model = slot.classifier, slot.attack_model
        registered = self.model(architecture, recipe)
        spec = get_attack(attack)
        resolved = spec.generation_params(spec.resolve(params))  # deployment parameters never key generation
        backend = "art" if defense_key and attack_model is None else self.settings.attack_backend
        key = (registered.uri, self.model_digest(architecture, recipe), attack, tuple(sorted(resolved.items())),
               content_digest(x), self.settings.seed, backend, defense_key, self.adaptation(architecture, recipe),
               spec.code_version(backend))
        found = self.memo.get(("attack_run", key))
        if found is not None:
            return AttackRun(found.x_adv, found.artifacts, found.extra_params, found.seconds, "memory", key)
        cache_key = self.cache.key(*key[1:], "perturbation")  # the entry's layout: a version before it cannot read it
        cached = self.cache.get(cache_key)
        if cached is not None and "x_adv_delta" in cached:  # kept as the perturbation of x: rebuilt bit for bit
            x_adv = example_files.apply_perturbation(x, cached)
            freeze(x_adv)
            cached = {"x_adv": x_adv, **{k: v for k, v in cached.items() if not k.startswith("x_adv_")}}
        if cached is not None:
            run = AttackRun(cached.pop("x_adv"), {k: v for k, v in cached.items() if not k.startswith("param__")},
                            {k[len("param__"):]: v.item() for k, v in cached.items() if k.startswith("param__")},
                            reused="cache", key=key)
        else:
            art_classifier = unwrap(classifier) if classifier is not None else self.classifier(architecture, recipe)
            # The compiled kernels attack logits: the classifier's own model (the logits wrapper), or that
            # wrapper behind a defense's TensorFlow form
            model = attack_model() if attack_model is not None and backend != "art" else art_classifier.model
            target = AttackTarget(art_classifier, model, self.settings.seed, self.data_info.n_classes)
            seed_everything(self.settings.seed)
            if hasattr(model, "reseed"):  # a random defense in front: the same draws for the same seed
                model.reseed(self.settings.seed)
            started = time.perf_counter()
            output = spec.generator(backend)(target, x, resolved)
            run = AttackRun(np.asarray(output.x_adv, dtype=np.float32), output.artifacts, output.extra_params,
                            time.perf_counter() - started, key=key)
            freeze(run.x_adv)
            log.info("%s on %s (%s backend, %d images) took %.2f s", attack, registered.uri, backend, len(x),
                     run.seconds)
            if run.seconds >= LONG_STEP_SECONDS:
                self.progress(f"{attack} on {registered.uri} ({backend}, {len(x)} images): {run.seconds:.1f} s")
            # Examples shaped like their images are cached as their perturbation, deflated: a few distinct values
            # for FGM, zeros outside a patch (issue 20: 602 KB a 224x224 image otherwise).
            same_shape = np.shape(run.x_adv) == np.shape(x)
            adversarial = example_files.perturbation(x, run.x_adv) if same_shape else {"x_adv": run.x_adv}
            self.cache.put_later(cache_key, compress=same_shape, **adversarial,
                           **{k: np.asarray(v) for k, v in run.artifacts.items()},
                           **{f"param__{k}": np.asarray(v) for k, v in run.extra_params.items()})
        if remember:
            self.memo.put(("attack_run", key), run)
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

        def deployed() -> Deployed:
            def deploy() -> dict[str, np.ndarray]:
                done = spec.deploy(run.x_adv, x, resolved, self.settings.seed)
                return {"x": done.x, "source_index": done.source_index, "modified": done.modified}

            arrays = self.memoised(("deployment", *key[1:], *run.key[1:]), deploy)
            return Deployed(arrays["x"], arrays["source_index"], arrays["modified"])

        return self.memo.once(("deployment", *key), deployed)
