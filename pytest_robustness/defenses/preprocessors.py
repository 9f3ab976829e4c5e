"""Dioptra's preprocessing defenses, through ART: spatial smoothing, JPEG compression, Gaussian noise,
each with its TensorFlow form for compiled adaptive attacks (``compiled.preprocessors``)."""

from __future__ import annotations

import functools

from ..models.classifiers import CLIP_VALUES
from ..params import flag, numeric
from .defense import APPLY, Defense


def _spatial_smoothing(p):
    from art.defences.preprocessor import SpatialSmoothing

    return SpatialSmoothing(window_size=p["window_size"], channels_first=False, clip_values=CLIP_VALUES,
                            apply_fit=p["apply_fit"], apply_predict=p["apply_predict"])


def _compiled_spatial_smoothing(p):
    """``SpatialSmoothing`` as a TensorFlow median filter: exact for odd windows (a median picks one input)."""
    if not p["apply_predict"] or p["window_size"] % 2 == 0:
        return None

    def build():
        from .compiled.preprocessors import median_filter

        return functools.partial(median_filter, window=p["window_size"], clip=CLIP_VALUES)

    return build


def _jpeg_compression(p):
    from art.defences.preprocessor import JpegCompression

    return JpegCompression(clip_values=CLIP_VALUES, quality=p["quality"], channels_first=p["channels_first"],
                           apply_fit=p["apply_fit"], apply_predict=p["apply_predict"], verbose=False)


def _compiled_jpeg_compression(p):
    """ART's own JPEG encoder, on the host inside the compiled kernel: bit-exact with the oblivious cells."""
    if not p["apply_predict"] or p["channels_first"]:
        return None

    def build():
        from .compiled.preprocessors import host_defense

        encoder = _jpeg_compression(p)
        return lambda x: host_defense(x, lambda batch: encoder(batch)[0])

    return build


def _compiled_gaussian_augmentation(p):
    """Gaussian noise from a seeded TensorFlow generator, its gradients averaged over ``eot_samples`` draws
    (the same expectation as ART's, other random numbers: equal in distribution, not elementwise)."""
    if not p["apply_predict"]:
        return None

    def build():
        from .compiled.preprocessors import GaussianNoise

        return GaussianNoise(p["sigma"], CLIP_VALUES, p["eot_samples"])

    return build


def _gaussian_augmentation(p):
    from art.defences.preprocessor import GaussianAugmentation

    return GaussianAugmentation(sigma=p["sigma"], augmentation=p["augmentation"], ratio=p["ratio"],
                                clip_values=CLIP_VALUES, apply_fit=p["apply_fit"], apply_predict=p["apply_predict"])


def _channels_last(p) -> str | None:
    if p["channels_first"]:
        return "channels_first=True is invalid: images here are channels-last (NHWC); expected false"
    return None


def _augmentation_only_on_fit(p) -> str | None:
    # Augmenting adds samples: it can only happen on fit (ART refuses it on predict).
    if p["augmentation"] and p["apply_predict"]:
        return "augmentation=True needs apply_predict=False (augmenting adds samples, only possible on fit)"
    if p["augmentation"] and not p["apply_fit"]:
        return "augmentation=True needs apply_fit=True"
    return None


PREPROCESSING_DEFENSES = (
    Defense("spatial_smoothing", {
        "window_size": numeric(3, 1, integer=True, id_prefix="window", doc="median filter window (pixels)"),
        **APPLY,
    }, preprocessor=_spatial_smoothing, compiled=_compiled_spatial_smoothing,
    doc="ART SpatialSmoothing: local median filter"),
    Defense("jpeg_compression", {
        "quality": numeric(50, 1, 100, integer=True, id_prefix="q", doc="JPEG quality, 1 (worst) to 100 (best)"),
        "channels_first": flag(False, doc="Dioptra's parameter; images here are channels-last"),
        **APPLY,
    }, preprocessor=_jpeg_compression, compiled=_compiled_jpeg_compression, constraints=(_channels_last,),
    doc="ART JpegCompression"),
    Defense("gaussian_augmentation", {
        # Dioptra's default sigma is 1, which on [0, 1] images is noise larger than
        # the signal; 0.1 is a perceptible but digit-preserving noise level here.
        "sigma": numeric(0.1, 0, low_open=True, id_prefix="sigma", doc="standard deviation of the noise"),
        "ratio": numeric(1.0, 0, low_open=True, doc="with augmentation: noisy copies added per sample"),
        "augmentation": flag(False, doc="add noisy copies instead of replacing (fit only)"),
        # Randomised at prediction: adaptive gradients average this many draws (Expectation over
        # Transformation) and defended accuracy is the mean of this many prediction draws.
        "eot_samples": numeric(8, 1, integer=True, id_prefix="eot", doc="noise draws per gradient and accuracy"),
        **APPLY,
    }, preprocessor=_gaussian_augmentation, compiled=_compiled_gaussian_augmentation,
    constraints=(_augmentation_only_on_fit,),
    doc="ART GaussianAugmentation: Gaussian noise on the inputs"),
)
