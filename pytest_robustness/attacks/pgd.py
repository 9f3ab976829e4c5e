"""Projected Gradient Descent (Madry et al.), L-inf and L2: iterated FGM steps projected onto the eps ball.

``art`` is ART's ``ProjectedGradientDescent`` (the reference); ``compiled`` runs
the same arithmetic as one batched ``tf.function`` per batch
(:func:`pytest_robustness.attacks.compiled.pgd.pgd`). ``num_random_init`` > 0 starts
each restart at a random point of the ball; later restarts keep only the samples
they flip (ART's rule). The compiled random starts come from TensorFlow's stateless
RNG seeded with the session seed, not numpy's: equal in distribution, not in draws.
"""

from __future__ import annotations

from ..params import Param, choice, numeric
from .base import norm_value
from .define import define_attack

NORMS = ("inf", "2")

PARAMS = {
    "norm": choice("inf", NORMS, id_format=lambda v: f"l{v}", doc="norm of the perturbation"),
    "eps": numeric(0.3, 0, low_open=True, id_prefix="eps", doc="maximum perturbation"),
    "eps_step": numeric(0.1, 0, low_open=True, doc="step per iteration"),
    "max_iter": numeric(10, 1, integer=True, id_prefix="iter", doc="iterations per restart"),
    "num_random_init": Param(0, "an integer >= 0", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                             lambda v: f"restarts{v}" if v else "", doc="random restarts (0: start at the image)"),
    "batch_size": numeric(32, 1, integer=True, doc="samples per gradient batch"),
}


def art_pgd(classifier, model, x, params):
    from art.attacks.evasion import ProjectedGradientDescent

    attack = ProjectedGradientDescent(
        classifier, norm=norm_value(params["norm"]), eps=params["eps"], eps_step=params["eps_step"],
        max_iter=params["max_iter"], num_random_init=params["num_random_init"], batch_size=params["batch_size"],
        verbose=False,
    )
    return attack.generate(x=x)


def compiled_pgd(classifier, model, x, params, seed):
    from .compiled.pgd import pgd as pgd_kernel

    return pgd_kernel(model, x, eps=params["eps"], eps_step=params["eps_step"], max_iter=params["max_iter"],
                          norm=params["norm"], batch_size=params["batch_size"], clip_values=classifier.clip_values,
                          num_random_init=params["num_random_init"], seed=seed % (2**31))


PGD = define_attack("pgd", PARAMS, art_pgd, compiled=compiled_pgd,
                    doc="ART ProjectedGradientDescent; untargeted, labels from the model's own predictions", per_image=True)
