"""Training with Dioptra's ``train`` entry-point parameters, seeded and reproducible."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import RobustnessUsageError

OPTIMIZERS = ("adam", "rmsprop", "adagrad", "sgd")


@dataclass(frozen=True)
class TrainingParams:
    """Dioptra's ``train`` parameters (its defaults are 30 epochs; tests need far fewer)."""

    epochs: float = 3.0
    batch_size: int = 32
    learning_rate: float = 0.001
    optimizer: str = "adam"
    validation_split: float = 0.2
    samples: int = 0  # training images used; 0 means all

    def __post_init__(self) -> None:
        checks = {
            "epochs": math.isfinite(self.epochs) and self.epochs > 0,
            "batch_size": self.batch_size >= 1,
            "learning_rate": math.isfinite(self.learning_rate) and self.learning_rate > 0,
            "optimizer": self.optimizer in OPTIMIZERS,
            "validation_split": 0 <= self.validation_split < 1,
            "samples": self.samples >= 0,
        }
        expected = {
            "epochs": "a number > 0", "batch_size": "an integer >= 1", "learning_rate": "a number > 0",
            "optimizer": f"one of {', '.join(OPTIMIZERS)}", "validation_split": "in [0, 1)",
            "samples": "an integer >= 0 (0: all)",
        }
        for name, ok in checks.items():
            if not ok:
                raise RobustnessUsageError(f"--train {name}={getattr(self, name)!r}: expected {expected[name]}")

    @classmethod
    def parse(cls, assignments: list[str], base: Mapping[str, Any] | None = None) -> "TrainingParams":
        """Build from ``KEY=VALUE`` strings (``--train epochs=5``), typed by the field defaults."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = dict(base or {})
        for item in assignments:
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or key not in fields:
                raise RobustnessUsageError(
                    f"--train {item!r}: expected KEY=VALUE with KEY one of {', '.join(fields)}"
                )
            kind = type(fields[key].default)
            try:
                values[key] = raw.strip().lower() if kind is str else kind(raw)
            except ValueError:
                raise RobustnessUsageError(f"--train {item!r}: {key} must be a {kind.__name__}") from None
        return cls(**values)

    def with_overrides(self, overrides: Mapping[str, Any], explicit: set[str]) -> "TrainingParams":
        """Apply an architecture's CPU budget, except for keys the user set explicitly."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if k not in explicit})

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def make_optimizer(name: str, learning_rate: float):
    import keras

    return {
        "adam": keras.optimizers.Adam,
        "rmsprop": keras.optimizers.RMSprop,
        "adagrad": keras.optimizers.Adagrad,
        "sgd": keras.optimizers.SGD,
    }[name](learning_rate=learning_rate)


def compile_model(model, params: TrainingParams) -> None:
    import keras

    model.compile(
        optimizer=make_optimizer(params.optimizer, params.learning_rate),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=["accuracy"],
    )


def training_subset(x: np.ndarray, y: np.ndarray, samples: int) -> tuple[np.ndarray, np.ndarray]:
    return (x, y) if not samples or samples >= len(x) else (x[:samples], y[:samples])


def fit(model, x: np.ndarray, y: np.ndarray, params: TrainingParams, n_classes: int, seed: int,
        progress: Callable[[int, float, float], None] | None = None) -> dict[str, float]:
    """Fit with early stopping on val_loss (Dioptra's min_delta 0.01, patience 5, best weights kept).

    A fractional ``epochs`` (Dioptra accepts floats) trains the whole epochs, then
    one pass over that fraction of the data: handy for deliberately weak models.
    """
    import keras

    keras.utils.set_random_seed(seed)
    x, y = training_subset(x, y, params.samples)
    y_onehot = keras.utils.to_categorical(y, n_classes)
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=0.01, patience=5, restore_best_weights=True)]
    epoch_lines = [] if progress is None else [_epoch_progress(progress)]
    whole, fraction = int(math.floor(params.epochs)), params.epochs - math.floor(params.epochs)
    history: dict[str, list[float]] = {}
    if whole:
        h = model.fit(x, y_onehot, epochs=whole, batch_size=params.batch_size,
                      validation_split=params.validation_split,
                      callbacks=(callbacks if params.validation_split else []) + epoch_lines,
                      shuffle=True, verbose=0)
        history = h.history
    if fraction > 1e-9:
        n = max(params.batch_size, int(len(x) * fraction))
        h = model.fit(x[:n], y_onehot[:n], epochs=1, batch_size=params.batch_size, shuffle=True, verbose=0,
                      callbacks=epoch_lines)
        history = {k: history.get(k, []) + v for k, v in h.history.items()}
    return {f"train_{k}": float(v[-1]) for k, v in history.items() if v}


def _epoch_progress(report: Callable[[int, float, float], None]):
    """A Keras callback reporting (epochs done, loss, seconds since training began) after each epoch."""
    import keras

    started, done = time.perf_counter(), [0]

    def on_epoch_end(epoch, logs=None):
        done[0] += 1
        report(done[0], float((logs or {}).get("loss", float("nan"))), time.perf_counter() - started)

    return keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)
