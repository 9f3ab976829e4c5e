"""The compiled attack kernels, one module an attack: ``fgm_kernel``, ``pgd_kernel``, ``apgd_kernel``, ``patch_kernel``
(what they share is in ``kernels``). Each reproduces the arithmetic of the ART 1.20.1 reference on a
logits model with ``CategoricalCrossentropy(from_logits=True)``; this module names them together for
benchmarks and equivalence tests."""

from __future__ import annotations

from .apgd_kernel import apgd
from .fgm_kernel import fgm
from .kernels import KERNELS
from .patch_kernel import apply_patch, generate_patch
from .pgd_kernel import pgd

__all__ = ["KERNELS", "apgd", "apply_patch", "fgm", "generate_patch", "pgd"]
