"""DeepFool: the closest decision boundary of a local linearisation, stepped over by ``epsilon`` (ART's class).

A minimal-perturbation attack: it keeps going until the label flips, so its
adversarial accuracy is near zero and its strength is read from the distances
(``l_2_norm``): the smaller, the less robust the model. ``--attack-backend compiled`` runs
``compiled.deepfool`` (ART's arithmetic, the loop inside one ``tf.function``; ``art`` is ART's class).
"""

from __future__ import annotations

from ..params import numeric
from .define import art_attack, define_attack

PARAMS = {
    "max_iter": numeric(100, 1, integer=True, id_prefix="iter", doc="maximum linearisation steps"),
    # ART's default 1e-6 stops on the boundary, where rounding often keeps the label;
    # 0.02 is the overshoot of the DeepFool paper.
    "epsilon": numeric(0.02, 0, doc="overshoot past the boundary"),
    "nb_grads": numeric(10, 1, integer=True, id_prefix="grads", doc="classes (most likely first) considered"),
    "batch_size": numeric(32, 1, integer=True, doc="samples per batch"),
}



def compiled_deepfool(classifier, model, x, params):
    from .compiled import deepfool as deepfool_kernel

    return deepfool_kernel.deepfool(model, x, max_iter=params["max_iter"], epsilon=params["epsilon"],
                                    nb_grads=params["nb_grads"], batch_size=params["batch_size"],
                                    clip_values=classifier.clip_values)


DEEPFOOL = define_attack("deepfool", PARAMS, art_attack("art.attacks.evasion.DeepFool", PARAMS, verbose=False),
                         compiled=compiled_deepfool, versions={"art": 1, "compiled": 1},
                         doc="ART DeepFool; untargeted minimal perturbation", per_image=True)
