"""Command-line options and ini keys, read once into a validated, immutable :class:`Settings`.

Validation here is cheap (no TensorFlow, no training), so bad input fails at
start-up with one line naming the option, value and what was expected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .architectures import ARCHITECTURES, DEFAULT_ARCHITECTURES, get_architecture
from .attacks import BACKENDS
from .datasets import default_experiment_name, validate_dataset_spec
from .errors import RobustnessUsageError
from .model_uris import parse_model_uri
from .training import TrainingParams

CACHE_MODES = ("readwrite", "read", "write", "off")
GROUP = "robustness"


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, "adversarial robustness (pytest-robustness)")
    group.addoption("--gpu", action="store_true", default=False,
                    help="run on a GPU (fails at start-up if TensorFlow sees none); tests marked gpu need it")
    group.addoption("--dataset", default=None,
                    help="'mnist' (built-in), a Dioptra folder with training/<label>/*.png and testing/<label>/*.png, "
                         "or an .npz with x_train/y_train/x_test/y_test [ini: robustness_dataset; default mnist]")
    group.addoption("--architecture", action="append", default=None, metavar="NAME",
                    help=f"architecture to test, repeatable: {', '.join(ARCHITECTURES)} "
                         f"[ini: robustness_architectures; default {' '.join(DEFAULT_ARCHITECTURES)}]")
    group.addoption("--model-uri", default=None, metavar="URI",
                    help="test a registered model (models:/NAME/VERSION or models:/NAME@ALIAS) instead of training; "
                         "--architecture names it in test ids and thresholds")
    group.addoption("--experiment", default=None,
                    help="MLflow experiment [ini: robustness_experiment; default: dataset name, 'mnist' for built-in]")
    group.addoption("--mlflow-uri", default=None, metavar="URI",
                    help="MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory]")
    # Integers are parsed in read_settings, not by argparse, so a bad value gets
    # the same one-line error whether it came from the command line or an ini key.
    group.addoption("--robustness-seed", default=None, metavar="SEED",
                    help="seed for data split, training and attacks [ini: robustness_seed; default 0]")
    group.addoption("--train", action="append", default=None, metavar="KEY=VALUE",
                    help="training parameter, repeatable: epochs, batch_size, learning_rate, optimizer "
                         "(adam/rmsprop/adagrad/sgd), validation_split, samples [ini: robustness_train]")
    group.addoption("--samples", default=None, metavar="N",
                    help="attack at most N test images (0: all) [ini: robustness_samples; default 0]")
    group.addoption("--attack-backend", default=None, choices=BACKENDS,
                    help="'compiled' (batched tf.function kernels) or 'art' (ART's own classes, the reference) "
                         "[ini: robustness_attack_backend; default compiled]")
    group.addoption("--robustness-cache", default=None, choices=CACHE_MODES,
                    help="reuse adversarial examples and patches across runs [ini: robustness_cache; default readwrite]")
    group.addoption("--robustness-cache-dir", default=None, metavar="DIR",
                    help="where cached examples and locks live [ini: robustness_cache_dir; default <rootdir>/.robustness_cache]")

    gate = parser.getgroup(GROUP)
    gate.addoption("--thresholds", default=None, metavar="FILE",
                   help="TOML file of thresholds ([[thresholds]] tables) [default: [[tool.robustness.thresholds]] "
                        "in the project's pyproject.toml]")
    gate.addoption("--baseline-uri", default=None, metavar="URI",
                   help="registered baseline (models:/NAME@ALIAS or models:/NAME/VERSION): every cell also runs on it "
                        "and fails when the candidate drops below it by more than --max-regression")
    gate.addoption("--max-regression", type=float, default=None, metavar="DELTA",
                   help="tolerated absolute drop against the baseline [ini: robustness_max_regression; default 0.02]")
    gate.addoption("--promote", default=None, metavar="ALIAS",
                   help="when every selected test passed, give the candidate model versions this registry alias")

    parser.addini("robustness_max_regression", "default --max-regression", default="0.02")
    parser.addini("robustness_dataset", "default --dataset", default="mnist")
    parser.addini("robustness_architectures", "default --architecture list", type="args",
                  default=list(DEFAULT_ARCHITECTURES))
    parser.addini("robustness_experiment", "default --experiment", default="")
    parser.addini("robustness_seed", "default --robustness-seed", default="0")
    parser.addini("robustness_train", "default training parameters, KEY=VALUE ...", type="args", default=[])
    parser.addini("robustness_samples", "default --samples", default="0")
    parser.addini("robustness_attack_backend", "default --attack-backend", default="compiled")
    parser.addini("robustness_cache", "default --robustness-cache", default="readwrite")
    parser.addini("robustness_cache_dir", "default --robustness-cache-dir", default="")


@dataclass(frozen=True)
class Settings:
    dataset: str = "mnist"
    architectures: tuple[str, ...] = DEFAULT_ARCHITECTURES
    model_uri: str | None = None
    experiment: str = "mnist"
    mlflow_uri: str = ""
    seed: int = 0
    gpu: bool = False
    training: TrainingParams = field(default_factory=TrainingParams)
    training_explicit: frozenset[str] = frozenset()
    samples: int = 0
    attack_backend: str = "compiled"
    cache_mode: str = "readwrite"
    cache_dir: Path = Path(".robustness_cache")
    thresholds_file: Path | None = None
    baseline_uri: str | None = None
    max_regression: float = 0.02
    promote: str | None = None

    def training_for(self, architecture: str) -> TrainingParams:
        overrides = dict(get_architecture(architecture).training_overrides)
        return self.training.with_overrides(overrides, set(self.training_explicit))

    def samples_for(self, architecture: str, available: int) -> int:
        cap = get_architecture(architecture).max_eval_samples
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


def _option_or_ini(config: pytest.Config, option: str, ini: str) -> tuple[str, Any]:
    """Where the value came from (the option, else its ini key) and the value, for error messages."""
    value = config.getoption(option)
    return (option, value) if value is not None else (ini, config.getini(ini))


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def read_settings(config: pytest.Config) -> Settings:
    opt = config.getoption
    dataset = opt("--dataset") or config.getini("robustness_dataset")
    validate_dataset_spec(dataset)

    model_uri = opt("--model-uri")
    architectures = tuple(opt("--architecture") or ())
    if model_uri:
        name, _, _ = parse_model_uri(model_uri)
        if len(architectures) > 1:
            raise RobustnessUsageError(f"--model-uri {model_uri}: give at most one --architecture to name it")
        if not architectures:
            inferred = [a for a in ARCHITECTURES if name.endswith(f"_{a}") or name == a]
            if not inferred:
                raise RobustnessUsageError(
                    f"--model-uri {model_uri}: cannot tell its architecture from the name; add --architecture NAME"
                )
            architectures = (inferred[0],)
    architectures = architectures or tuple(config.getini("robustness_architectures"))
    for name in architectures:
        get_architecture(name)
    architectures = tuple(dict.fromkeys(architectures))

    samples_source, raw_samples = _option_or_ini(config, "--samples", "robustness_samples")
    samples = _int(samples_source, raw_samples)
    if samples < 0:
        raise RobustnessUsageError(f"{samples_source} {samples}: expected 0 (all) or a positive count")

    train_items = list(config.getini("robustness_train")) + list(opt("--train") or [])
    training = TrainingParams.parse(train_items)
    explicit = frozenset(item.partition("=")[0].strip() for item in train_items)

    max_regression = opt("--max-regression")
    if max_regression is None:
        try:
            max_regression = float(config.getini("robustness_max_regression"))
        except ValueError:
            raise RobustnessUsageError(
                f"robustness_max_regression {config.getini('robustness_max_regression')!r}: expected a number >= 0"
            ) from None
    if max_regression < 0:
        raise RobustnessUsageError(f"--max-regression {max_regression}: expected a number >= 0")
    baseline_uri = opt("--baseline-uri")
    if baseline_uri:
        parse_model_uri(baseline_uri, option="--baseline-uri")
    promote = opt("--promote")
    if promote is not None and not promote.replace("-", "").replace("_", "").isalnum():
        raise RobustnessUsageError(f"--promote {promote!r}: an alias is letters, digits, '-' and '_'")

    return Settings(
        thresholds_file=Path(opt("--thresholds")).resolve() if opt("--thresholds") else None,
        baseline_uri=baseline_uri,
        max_regression=max_regression,
        promote=promote,
        dataset=dataset,
        architectures=architectures,
        model_uri=model_uri,
        experiment=opt("--experiment") or config.getini("robustness_experiment") or default_experiment_name(dataset),
        mlflow_uri=opt("--mlflow-uri") or default_tracking_uri(),
        seed=_int(*_option_or_ini(config, "--robustness-seed", "robustness_seed")),
        gpu=bool(opt("--gpu")),
        training=training,
        training_explicit=explicit,
        samples=samples,
        attack_backend=_choice(*_option_or_ini(config, "--attack-backend", "robustness_attack_backend"), BACKENDS),
        cache_mode=_choice(*_option_or_ini(config, "--robustness-cache", "robustness_cache"), CACHE_MODES),
        cache_dir=Path(opt("--robustness-cache-dir") or config.getini("robustness_cache_dir")
                       or Path(config.rootpath) / ".robustness_cache").resolve(),
    )
