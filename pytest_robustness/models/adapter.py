"""A user's Keras classifier as attacks need it: logits out, pixels in [0, 1] in.

Attacks differentiate the cross-entropy on logits (``from_logits=True``): on a
model that ends in logits, the loss on probabilities is simply wrong, and on one
that ends in a softmax the loss on its probabilities is exact only where Keras
can recover the logits from the softmax tensor. So a final softmax is peeled off
(a model up to the softmax's input, sharing the user's weights), and a model said
to output probabilities whose softmax cannot be peeled gets ``log(p)`` as logits
(the same loss as on its probabilities).

Data stays in [0, 1], so attack budgets (eps, eps_step) keep meaning a fraction
of the pixel range; a model that takes pixels in [LOW, HIGH] (e.g. [0, 255] with
a ``Rescaling`` inside) is fed ``x * (HIGH - LOW) + LOW`` by an affine layer in
front of it, inside the wrapper both attack backends use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras

from ..errors import RobustnessUsageError

UNIT_RANGE = (0.0, 1.0)


class InputRange(keras.layers.Layer):
    """[0, 1] pixels -> the model's own input range [low, high]."""

    def __init__(self, low: float, high: float, **kwargs):
        super().__init__(**kwargs)
        self.low, self.high = float(low), float(high)

    def call(self, inputs):
        return inputs * (self.high - self.low) + self.low

    def get_config(self):
        return {**super().get_config(), "low": self.low, "high": self.high}


class DenseLogits(keras.layers.Layer):
    """A ``Dense`` layer without its activation, on the very same weights (trained together)."""

    def __init__(self, dense, **kwargs):
        super().__init__(**kwargs)
        self.dense = dense

    def call(self, inputs):
        out = keras.ops.matmul(inputs, self.dense.kernel)
        return out + self.dense.bias if self.dense.use_bias else out


class LogProbabilities(keras.layers.Layer):
    """Logits of a model whose softmax is out of reach: ``log(p)`` (softmax(log p) == p)."""

    def call(self, inputs):
        return keras.ops.log(keras.ops.clip(inputs, 1e-12, 1.0))


def _is_softmax(activation) -> bool:
    return activation is not None and getattr(activation, "__name__", "") == "softmax"


def final_softmax(model) -> Any:
    """The layer whose softmax ends ``model`` (a ``Softmax`` layer, ``Activation("softmax")`` or a layer with
    ``activation="softmax"``), or None."""
    layers = getattr(model, "layers", None)
    if not layers:
        return None
    last = layers[-1]
    if isinstance(last, keras.layers.Softmax) or _is_softmax(getattr(last, "activation", None)):
        return last
    if isinstance(last, keras.Model):  # e.g. Sequential([Rescaling(1 / 255), the_trained_model])
        return final_softmax(last)
    return None


def output_kind(model, declared: str = "auto") -> str:
    """``logits`` or ``probabilities``: declared, else detected from a final softmax."""
    if declared != "auto":
        return declared
    return "probabilities" if final_softmax(model) is not None else "logits"


def _peeled(model):
    """The logits tensor before ``model``'s final softmax, or None when it cannot be reached (a softmax inside a
    nested model, a layer type we do not know how to cut)."""
    last = final_softmax(model)
    if last is None or last is not model.layers[-1]:
        return None
    try:
        before = last.input
    except (AttributeError, ValueError):
        return None
    if isinstance(last, (keras.layers.Softmax, keras.layers.Activation)):
        return before
    if isinstance(last, keras.layers.Dense):
        return DenseLogits(last, name="logits")(before)
    return None


@dataclass(frozen=True)
class Adapted:
    """The wrapper attacks use (logits, [0, 1] inputs) and how the user's model was read."""

    model: Any
    output: str  # what the user's model outputs: logits or probabilities
    peeled: bool  # a final softmax was cut off (exact logits); False with log(p) as logits
    input_range: tuple[float, float]


def adapt(model, declared_output: str = "auto", input_range: tuple[float, float] = UNIT_RANGE) -> Adapted:
    """Wrap ``model`` as a logits model on [0, 1] inputs (the model itself when nothing is to adapt)."""
    kind = output_kind(model, declared_output)
    if declared_output == "logits" and final_softmax(model) is not None:
        raise RobustnessUsageError(f"--model-output logits: the model ends in a softmax "
                                   f"({final_softmax(model).name}); use --model-output probabilities or auto")
    core, peeled = model, False
    if kind == "probabilities":
        tensor = _peeled(model)
        if tensor is not None:
            try:
                core, peeled = keras.Model(model.inputs, tensor, name=f"{model.name}_logits"), True
            except (ValueError, TypeError, AttributeError):  # a graph Keras cannot cut there
                core, peeled = model, False
    low, high = map(float, input_range)
    if kind == "logits" and (low, high) == UNIT_RANGE:
        return Adapted(model, kind, False, (low, high))
    inputs = keras.Input(tuple(model.input_shape[1:]))
    x = InputRange(low, high, name="input_range")(inputs) if (low, high) != UNIT_RANGE else inputs
    outputs = core(x)
    if kind == "probabilities" and not peeled:
        outputs = LogProbabilities(name="log_probabilities")(outputs)
    return Adapted(keras.Model(inputs, outputs, name="robustness_logits"), kind, peeled, (low, high))
