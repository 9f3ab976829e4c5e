"""What a model slot is: which registered model a cell crafts on or judges with, and behind which defense."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

# Not a training recipe: the slot of the --baseline-uri model, so the baseline shares every memo and cache.
BASELINE = "@baseline"


@dataclass(frozen=True)
class ModelSlot:
    """A model as a cell crafts on or judges with it: the registered model of (``architecture``,
    ``recipe``) (``recipe`` "" for plain training, a training defense's recipe, or ``BASELINE``),
    behind the defense named by ``defense_key`` ("" for none).

    A defended slot brings its ``classifier`` (the ART classifier with the defense, BPDA and EoT) and,
    where the defense has a TensorFlow form, ``attack_model`` (builds the model behind it, which the
    compiled kernels attack). Equality is the identity (architecture, recipe, defense key).
    """

    architecture: str
    recipe: str = ""
    defense_key: str = ""
    classifier: Any = field(default=None, compare=False, repr=False)
    attack_model: Callable[[], Any] | None = field(default=None, compare=False, repr=False)
