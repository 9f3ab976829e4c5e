"""Hypothesis strategies that draw transforms of an image batch (``transforms``), for property cells.

Each strategy draws one frozen :class:`~pytest_robustness.transforms.transform.Transform` from a parameter
range that contains the identity, and its magnitudes are drawn so that Hypothesis shrinks them
toward it (floats and integers shrink toward 0): a failing property is reported at the mildest
transform that still fails. Strategies compose::

    rotation(30) & shift(3)      # both, in that order: "rotation 7.5 deg, shift (2, -1)"
    brightness(0.3) | blur(1.5)  # one of them (shrinks toward the left one)

Use them with ``@given`` and the ``robustness`` fixture::

    @given(t=strategies.rotation(30) & strategies.shift(3))
    def test_rotation(robustness, t):
        robustness.invariant(t, 0.8)
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from .transforms.corruptions import CORRUPTIONS
from .transforms.transform import (
    Brightness,
    Contrast,
    Corruption,
    GaussianBlur,
    GaussianNoise,
    Occlusion,
    Rotation,
    Scale,
    Shift,
    Transform,
)

STEPS = 100  # magnitudes are drawn in hundredths (of a degree, a pixel, a factor, a sigma)

__all__ = ["CORRUPTIONS", "TransformStrategy", "blur", "brightness", "contrast", "corruption", "noise", "occlusion",
           "rotation", "scale", "shift"]


class TransformStrategy(SearchStrategy):
    """A strategy of transforms with ``&`` (apply both) and ``|`` (draw one of them).

    Hypothesis asks users not to subclass ``SearchStrategy``; this is the thinnest wrapper that
    gives ``@given`` a strategy and the suites an operator: it draws from the wrapped strategy
    and adds nothing to the search.
    """

    def __init__(self, inner: SearchStrategy, label: str):
        super().__init__()
        self.inner = inner
        self.label_text = label

    def do_draw(self, data) -> Transform:
        return data.draw(self.inner)

    def do_validate(self) -> None:
        self.inner.validate()

    def calc_is_empty(self, recur) -> bool:
        return False

    def __repr__(self) -> str:
        return self.label_text

    def __and__(self, other: "TransformStrategy") -> "TransformStrategy":
        _check(other, "&")
        both = st.tuples(self.inner, other.inner).map(lambda pair: pair[0] & pair[1])
        return TransformStrategy(both, f"{self} & {other}")

    def __or__(self, other: "TransformStrategy") -> "TransformStrategy":
        _check(other, "|")
        return TransformStrategy(st.one_of(self.inner, other.inner), f"({self} | {other})")


def _check(other, op: str) -> None:
    if not isinstance(other, TransformStrategy):
        raise TypeError(f"{op} combines transform strategies (pytest_robustness.strategies), not {other!r}")


def _magnitude(limit: float, name: str, signed: bool = True) -> SearchStrategy:
    """A number in [-limit, limit] (or [0, limit]) in steps of 1/100, drawn as an integer count of steps:
    Hypothesis shrinks integers by magnitude, so a failure shrinks to the smallest failing value (to
    1/100), where floats would shrink to the "simplest" one (an integer before a nearer fraction)."""
    if not limit >= 0:
        raise ValueError(f"{name}: the range must be a number >= 0, got {limit!r}")
    steps = int(round(float(limit) * STEPS))
    return st.integers(-steps if signed else 0, steps).map(lambda k: k / STEPS)


def _pixels(limit: int, name: str) -> SearchStrategy:
    if not isinstance(limit, int) or limit < 0:
        raise ValueError(f"{name}: the range must be an integer >= 0, got {limit!r}")
    return st.integers(-limit, limit)


def rotation(max_degrees: float = 30.0) -> TransformStrategy:
    """Rotation by up to ``max_degrees`` either way (scipy's ``rotate``, as ART's SpatialTransformation)."""
    return TransformStrategy(_magnitude(max_degrees, "rotation").map(Rotation), f"rotation({max_degrees:g})")


def shift(max_pixels: int = 3) -> TransformStrategy:
    """Translation by up to ``max_pixels`` down/up and right/left, zero fill (scipy's ``shift``, as ART's)."""
    pixels = _pixels(max_pixels, "shift")
    return TransformStrategy(st.builds(Shift, pixels, pixels), f"shift({max_pixels})")


def scale(max_change: float = 0.2) -> TransformStrategy:
    """Zoom about the centre by a factor in [1 - max_change, 1 + max_change] (bilinear, zero fill)."""
    if not 0 <= max_change < 1:
        raise ValueError(f"scale: max_change must be in [0, 1), got {max_change!r}")
    return TransformStrategy(_magnitude(max_change, "scale").map(lambda d: Scale(round(1 + d, 2))),
                             f"scale({max_change:g})")


def brightness(max_delta: float = 0.3) -> TransformStrategy:
    """Add a constant in [-max_delta, max_delta] to every pixel, then clip to [0, 1]."""
    return TransformStrategy(_magnitude(max_delta, "brightness").map(Brightness), f"brightness({max_delta:g})")


def contrast(max_change: float = 0.5) -> TransformStrategy:
    """Scale each image's deviation from its mean by a factor in [1 - max_change, 1 + max_change]."""
    if not 0 <= max_change <= 1:
        raise ValueError(f"contrast: max_change must be in [0, 1], got {max_change!r}")
    return TransformStrategy(_magnitude(max_change, "contrast").map(lambda d: Contrast(round(1 + d, 2))),
                             f"contrast({max_change:g})")


def blur(max_sigma: float = 1.5) -> TransformStrategy:
    """Gaussian blur with a standard deviation in [0, max_sigma] pixels (scipy's ``gaussian_filter``)."""
    return TransformStrategy(_magnitude(max_sigma, "blur", signed=False).map(GaussianBlur), f"blur({max_sigma:g})")


def noise(max_sigma: float = 0.3, seed: int = 0) -> TransformStrategy:
    """Additive Gaussian noise with a standard deviation in [0, max_sigma]; the noise itself is fixed
    by ``seed`` (numpy's ``default_rng``), so the search is over its strength alone."""
    return TransformStrategy(_magnitude(max_sigma, "noise", signed=False).map(lambda s: GaussianNoise(s, seed)),
                             f"noise({max_sigma:g})")


def occlusion(max_size: int = 8, image_size: int = 28, value: float = 0.0) -> TransformStrategy:
    """A square of ``value`` with a side of 0 to ``max_size`` pixels, its corner anywhere in an image of
    ``image_size`` pixels (moved inside where it would stick out)."""
    if not isinstance(max_size, int) or max_size < 0:
        raise ValueError(f"occlusion: max_size must be an integer >= 0, got {max_size!r}")
    where = st.integers(0, max(image_size - 1, 0))
    return TransformStrategy(st.builds(Occlusion, st.integers(0, max_size), where, where, st.just(value)),
                             f"occlusion({max_size})")


def corruption(names=CORRUPTIONS, max_severity: int = 5, min_severity: int = 1, seed: int = 0) -> TransformStrategy:
    """One of Hendrycks & Dietterich's corruptions (``corruptions``) at a severity in
    [min_severity, max_severity]; shrinks toward the first name and the lowest severity."""
    names = (names,) if isinstance(names, str) else tuple(names)
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown or not names:
        raise ValueError(f"corruption: unknown name(s) {', '.join(unknown) or '(none given)'}; "
                         f"expected some of {', '.join(CORRUPTIONS)}")
    if not 0 <= min_severity <= max_severity <= 5:
        raise ValueError(f"corruption: severities {min_severity}..{max_severity}: expected 0 <= min <= max <= 5")
    drawn = st.builds(lambda n, s: Corruption(n, s, seed), st.sampled_from(names),
                      st.integers(min_severity, max_severity))
    return TransformStrategy(drawn, f"corruption({', '.join(names)})")
