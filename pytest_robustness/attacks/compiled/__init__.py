"""The compiled attack kernels, one module an attack: ``fgm_kernel``, ``pgd_kernel``, ``patch_kernel``
(what they share is in ``kernels``). Each reproduces the arithmetic of the ART 1.20.1 reference on a
logits model with ``CategoricalCrossentropy(from_logits=True)``; this module names them together for
benchmarks and equivalence tests."""

from __future__ import annotations

from .fgm import fgm
from .kernels import KERNELS
from .patch import apply_patch, generate_patch
from .pgd import pgd

__all__ = ["KERNELS", "apply_patch", "fgm", "generate_patch", "pgd"]
