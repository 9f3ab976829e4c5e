"""Compiled attack kernels, one module an attack (``fgm``, ``pgd``, ``patch``, ``deepfool``; what they share
is in ``kernels``). Each reproduces the arithmetic of the ART 1.20.1 reference on a logits model with
``CategoricalCrossentropy(from_logits=True)`` inside one ``tf.function`` per batch. This package names the
kernel functions together for benchmarks and equivalence tests: ``compiled.fgm`` is the function; import
``compiled.fgm``'s module as ``from .compiled.fgm import ...``."""

from __future__ import annotations

from .fgm import fgm
from .kernels import KERNELS
from .patch import apply_patch, generate_patch
from .pgd import pgd

__all__ = ["KERNELS", "apply_patch", "fgm", "generate_patch", "pgd"]
