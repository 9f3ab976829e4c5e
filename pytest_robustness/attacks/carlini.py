"""Carlini-Wagner L2: an optimisation attack for the smallest L2 perturbation that flips the label (ART's class).

Untargeted; ``binary_search_steps`` searches the trade-off constant, each with
``max_iter`` optimisation steps. Slow on CPU: suites keep the budget small.
"""

from __future__ import annotations

from ..params import numeric
from .define import art_attack, define_attack

PARAMS = {
    "confidence": numeric(0.0, 0, id_prefix="conf", doc="margin the adversarial class must win by"),
    "learning_rate": numeric(0.01, 0, low_open=True, doc="step size of the optimisation"),
    "binary_search_steps": numeric(10, 1, integer=True, id_prefix="search", doc="searches of the constant c"),
    "max_iter": numeric(10, 1, integer=True, id_prefix="iter", doc="optimisation steps per search"),
    "initial_const": numeric(0.01, 0, low_open=True, doc="first value of the constant c"),
    "batch_size": numeric(32, 1, integer=True, doc="samples per batch"),
}

CARLINI_L2 = define_attack(
    "cw_l2", PARAMS, art_attack("art.attacks.evasion.CarliniL2Method", PARAMS, targeted=False, verbose=False),
    doc="ART CarliniL2Method; untargeted minimal-L2 optimisation attack", per_image=True)
