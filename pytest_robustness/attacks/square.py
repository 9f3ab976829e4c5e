"""Square Attack: query-based black box, random square updates accepted when they lower the margin (ART's class).

It uses only the model's predictions, never its gradients, so gradient masking
(a defense that only breaks gradients) cannot fool it: a defense that holds
against FGM/PGD but not against Square is masking, not robust.
"""

from __future__ import annotations

from ..params import choice, numeric
from .define import art_attack, define_attack

PARAMS = {
    "norm": choice("inf", ("inf", "2"), id_format=lambda v: f"l{v}", doc="norm of the perturbation"),
    "eps": numeric(0.3, 0, low_open=True, id_prefix="eps", doc="maximum perturbation"),
    "max_iter": numeric(100, 1, integer=True, id_prefix="iter", doc="query iterations"),
    "p_init": numeric(0.8, 0, 1, low_open=True, doc="initial fraction of pixels in a square"),
    "nb_restarts": numeric(1, 1, integer=True, doc="restarts"),
    "batch_size": numeric(128, 1, integer=True, doc="samples per query batch"),
}

SQUARE = define_attack("square", PARAMS, art_attack("art.attacks.evasion.SquareAttack", PARAMS, verbose=False),
                       doc="ART SquareAttack; untargeted, query-based black box")
