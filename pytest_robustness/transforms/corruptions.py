"""The 15 common corruptions of Hendrycks & Dietterich (ICLR 2019, "ImageNet-C"), severities 1-5.

The maintained package (``imagecorruptions``) needs OpenCV, scikit-image and ImageMagick and targets
224-pixel images; none of them is a dependency here. These are the paper's definitions with the
constants of its small-image set, CIFAR-10-C (Hendrycks' ``make_cifar_c.py``, 32 x 32 pixels: the
scale of MNIST's 28 x 28), written with numpy, scipy and Pillow for NHWC float batches in [0, 1],
grayscale or RGB. Image-size constants (32) scale to the image's side. Exact but for:

- ``motion_blur`` and ``snow``'s streaks: ImageMagick's motion blur becomes a one-sided line kernel of
  Gaussian weights (``imagecorruptions``' own numpy replacement), edge pixels repeated;
- ``frost``: the paper overlays photographs of frost, which are not shipped; a plasma-fractal ice
  texture with sharpened crystals takes their place, blended with the paper's weights;
- ``defocus_blur``'s anti-aliasing of the disk (OpenCV's 3x3 Gaussian) is scipy's Gaussian filter;
- random draws come from ``numpy.random.default_rng(seed)``, so a corruption is a pure function.
"""

from __future__ import annotations

import io
import math

import numpy as np

CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
               "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
               "jpeg_compression")
APPROXIMATED = ("motion_blur", "snow", "frost", "defocus_blur")


def corrupt(x: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """``name`` at ``severity`` (1-5; 0 is no change) on an NHWC float batch in [0, 1]."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; expected one of {', '.join(CORRUPTIONS)}")
    x = np.asarray(x, dtype=np.float32)
    if severity == 0:
        return np.array(x)
    if not 1 <= severity <= 5:
        raise ValueError(f"corruption severity {severity}: expected 0 (none) to 5")
    out = _FUNCTIONS[name](x, severity - 1, np.random.default_rng(seed))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _ndimage():
    import scipy.ndimage

    return scipy.ndimage


def _side(x) -> int:
    return min(x.shape[1:3])


def _gaussian(x, sigma):
    """skimage.filters.gaussian over height and width (nearest edges, truncate 4)."""
    return _ndimage().gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="nearest")


def gaussian_noise(x, s, rng):
    c = [0.04, 0.06, .08, .09, .10][s]
    return x + rng.normal(size=x.shape, scale=c)


def shot_noise(x, s, rng):
    c = [500, 250, 100, 75, 50][s]
    return rng.poisson(x * c) / c


def impulse_noise(x, s, rng):
    """skimage's ``random_noise(mode='s&p', amount=c)``: a fraction c of the values, half salt, half pepper."""
    c = [.01, .02, .03, .05, .07][s]
    out = np.array(x)
    hit = rng.random(x.shape) < c
    salt = rng.random(x.shape) < 0.5
    out[hit & salt], out[hit & ~salt] = 1.0, 0.0
    return out


def _disk(radius, alias_blur):
    size = 8 if radius <= 8 else radius
    span = np.arange(-size, size + 1)
    xx, yy = np.meshgrid(span, span)
    disk = ((xx ** 2 + yy ** 2) <= radius ** 2).astype(np.float32)
    disk /= disk.sum()
    return _ndimage().gaussian_filter(disk, sigma=alias_blur, truncate=1.0 / max(alias_blur, 1e-6))


def defocus_blur(x, s, rng):
    radius, alias = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][s]
    kernel = _disk(radius, alias)
    return _ndimage().convolve(x, kernel[None, :, :, None], mode="mirror")


def glass_blur(x, s, rng):
    sigma, delta, iterations = [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)][s]
    out = (_gaussian(x, sigma) * 255).astype(np.uint8)  # the paper quantises between the two blurs
    n, h, w = x.shape[:3]
    images = np.arange(n)
    for _ in range(iterations):
        for row in range(h - delta, delta, -1):
            for col in range(w - delta, delta, -1):
                d = rng.integers(-delta, delta, size=(2, n))
                other_row, other_col = row + d[1], col + d[0]
                here = out[:, row, col].copy()
                out[:, row, col] = out[images, other_row, other_col]
                out[images, other_row, other_col] = here
    return _gaussian(out / 255.0, sigma)


def _shifted(image, dx, dy):
    """An HWC image moved by (dx, dy) with its edge pixels repeated."""
    h, w = image.shape[:2]
    rows = np.clip(np.arange(h) - dy, 0, h - 1)
    cols = np.clip(np.arange(w) - dx, 0, w - 1)
    return image[rows][:, cols]


def _motion_blur(image, radius, sigma, angle):
    width = radius * 2 + 1
    kernel = np.exp(-np.arange(width) ** 2 / (2 * sigma ** 2))
    kernel /= kernel.sum()
    point = (width * math.sin(math.radians(angle)), width * math.cos(math.radians(angle)))
    hypot = math.hypot(*point)
    blurred = np.zeros_like(image, dtype=np.float32)
    for i in range(width):
        dy, dx = -math.ceil(i * point[0] / hypot - 0.5), -math.ceil(i * point[1] / hypot - 0.5)
        if abs(dy) >= image.shape[0] or abs(dx) >= image.shape[1]:
            break
        blurred += kernel[i] * _shifted(image, dx, dy)
    return blurred


def motion_blur(x, s, rng):
    radius, sigma = [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)][s]
    return np.stack([_motion_blur(image, radius, sigma, rng.uniform(-45, 45)) for image in x])


def _clipped_zoom(x, factor):
    """Zoom a batch about its centre by ``factor`` (bilinear) and crop back to the side."""
    h = x.shape[1]
    ch = int(np.ceil(h / factor))
    top = (h - ch) // 2
    zoomed = _ndimage().zoom(x[:, top:top + ch, top:top + ch], (1, factor, factor, 1), order=1)
    trim = (zoomed.shape[1] - h) // 2
    return zoomed[:, trim:trim + h, trim:trim + h]


def zoom_blur(x, s, rng):
    factors = [np.arange(1, 1.06, 0.01), np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01),
               np.arange(1, 1.21, 0.01), np.arange(1, 1.26, 0.01)][s]
    out = np.zeros_like(x)
    for factor in factors:
        out += _clipped_zoom(x, factor)
    return (x + out) / (len(factors) + 1)


def _gray(x):
    if x.shape[-1] == 1:
        return x
    return (x[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]  # OpenCV's RGB2GRAY


def snow(x, s, rng):
    loc, scale, zoom, cut, radius, sigma, keep = [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)][s]
    n, h, w = x.shape[:3]
    layer = rng.normal(size=(n, h, w, 1), loc=loc, scale=scale)
    layer = _clipped_zoom(layer, zoom)[:, :h, :w]
    layer[layer < cut] = 0
    layer = np.round(np.clip(layer, 0, 1) * 255) / 255  # the paper passes it through an 8-bit PNG
    layer = np.stack([_motion_blur(img, radius, sigma, rng.uniform(-135, -45)) for img in layer])
    x = keep * x + (1 - keep) * np.maximum(x, _gray(x) * 1.5 + 0.5)
    return x + layer + np.rot90(layer, k=2, axes=(1, 2))


def _plasma_fractal(size, decay, rng):
    """Diamond-square heightmap in [0, 1], ``size`` a power of two (the paper's ``plasma_fractal``)."""
    grid = np.zeros((size, size))
    step, wibble = size, 100.0

    def wibbled(array):
        return array / 4 + wibble * rng.uniform(-wibble, wibble, array.shape)

    while step >= 2:
        corners = grid[0:size:step, 0:size:step]
        squares = corners + np.roll(corners, -1, axis=0)
        squares += np.roll(squares, -1, axis=1)
        grid[step // 2:size:step, step // 2:size:step] = wibbled(squares)
        dr, ul = grid[step // 2:size:step, step // 2:size:step], grid[0:size:step, 0:size:step]
        grid[0:size:step, step // 2:size:step] = wibbled(dr + np.roll(dr, 1, axis=0) + ul + np.roll(ul, -1, axis=1))
        grid[step // 2:size:step, 0:size:step] = wibbled(dr + np.roll(dr, 1, axis=1) + ul + np.roll(ul, -1, axis=0))
        step //= 2
        wibble /= decay
    grid -= grid.min()
    return grid / grid.max()


def _power_of_two(side: int) -> int:
    return 1 << max(side - 1, 1).bit_length()


def fog(x, s, rng):
    amount, decay = [(.2, 3), (.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)][s]
    n, h, w = x.shape[:3]
    size = _power_of_two(max(h, w))
    fractal = np.stack([_plasma_fractal(size, decay, rng)[:h, :w] for _ in range(n)])[..., None]
    top = x.max(axis=(1, 2, 3), keepdims=True)
    return (x + amount * fractal) * top / (top + amount)


def frost(x, s, rng):
    weight, frost_weight = [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)][s]
    n, h, w = x.shape[:3]
    size = _power_of_two(max(h, w))
    ice = np.stack([_plasma_fractal(size, 1.5, rng)[:h, :w] for _ in range(n)])[..., None]
    ice = np.clip((ice - 0.3) * 1.6, 0, 1) ** 1.5  # crystals: bright streaks on a darker ground
    return weight * x + frost_weight * ice


def brightness(x, s, rng):
    """HSV value + c, hue and saturation kept: every channel scales by new value / old value."""
    c = [.05, .1, .15, .2, .3][s]
    value = x.max(axis=-1, keepdims=True)
    new = np.clip(value + c, 0, 1)
    return np.where(value > 0, x * new / np.maximum(value, 1e-12), new)


def contrast(x, s, rng):
    c = [.75, .5, .4, .3, 0.15][s]
    means = x.mean(axis=(1, 2), keepdims=True)
    return (x - means) * c + means


def _each_pil(x, change):
    from PIL import Image

    out = np.empty_like(x)
    for i, image in enumerate(np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)):
        picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        changed = np.asarray(change(picture), dtype=np.float32) / 255.0
        out[i] = changed.reshape(image.shape)
    return out


def jpeg_compression(x, s, rng):
    from PIL import Image

    quality = [80, 65, 58, 50, 40][s]

    def compress(picture):
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=quality)
        return Image.open(io.BytesIO(buffer.getvalue())).convert(picture.mode)

    return _each_pil(x, compress)


def pixelate(x, s, rng):
    from PIL import Image

    c = [0.95, 0.9, 0.85, 0.75, 0.65][s]
    h, w = x.shape[1:3]
    return _each_pil(x, lambda p: p.resize((int(w * c), int(h * c)), Image.BOX).resize((w, h), Image.BOX))


def _affine_from_points(src, dst):
    """The 2x3 matrix taking three ``src`` points to ``dst`` (OpenCV's getAffineTransform), in (x, y)."""
    a = np.hstack([src, np.ones((3, 1))])
    return np.linalg.solve(a, dst).T


def elastic_transform(x, s, rng):
    side = _side(x)
    alpha, sigma, affine = [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
                            (0.1, 0.03, 0.03)][s]
    alpha, sigma, affine = side * alpha, side * sigma, side * affine
    ndimage = _ndimage()
    n, h, w, channels = x.shape
    out = np.empty_like(x)
    centre, square = np.float32([w, h]) // 2, min(h, w) // 3
    src = np.float32([centre + square, [centre[0] + square, centre[1] - square], centre - square])
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    for i in range(n):
        m = _affine_from_points(src, src + rng.uniform(-affine, affine, size=src.shape))  # dst = M @ [x, y, 1]
        inverse = np.linalg.inv(np.vstack([m, [0, 0, 1]]))  # warpAffine samples the source at M^-1 @ dst
        warped = np.empty((h, w, channels), np.float32)
        src_x = inverse[0, 0] * cols + inverse[0, 1] * rows + inverse[0, 2]
        src_y = inverse[1, 0] * cols + inverse[1, 1] * rows + inverse[1, 2]
        for ch in range(channels):
            warped[..., ch] = ndimage.map_coordinates(x[i, ..., ch], [src_y, src_x], order=1, mode="mirror")
        dx = ndimage.gaussian_filter(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha
        dy = ndimage.gaussian_filter(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha
        for ch in range(channels):
            out[i, ..., ch] = ndimage.map_coordinates(warped[..., ch], [rows + dy, cols + dx], order=1,
                                                      mode="reflect")
    return out


_FUNCTIONS = {name: globals()[name] for name in CORRUPTIONS}
