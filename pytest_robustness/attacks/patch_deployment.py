"""Putting generated patches onto images, as Dioptra's ``deploy_patch`` entry point does.

Pure numpy/scipy and seeded, so its semantics are testable without a model:

- ``patch_application_rate`` r: exactly ``round(r * n)`` of the n images get a patch
  (chosen by a seeded permutation);
- ``corrupt``: those patched images replace their originals (n images out);
  ``augment``: they are added after the untouched originals (n + round(r * n) out);
- every patch is ART's circular patch, resized to ``patch_scale`` of the image's
  smaller edge, rotated uniformly within +-``rotation_max`` degrees and placed
  uniformly where its (unrotated) square fits, like ART's ``apply_patch`` with an
  explicit scale. That explicit scale is what Dioptra's ``deploy_patch`` passes,
  so ``scale_min``/``scale_max`` act during generation only;
- pixels stay in [0, 1] (a convex blend of image and patch, clipped).

With several patches, each patched image gets one of them, drawn uniformly.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from ..errors import RobustnessUsageError
from ..params import choice, numeric
from .base import Deployed

METHODS = ("augment", "corrupt")
MASK_SHARPNESS = 40  # ART's circular patch mask

DEPLOY_PARAMS = {  # in test-id order: test_patch[le_net-scale0.3-corrupt-rate0.5]
    "patch_scale": numeric(0.4, 0, 1, low_open=True, id_prefix="scale",
                           doc="patch size relative to the image's smaller edge (1.0 covers it)"),
    "patch_deployment_method": choice("augment", METHODS, id_format=str,
                                      doc="corrupt: patched images replace originals; augment: added beside them"),
    "patch_application_rate": numeric(1.0, 0, 1, id_prefix="rate", doc="fraction of the images that get a patch"),
}


def circular_mask(size: int, sharpness: int = MASK_SHARPNESS) -> np.ndarray:
    """ART's soft circular mask over a square patch: 1 inside, 0 in the corners."""
    axis = np.linspace(-1, 1, size)
    xx, yy = np.meshgrid(axis, axis, sparse=True)
    return (1 - np.clip((xx**2 + yy**2) ** sharpness, -1, 1)).astype(np.float32)


def paste(image: np.ndarray, patch: np.ndarray, scale: float, angle_deg: float, center: tuple[float, float]) -> np.ndarray:
    """``image`` (H, W, C) with ``patch`` (h, h, c) pasted, scaled to ``scale`` of the smaller
    edge, rotated by ``angle_deg`` about ``center`` (row, col in pixels); bilinear, in [0, 1]."""
    from scipy.ndimage import map_coordinates

    height, width, channels = image.shape
    side = patch.shape[0]
    size = scale * min(height, width)  # the patch's side in image pixels
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = rows + 0.5 - center[0], cols + 0.5 - center[1]
    phi = math.radians(angle_deg)
    # Inverse map: image pixel -> patch coordinates (rotate back, then scale to the patch's grid).
    pu = (math.cos(phi) * u + math.sin(phi) * v) * side / size + side / 2 - 0.5
    pv = (-math.sin(phi) * u + math.cos(phi) * v) * side / size + side / 2 - 0.5
    coords = np.stack([pu, pv])
    mask = map_coordinates(circular_mask(side), coords, order=1, mode="constant", cval=0.0)[..., None]
    layers = [map_coordinates(patch[..., c].astype(np.float64), coords, order=1, mode="constant", cval=0.0)
              for c in range(patch.shape[-1])]
    pasted = np.stack(layers, axis=-1)
    if pasted.shape[-1] != channels:  # a grey patch on colour images
        pasted = np.broadcast_to(pasted, (height, width, channels))
    out = image * (1 - mask) + pasted * mask
    return np.clip(out, 0.0, 1.0).astype(image.dtype)


def placements(n: int, n_patches: int, params: Mapping[str, Any], seed: int, image_size) -> tuple[np.ndarray, list]:
    """Which of ``n`` images get a patch, and for each (in order) which patch, its angle and centre:
    every seeded draw of a deployment, whatever the patches show (a control patch lands where the
    adversarial one did)."""
    rng = np.random.default_rng(seed)
    count = int(math.floor(params["patch_application_rate"] * n + 0.5))
    chosen = np.sort(rng.permutation(n)[:count])
    rotation_max = float(params.get("rotation_max", 0.0))
    height, width = image_size
    size = float(params["patch_scale"]) * min(height, width)
    draws = []
    for _ in chosen:
        which = int(rng.integers(n_patches))
        angle = float(rng.uniform(-rotation_max, rotation_max))
        center = (float(rng.uniform(size / 2, height - size / 2)), float(rng.uniform(size / 2, width - size / 2)))
        draws.append((which, angle, center))
    return chosen, draws


def deploy_patches(patches: np.ndarray, x: np.ndarray, params: Mapping[str, Any], seed: int) -> Deployed:
    """Deploy ``patches`` (k, h, h, c) onto ``x`` (n, H, W, C) per Dioptra's deploy_patch parameters."""
    patches = np.asarray(patches, dtype=np.float32)
    if patches.ndim == 3:
        patches = patches[None]
    if patches.shape[-1] not in (1, x.shape[-1]):
        raise RobustnessUsageError(f"patch deployment: patches with {patches.shape[-1]} channels cannot go on "
                                   f"{x.shape[-1]}-channel images; expected 1 or {x.shape[-1]} channels")
    rng = np.random.default_rng(seed)
    n = len(x)
    scale = float(params["patch_scale"])
    chosen, draws = placements(n, len(patches), params, seed, x.shape[1:3])
    count = len(chosen)
    corrupt = params["patch_deployment_method"] == "corrupt"
    # The deployed set is written in place: no intermediate copy of the patched images.
    out = np.empty((n if corrupt else n + count, *x.shape[1:]), dtype=x.dtype)
    out[:n] = x
    for j, (i, (which, angle, center)) in enumerate(zip(chosen, draws)):
        out[i if corrupt else n + j] = paste(x[i], patches[which], scale, angle, center)
    if corrupt:
        modified = np.zeros(n, dtype=bool)
        modified[chosen] = True
        return Deployed(out, np.arange(n), modified)
    return Deployed(out, np.concatenate([np.arange(n), chosen]),
                    np.concatenate([np.zeros(n, dtype=bool), np.ones(count, dtype=bool)]))
