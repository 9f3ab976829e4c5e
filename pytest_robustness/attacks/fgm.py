"""Fast Gradient Method, with Dioptra's parameters (eps, eps_step, minimal, norm, batch_size)."""

from __future__ import annotations

from ..params import choice, flag, numeric
from .base import norm_value
from .define import define_attack

NORMS = ("inf", "1", "2")

PARAMS = {
    "norm": choice("inf", NORMS, id_format=lambda v: f"l{v}", doc="norm of the perturbation"),
    "eps": numeric(0.3, 0, low_open=True, id_prefix="eps", doc="attack step size (maximum perturbation)"),
    "eps_step": numeric(0.1, 0, low_open=True, doc="step of the minimal-perturbation search"),
    "minimal": flag(False, on_id="minimal", off_id="", doc="search the smallest eps that fools the model"),
    "batch_size": numeric(32, 1, integer=True, doc="samples per gradient batch"),
}


def art_fgm(classifier, model, x, params):
    from art.attacks.evasion import FastGradientMethod

    attack = FastGradientMethod(
        classifier, norm=norm_value(params["norm"]), eps=params["eps"], eps_step=params["eps_step"],
        minimal=params["minimal"], batch_size=params["batch_size"],
    )
    return attack.generate(x=x)


def compiled_fgm(classifier, model, x, params):
    from .compiled.fgm import fgm as fgm_kernel

    return fgm_kernel(
        model, x, eps=params["eps"], eps_step=params["eps_step"], norm=params["norm"],
        minimal=params["minimal"], batch_size=params["batch_size"], clip_values=classifier.clip_values,
    )


FGM = define_attack("fgm", PARAMS, art_fgm, compiled=compiled_fgm,
                    doc="ART FastGradientMethod; untargeted, labels from the model's own predictions",
                    versions={"art": 1, "compiled": 1}, per_image=True)  # bump with a change to what a backend produces
