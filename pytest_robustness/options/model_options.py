"""Options that say which user models to test and how to read them (no TensorFlow, no MLflow here).

``--model-uri`` and ``--baseline-uri`` are repeatable as ``ARCH=URI`` so one
session gates every architecture's candidate against its own baseline; a bare
``URI`` keeps its old meaning. ``ARCH`` is any name: a user's model is not one
of the architectures the harness trains, the name only labels its test ids,
markers and threshold selectors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pytest

from ..errors import RobustnessUsageError
from ..models.architectures import known_architectures
from ..models.loading import MODEL_OUTPUTS, check_model_file, hdf5_problem, parse_input_range
from ..models.uris import parse_model_uri

PRETRAINED_BASES = ("resnet50", "vgg16")  # architectures whose base --base-weights initialises
ARCH_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off", "")


def add_model_options(group, parser: pytest.Parser) -> None:
    group.addoption("--model-output", default=None, metavar="KIND",
                    help="what the model under test outputs: logits, probabilities, or auto (a final softmax means "
                         "probabilities) [ini: robustness_model_output; default auto]")
    group.addoption("--input-range", default=None, metavar="LOW,HIGH",
                    help="pixel range the model under test takes, e.g. 0,255; data and attack budgets stay in [0, 1] "
                         "and the model is fed x*(HIGH-LOW)+LOW [ini: robustness_input_range; default 0,1]")
    group.addoption("--model-file", default=None, metavar="PATH",
                    help="a Keras model file (.keras or .h5) to register as {experiment}_{architecture} (once per "
                         "weights) and test; --architecture names it")
    group.addoption("--model-tag", default=None, metavar="TAG",
                    help="register --model-file as {experiment}_{TAG}_{architecture}")
    group.addoption("--base-weights", default=None, metavar="PATH",
                    help="local ImageNet weights file (no top) for the keras.applications base of resnet50/vgg16 "
                         "when training them: loaded and frozen, as Dioptra does [ini: robustness_base_weights]")
    group.addoption("--trust-model-code", action="store_true", default=None,
                    help="load models whose Lambda layers or custom objects run Python code (Keras safe_mode off) "
                         "[ini: robustness_trust_model_code; default false]")
    parser.addini("robustness_model_output", "default --model-output", default="auto")
    parser.addini("robustness_input_range", "default --input-range", default="0,1")
    parser.addini("robustness_base_weights", "default --base-weights", default="")
    parser.addini("robustness_trust_model_code", "default --trust-model-code (true/false)", default="false")


@dataclass(frozen=True)
class ModelOptions:
    """Which users' models to test (--model-uri, --baseline-uri, --model-file) and how to read them."""

    model_uris: tuple[tuple[str, str], ...] = ()
    baseline_uris: tuple[tuple[str, str], ...] = ()
    architectures: tuple[str, ...] = ()  # named by the models given, or by --architecture
    user_architectures: frozenset[str] = frozenset()  # names that label a given model (not trained here)
    output: str = "auto"
    input_range: tuple[float, float] = (0.0, 1.0)
    model_file: Path | None = None
    model_tag: str | None = None
    trust_code: bool = False
    base_weights: Path | None = None

    def not_trainable(self, label: str, what: str) -> str | None:
        """Why ``what`` (a training-time defense or recipe) cannot train a model from ``label``, in one line:
        the label names a given model, not an architecture the harness builds; None when it can."""
        if label not in self.user_architectures:
            return None
        option = f"--model-uri {label}=..." if label in dict(self.model_uris) else "--model-file"
        return (f"{what} trains a model of its own from the architecture, and {label} is a given model ({option}), "
                "not an architecture the harness can train")

    def base_weights_for(self, architecture: str) -> Path | None:
        """The pretrained base's weights file, for the architectures built on a keras.applications base."""
        return self.base_weights if architecture in PRETRAINED_BASES else None

    @property
    def given(self) -> bool:
        """A user's model is under test (its output and input range options apply)."""
        return bool(self.model_uris or self.model_file)


def joined(pairs: Iterable[tuple[str, str]]) -> str | None:
    items = [f"{arch}={uri}" if arch else uri for arch, uri in pairs]
    return ",".join(items) if items else None


def _split(option: str, item: str) -> tuple[str, str]:
    """``ARCH=URI`` -> (ARCH, URI); a bare URI -> ("", URI); the URI checked."""
    arch, uri = ("", item)
    if "=" in item and not item.startswith("models:"):
        arch, _, uri = item.partition("=")
        if not ARCH_NAME.match(arch):
            raise RobustnessUsageError(f"{option} {item}: {arch!r} is not an architecture name (letters, digits, '_')")
    parse_model_uri(uri, option)
    return arch, uri


def _infer(option: str, uri: str, architectures: tuple[str, ...], named: bool) -> str:
    if len(architectures) == 1 and not named:
        return architectures[0]
    if len(architectures) > 1 and not named:
        raise RobustnessUsageError(f"{option} {uri}: give at most one --architecture to name it (or ARCH={uri})")
    name = uri[len("models:/"):].split("/")[0].split("@")[0]
    inferred = [a for a in known_architectures() if name.endswith(f"_{a}") or name == a]
    if not inferred:
        raise RobustnessUsageError(f"{option} {uri}: cannot tell its architecture from the name; "
                                   "add --architecture NAME")
    return inferred[0]


def _no_duplicates(option: str, pairs: list[tuple[str, str]]) -> None:
    seen: dict[str, str] = {}
    for arch, uri in pairs:
        if arch in seen:
            label = f"architecture {arch}" if arch else "a bare URI (every architecture)"
            raise RobustnessUsageError(f"{option}: {label} is given twice ({seen[arch]} and {uri})")
        seen[arch] = uri


def _flag(config: pytest.Config, option: str, ini: str) -> bool:
    value = config.getoption(option)
    if value is not None:
        return bool(value)
    raw = str(config.getini(ini)).strip().lower()
    if raw not in TRUE_WORDS + FALSE_WORDS:
        raise RobustnessUsageError(f"{ini} {raw!r}: expected true or false")
    return raw in TRUE_WORDS


def option_or_ini(config: pytest.Config, option: str, ini: str) -> tuple[str, Any]:
    """Where the value came from (the option, else its ini key) and the value, for error messages."""
    value = config.getoption(option)
    return (option, value) if value is not None else (ini, config.getini(ini))


def read_model_options(config: pytest.Config, raw_models, raw_baselines, architectures: tuple[str, ...]) -> ModelOptions:
    """The model options, validated; ``architectures`` are the --architecture values."""
    candidates = [_split("--model-uri", item) for item in raw_models]
    bare = [uri for arch, uri in candidates if not arch]
    if len(bare) > 1:
        raise RobustnessUsageError(f"--model-uri {bare[1]}: several bare URIs; name each as ARCH=URI")
    named = [arch for arch, _ in candidates if arch]
    candidates = [(arch or _infer("--model-uri", uri, architectures, bool(named)), uri) for arch, uri in candidates]
    _no_duplicates("--model-uri", candidates)
    selected: tuple[str, ...] = architectures
    model_file = None
    if config.getoption("--model-file"):
        model_file = check_model_file(config.getoption("--model-file"))
        if candidates:
            raise RobustnessUsageError(f"--model-file {model_file}: give either --model-file or --model-uri")
        if len(architectures) != 1 or not ARCH_NAME.match(architectures[0]):
            raise RobustnessUsageError(f"--model-file {model_file}: name its architecture with one --architecture NAME")
    elif config.getoption("--model-tag"):
        raise RobustnessUsageError("--model-tag: only with --model-file")
    if candidates:
        given = tuple(arch for arch, _ in candidates)
        missing = [a for a in architectures if a not in given]
        if named and missing:
            raise RobustnessUsageError(f"--architecture {missing[0]}: no --model-uri {missing[0]}=URI names it")
        selected = tuple(a for a in given if not architectures or a in architectures or not named)
    tag = config.getoption("--model-tag")
    if tag is not None and not ARCH_NAME.match(tag):
        raise RobustnessUsageError(f"--model-tag {tag!r}: a tag is letters, digits and '_'")
    baselines = [_split("--baseline-uri", item) for item in raw_baselines]
    _no_duplicates("--baseline-uri", baselines)
    output_source, output = option_or_ini(config, "--model-output", "robustness_model_output")
    if output not in MODEL_OUTPUTS:
        raise RobustnessUsageError(f"{output_source} {output!r}: expected one of {', '.join(MODEL_OUTPUTS)}")
    weights_source, raw_weights = option_or_ini(config, "--base-weights", "robustness_base_weights")
    base_weights = None
    if raw_weights:
        base_weights = Path(raw_weights).expanduser()
        if not base_weights.is_file() or base_weights.suffix != ".h5":
            raise RobustnessUsageError(f"{weights_source} {raw_weights}: expected an existing Keras weights file "
                                       "(.h5, e.g. saved with base.save_weights('base.weights.h5'))")
        base_weights = base_weights.resolve()
        problem = hdf5_problem(base_weights)
        if problem is not None:
            raise RobustnessUsageError(f"{weights_source} {raw_weights}: {problem}")
    user = {arch for arch, _ in candidates} | ({architectures[0]} if model_file else set())
    return ModelOptions(
        model_uris=tuple(candidates), baseline_uris=tuple(baselines), architectures=selected,
        user_architectures=frozenset(user), output=output,
        input_range=parse_input_range(*option_or_ini(config, "--input-range", "robustness_input_range")),
        model_file=model_file, model_tag=tag,
        trust_code=_flag(config, "--trust-model-code", "robustness_trust_model_code"), base_weights=base_weights)
