"""Command-line options and ini keys, read once into a validated, immutable :class:`Settings`.

Validation here is cheap (no TensorFlow, no training), so bad input fails at
start-up with one line naming the option, value and what was expected.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ..attacks import BACKENDS
from ..data.cache import ArrayCache
from ..data.datasets import default_experiment_name, stream_batch_for, validate_dataset_spec
from ..errors import RobustnessUsageError
from ..models.architectures import ARCHITECTURES, DEFAULT_ARCHITECTURES, get_architecture, known_architectures
from ..models.training import TrainingParams
from . import model_options
from .model_options import option_or_ini

CACHE_MODES = ("readwrite", "read", "write", "off")
GRADIENT_MASKING_MODES = ("fail", "warn", "off")
GROUP = "robustness"


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, "adversarial robustness (pytest-robustness)")
    group.addoption("--gpu", action="store_true", default=False,
                    help="run on a GPU (fails at start-up if TensorFlow sees none); tests marked gpu need it")
    group.addoption("--dataset", default=None,
                    help="'mnist' (built-in), a Dioptra folder with training/<label>/*.png and testing/<label>/*.png "
                         "(any image format Pillow reads), or an .npz with x_train/y_train/x_test/y_test "
                         "[ini: robustness_dataset; default mnist]")
    group.addoption("--image-size", default=None, metavar="H,W,C",
                    help="resize every image of a Dioptra folder to height H, width W, C channels (1, 3 or 4) "
                         "[ini: robustness_image_size; default: the images' own size, which must then be one]")
    group.addoption("--architecture", action="append", default=None, metavar="NAME",
                    help=f"architecture to test, repeatable: {', '.join(ARCHITECTURES)} "
                         f"[ini: robustness_architectures; default {' '.join(DEFAULT_ARCHITECTURES)}]")
    group.addoption("--model-uri", action="append", default=None, metavar="[ARCH=]URI",
                    help="test a registered model (models:/NAME/VERSION or models:/NAME@ALIAS) instead of training, "
                         "repeatable as ARCH=URI (one candidate per architecture); a bare URI is named by "
                         "--architecture or by its _<architecture> suffix")
    model_options.add_model_options(group, parser)
    group.addoption("--experiment", default=None,
                    help="MLflow experiment [ini: robustness_experiment; default: dataset name, 'mnist' for built-in]")
    group.addoption("--mlflow-uri", default=None, metavar="URI",
                    help="MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory]")
    group.addoption("--mlflow-timeout", default=None, metavar="SECONDS",
                    help="seconds the start-up probe of an http(s) tracking server waits for it to answer "
                         "[ini: robustness_mlflow_timeout; default 5]")
    group.addoption("--robustness-sync-logging", action="store_true", default=None,
                    help="write each test's MLflow artifacts and end its run before the next test starts, not on a "
                         "background thread (for debugging) [ini: robustness_sync_logging; default false]")
    # Integers are parsed in read_settings, not by argparse, so a bad value gets
    # the same one-line error whether it came from the command line or an ini key.
    group.addoption("--robustness-seed", default=None, metavar="SEED",
                    help="seed for data split, training and attacks [ini: robustness_seed; default 0]")
    group.addoption("--train", action="append", default=None, metavar="KEY=VALUE",
                    help="training parameter, repeatable: epochs, batch_size, learning_rate, optimizer "
                         "(adam/rmsprop/adagrad/sgd), validation_split, samples [ini: robustness_train]")
    group.addoption("--samples", default=None, metavar="N",
                    help="attack at most N test images (0: all) [ini: robustness_samples; default 0]")
    # choices and numbers are checked in read_settings, not by argparse: one line, not a usage block
    group.addoption("--keep-examples", default=None, metavar="N",
                    help="clean images (with their adversarial ones) each cell's adversarial_examples.npz keeps: "
                         "N (a seeded sample when the cell has more), 'all', or 'auto' (all while they take at most "
                         "64 MiB as float32, else a sample that fits) [ini: robustness_keep_examples; default auto]")
    group.addoption("--stream-batch", default=None, metavar="N",
                    help="read, attack and score a Dioptra folder's test images N at a time instead of loading the "
                         "data set whole: N, 0 (load it whole) or 'auto' (streamed 256 at a time when the evaluation "
                         "images take more than 1 GiB as float32) [ini: robustness_stream_batch; default auto]")
    group.addoption("--attack-backend", default=None, metavar="{" + ",".join(BACKENDS) + "}",
                    help="'compiled' (batched tf.function kernels) or 'art' (ART's own classes, the reference) "
                         "[ini: robustness_attack_backend; default compiled]")
    group.addoption("--robustness-cache", default=None, metavar="{" + ",".join(CACHE_MODES) + "}",
                    help="reuse adversarial examples and patches across runs [ini: robustness_cache; default readwrite]")
    group.addoption("--robustness-cache-dir", default=None, metavar="DIR",
                    help="where cached examples and locks live [ini: robustness_cache_dir; default <rootdir>/.robustness_cache]")

    gate = parser.getgroup(GROUP)
    gate.addoption("--thresholds", default=None, metavar="FILE",
                   help="TOML file of thresholds ([[thresholds]] tables) [default: [[tool.robustness.thresholds]] "
                        "in the project's pyproject.toml]")
    gate.addoption("--baseline-uri", action="append", default=None, metavar="[ARCH=]URI",
                   help="registered baseline (models:/NAME@ALIAS or models:/NAME/VERSION): every cell also runs on it "
                        "and fails when the candidate drops below it by more than --max-regression; repeatable as "
                        "ARCH=URI (a bare URI is every architecture's baseline)")
    gate.addoption("--max-regression", default=None, metavar="DELTA",
                   help="tolerated absolute drop against the baseline [ini: robustness_max_regression; default 0.02]")
    gate.addoption("--promote", default=None, metavar="ALIAS",
                   help="give this registry alias to each candidate model version whose cells all passed")
    gate.addoption("--significance", default=None, metavar="ALPHA",
                   help="a baseline regression must also be significant at this level (exact McNemar test) "
                        "[ini: robustness_significance; default 0.05]")
    gate.addoption("--gradient-masking", default=None, metavar="MODE",
                   help=f"a cell whose model fails a gradient-masking check: {', '.join(GRADIENT_MASKING_MODES)} "
                        "(fail it, warn, or skip the checks) [ini: robustness_gradient_masking; default fail]")
    parser.addini("robustness_significance", "default --significance", default="0.05")
    parser.addini("robustness_gradient_masking", "default --gradient-masking", default="fail")

    parser.addini("robustness_max_regression", "default --max-regression", default="0.02")
    parser.addini("robustness_dataset", "default --dataset", default="mnist")
    parser.addini("robustness_image_size", "default --image-size (H,W,C)", default="")
    parser.addini("robustness_architectures", "default --architecture list", type="args",
                  default=list(DEFAULT_ARCHITECTURES))
    parser.addini("robustness_experiment", "default --experiment", default="")
    parser.addini("robustness_seed", "default --robustness-seed", default="0")
    parser.addini("robustness_train", "default training parameters, KEY=VALUE ...", type="args", default=[])
    parser.addini("robustness_samples", "default --samples", default="0")
    parser.addini("robustness_keep_examples", "default --keep-examples", default="auto")
    parser.addini("robustness_stream_batch", "default --stream-batch", default="auto")
    parser.addini("robustness_attack_backend", "default --attack-backend", default="compiled")
    parser.addini("robustness_cache", "default --robustness-cache", default="readwrite")
    parser.addini("robustness_cache_dir", "default --robustness-cache-dir", default="")
    parser.addini("robustness_mlflow_timeout", "default --mlflow-timeout", default="5")
    parser.addini("robustness_sync_logging", "default --robustness-sync-logging", type="bool", default=False)


@dataclass(frozen=True)
class Settings:
    dataset: str = "mnist"
    image_size: tuple[int, int, int] | None = None
    architectures: tuple[str, ...] = DEFAULT_ARCHITECTURES
    experiment: str = "mnist"
    mlflow_uri: str = ""
    mlflow_uri_source: str = "--mlflow-uri"  # where the URI came from, for messages: option, env or default
    mlflow_timeout: float = 5.0
    sync_logging: bool = False  # --robustness-sync-logging: no background writer
    seed: int = 0
    gpu: bool = False
    training: TrainingParams = field(default_factory=TrainingParams)
    training_explicit: frozenset[str] = frozenset()
    samples: int = 0
    keep_examples: int | None = None  # None: the default size bound (data.example_files); 0: all
    stream_batch: int = 0  # a folder's test images read this many at a time (0: loaded whole)
    attack_backend: str = "compiled"
    cache_mode: str = "readwrite"
    cache_dir: Path = Path(".robustness_cache")
    thresholds_file: Path | None = None
    max_regression: float = 0.02
    promote: str | None = None
    model: model_options.ModelOptions = field(default_factory=model_options.ModelOptions)

    @property
    def model_uri(self) -> str | None:
        """The candidates given by --model-uri, as one string (a session param)."""
        return model_options.joined(self.model.model_uris)

    @property
    def baseline_uri(self) -> str | None:
        return model_options.joined(self.model.baseline_uris)

    def model_uri_for(self, architecture: str) -> str | None:
        return dict(self.model.model_uris).get(architecture)

    def baseline_uri_for(self, architecture: str) -> str | None:
        found = dict(self.model.baseline_uris)
        return found.get(architecture, found.get(""))
    significance: float = 0.05
    gradient_masking: str = "fail"

    def training_for(self, architecture: str) -> TrainingParams:
        overrides = dict(get_architecture(architecture).training_overrides)
        return self.training.with_overrides(overrides, set(self.training_explicit))

    def samples_for(self, architecture: str, available: int) -> int:
        known = known_architectures().get(architecture)  # a user's model may carry any architecture name
        cap = known.max_eval_samples if known is not None else None
        n = self.samples or available
        if cap and not self.samples:
            n = min(n, cap)
        return min(n, available)


def _int(option: str, raw: Any) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise RobustnessUsageError(f"{option} {raw!r}: expected an integer") from None


def _choice(option: str, raw: str, allowed: tuple[str, ...]) -> str:
    if raw not in allowed:
        raise RobustnessUsageError(f"{option} {raw!r}: expected one of {', '.join(allowed)}")
    return raw


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def _number(option: str, raw: Any, expected: str = "a number >= 0") -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise RobustnessUsageError(f"{option} {raw!r}: expected {expected}") from None
    if not math.isfinite(value) or value < 0:
        raise RobustnessUsageError(f"{option} {raw!r}: expected {expected}")
    return value


def parse_image_size(option: str, raw: str) -> tuple[int, int, int] | None:
    """``H,W,C`` (Dioptra's ``image_size``): positive height and width, 1, 3 or 4 channels; "" for none."""
    if raw in (None, ""):
        return None
    parts = [p.strip() for p in str(raw).split(",")]
    expected = "expected H,W,C: height and width > 0, C one of 1, 3, 4 (e.g. 28,28,1)"
    try:
        height, width, channels = (int(p) for p in parts)
    except ValueError:
        raise RobustnessUsageError(f"{option} {raw!r}: {expected}") from None
    if height < 1 or width < 1 or channels not in (1, 3, 4):
        raise RobustnessUsageError(f"{option} {raw!r}: {expected}")
    return height, width, channels


def _seed(option: str, raw: Any) -> int:
    seed = _int(option, raw)
    if not 0 <= seed < 2**32:
        raise RobustnessUsageError(f"{option} {seed}: expected an integer in [0, 2**32 - 1]")
    return seed


def _cache_dir(option: str, path: Path) -> Path:
    """An existing folder, or one that can be created (its nearest existing parent is a writable folder)."""
    if path.exists():
        if not path.is_dir():
            raise RobustnessUsageError(f"{option} {path}: exists and is not a folder")
        return path
    parent = next(p for p in path.parents if p.exists())
    if not (parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)):  # sessions/ and locks/ live there too
        raise RobustnessUsageError(f"{option} {path}: cannot be created ({parent} is not a writable folder)")
    return path


def _positive_seconds(option: str, raw: Any) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise RobustnessUsageError(f"{option} {raw!r}: expected a number of seconds > 0")
    return value


def _tracking_uri_and_source(config: pytest.Config) -> tuple[str, str]:
    if config.getoption("--mlflow-uri"):
        return config.getoption("--mlflow-uri"), "--mlflow-uri"
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"], "MLFLOW_TRACKING_URI"
    return default_tracking_uri(), "default tracking URI"


def read_settings(config: pytest.Config) -> Settings:
    opt = config.getoption
    dataset_source, dataset = option_or_ini(config, "--dataset", "robustness_dataset")
    image_size = parse_image_size(*option_or_ini(config, "--image-size", "robustness_image_size"))

    model = model_options.read_model_options(config, opt("--model-uri") or (), opt("--baseline-uri") or (),
                                       tuple(opt("--architecture") or ()))
    architectures = model.architectures or tuple(config.getini("robustness_architectures"))
    for name in architectures:
        if name not in model.user_architectures:
            get_architecture(name)
    architectures = tuple(dict.fromkeys(architectures))

    samples_source, raw_samples = option_or_ini(config, "--samples", "robustness_samples")
    samples = _int(samples_source, raw_samples)
    if samples < 0:
        raise RobustnessUsageError(f"{samples_source} {samples}: expected 0 (all) or a positive count")

    keep_examples = _keep_examples(*option_or_ini(config, "--keep-examples", "robustness_keep_examples"))

    train_items = list(config.getini("robustness_train")) + list(opt("--train") or [])
    training = TrainingParams.parse(train_items)
    explicit = frozenset(item.partition("=")[0].strip() for item in train_items)

    max_regression = _number(*option_or_ini(config, "--max-regression", "robustness_max_regression"))
    promote = opt("--promote")
    if promote is not None and not promote.replace("-", "").replace("_", "").isalnum():
        raise RobustnessUsageError(f"--promote {promote!r}: an alias is letters, digits, '-' and '_'")

    significance_source, raw_significance = option_or_ini(config, "--significance", "robustness_significance")
    try:
        significance = float(raw_significance)
    except (TypeError, ValueError):
        significance = float("nan")
    if not 0 < significance < 1:
        raise RobustnessUsageError(f"{significance_source} {raw_significance}: "
                                   "expected a significance level strictly between 0 and 1, e.g. 0.05")
    attack_backend = _choice(*option_or_ini(config, "--attack-backend", "robustness_attack_backend"), BACKENDS)
    cache_mode = _choice(*option_or_ini(config, "--robustness-cache", "robustness_cache"), CACHE_MODES)
    cache_source, cache_dir = option_or_ini(config, "--robustness-cache-dir", "robustness_cache_dir")
    cache_dir = _cache_dir(cache_source, Path(cache_dir or Path(config.rootpath) / ".robustness_cache").resolve())
    seed = _seed(*option_or_ini(config, "--robustness-seed", "robustness_seed"))
    experiment = opt("--experiment") or config.getini("robustness_experiment") or default_experiment_name(dataset)

    mlflow_uri, mlflow_uri_source = _tracking_uri_and_source(config)
    mlflow_timeout = _positive_seconds(*option_or_ini(config, "--mlflow-timeout", "robustness_mlflow_timeout"))

    # Last, as the slowest: the data itself (a folder is decoded, unless cached; an .npz read and checked).
    cache = ArrayCache(cache_dir / "arrays", cache_mode)
    stream_source, raw_stream = option_or_ini(config, "--stream-batch", "robustness_stream_batch")
    stream_batch = stream_batch_for(dataset, image_size, samples, raw_stream, stream_source)
    validate_dataset_spec(dataset, image_size, option=dataset_source, cached=lambda parts: cache.has(cache.key(*parts)),
                          stream=(samples, stream_batch) if stream_batch else None)

    return Settings(
        significance=significance,
        gradient_masking=_choice(*option_or_ini(config, "--gradient-masking", "robustness_gradient_masking"),
                                 GRADIENT_MASKING_MODES),
        thresholds_file=Path(opt("--thresholds")).resolve() if opt("--thresholds") else None,
        model=model,
        max_regression=max_regression,
        promote=promote,
        dataset=dataset,
        image_size=image_size,
        architectures=architectures,
        experiment=experiment,
        mlflow_uri=mlflow_uri,
        mlflow_uri_source=mlflow_uri_source,
        mlflow_timeout=mlflow_timeout,
        sync_logging=bool(opt("--robustness-sync-logging") or config.getini("robustness_sync_logging")),
        seed=seed,
        gpu=bool(opt("--gpu")),
        training=training,
        training_explicit=explicit,
        samples=samples,
        keep_examples=keep_examples,
        stream_batch=stream_batch,
        attack_backend=attack_backend,
        cache_mode=cache_mode,
        cache_dir=cache_dir,
    )


def _keep_examples(source: str, raw) -> int | None:
    text = str(raw).strip().lower()
    if text in ("", "auto"):
        return None
    if text == "all":
        return 0
    if not text.isdigit() or int(text) < 1:
        raise RobustnessUsageError(f"{source} {raw!r}: expected a positive count of examples, 'all' or 'auto'")
    return int(text)
