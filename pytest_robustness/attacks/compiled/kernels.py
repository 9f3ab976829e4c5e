"""What the compiled attack kernels share: a per-model cache of ``tf.function`` kernels, ART's
argument checks, its batching, and the loss gradient and projection every kernel is built from.

The cache is keyed weakly by the model, so it never keeps a model alive.
"""

from __future__ import annotations

import math
import numbers
import weakref

import keras
import numpy as np
import tensorflow as tf

# model -> {config key: tf.function}.  The kernels only hold a weak reference
# to the model, so entries disappear together with the model.
KERNELS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def cached_kernel(model, key, build):
    per_model = KERNELS.get(model)
    if per_model is None:
        per_model = {}
        KERNELS[model] = per_model
    fn = per_model.get(key)
    if fn is None:
        fn = per_model[key] = build(weakref.ref(model))
    return fn


# ---------------------------------------------------------------------------
# Parameter validation
# ---------------------------------------------------------------------------


def check_norm(norm):
    """Map "inf"/np.inf, "1"/1, "2"/2 to "inf", 1 or 2."""
    if isinstance(norm, str):
        key = norm.strip().lower()
        table = {"inf": "inf", "np.inf": "inf", "1": 1, "2": 2}
        if key in table:
            return table[key]
    elif isinstance(norm, numbers.Real) and not isinstance(norm, bool):
        if math.isinf(norm) and norm > 0:
            return "inf"
        if norm == 1:
            return 1
        if norm == 2:
            return 2
    raise ValueError(f'norm must be one of "inf", "1", "2" (or np.inf, 1, 2); got {norm!r}')


def check_real(name, value, *, low=None, strict=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number; got {value!r}")
    if low is not None and (value <= low if strict else value < low):
        op = ">" if strict else ">="
        raise ValueError(f"{name} must be {op} {low}; got {value!r}")
    return float(value)


def check_int(name, value, *, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer; got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}; got {value!r}")
    return int(value)


def check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a bool; got {value!r}")
    return bool(value)


def check_clip(clip_values):
    try:
        lo, hi = clip_values
        lo = check_real("clip_values[0]", lo)
        hi = check_real("clip_values[1]", hi)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"clip_values must be a pair (min, max) of finite numbers; got {clip_values!r}") from exc
    if not lo < hi:
        raise ValueError(f"clip_values must satisfy min < max; got {clip_values!r}")
    return lo, hi


def check_x(x):
    x = np.asarray(x)
    if x.dtype == object or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"x must be a numeric array; got dtype {x.dtype}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch of shape (n, ...); got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


def nb_classes_of(model):
    try:
        shape = model.output_shape
    except (AttributeError, ValueError):
        shape = None
    if shape is None or not isinstance(shape, tuple) or shape[-1] is None:
        raise ValueError("model must be a Keras model with a single (n, nb_classes) output")
    return int(shape[-1])


def to_one_hot(name, y, n, nb_classes):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == nb_classes and nb_classes > 1:
        if not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)):
            raise ValueError(f"{name} (one-hot) must be finite numbers")
        out = y.astype(np.float32)
    else:
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(
                f"{name} must be integer labels of shape (n,) or one-hot of shape (n, {nb_classes}); "
                f"got shape {y.shape}"
            )
        if not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)))):
            raise ValueError(f"{name} labels must be integers; got dtype {y.dtype}")
        y = y.astype(np.int64)
        if y.size and (y.min() < 0 or y.max() >= nb_classes):
            raise ValueError(f"{name} labels must be in [0, {nb_classes}); got range [{y.min()}, {y.max()}]")
        out = np.eye(nb_classes, dtype=np.float32)[y]
    if out.shape[0] != n:
        raise ValueError(f"{name} must have one label per input ({n}); got {out.shape[0]}")
    return out


def batches(n, batch_size):
    """ART's implicit batching: [0:b], [b:2b], ..., last one possibly shorter."""
    for start in range(0, n, batch_size):
        yield start, min(start + batch_size, n)


# ---------------------------------------------------------------------------
# Shared graph pieces
# ---------------------------------------------------------------------------


def loss_gradient(model, x, y, nb_classes):
    """ART ``TensorFlowV2Classifier.loss_gradient`` with ``CategoricalCrossentropy(from_logits=True)``.

    ``model`` outputs logits (the harness's wrapper, see ``models.adapter``).

    The Keras loss reduces with ``sum_over_batch_size`` (sum / rows), so the
    gradient of each sample is scaled by 1 / batch rows exactly as in ART, which
    is why the kernels use ART's batch boundaries.  When ``y`` is None the labels
    are the model's own predictions, taken from the same forward pass (ART runs
    a separate ``predict`` first).

    A model whose forward pass is random (a noise defense in front, see ``defenses.compiled.preprocessors``)
    declares ``expectation_draws``: the gradient is then the mean over that many forward
    passes, Expectation over Transformation, as ART's ``randomised.EoTClassifier`` averages
    ``loss_gradient`` calls; the labels come from the first.
    """
    draws, total = expectation_draws(model), None
    for _ in range(draws):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = model(x, training=False)
            if y is None:
                y = tf.one_hot(tf.argmax(logits, axis=1), nb_classes, dtype=logits.dtype)
            per_sample = keras.losses.categorical_crossentropy(y, logits, from_logits=True)
            loss = tf.reduce_sum(per_sample) / tf.cast(tf.shape(per_sample)[0], per_sample.dtype)
        grad = tape.gradient(loss, x)
        total = grad if total is None else total + grad
    return (total / float(draws) if draws > 1 else total), y


def expectation_draws(model) -> int:
    """Forward passes a gradient of ``model`` averages (1 unless its forward pass is random)."""
    return int(getattr(model, "expectation_draws", 1))


def flat(t):
    return tf.reshape(t, [tf.shape(t)[0], -1])


def project(values, eps, norm):
    """``art.utils.projection`` / ``ProjectedGradientDescentTensorFlowV2._projection`` (suboptimal=True)."""
    v2 = flat(values)
    if norm == "inf":
        v2 = tf.sign(v2) * tf.minimum(tf.abs(v2), eps)
    else:
        vn = tf.norm(v2, ord=float(norm), axis=1, keepdims=True)
        v2 = v2 * tf.where(vn == 0, tf.zeros_like(vn), tf.minimum(tf.constant(1.0, vn.dtype), eps / vn))
    return tf.reshape(v2, tf.shape(values))


def prepare_inputs(model, x, y, targeted, batch_size, clip_values):
    x = check_x(x)
    targeted = check_bool("targeted", targeted)
    batch_size = check_int("batch_size", batch_size, low=1)
    clip = check_clip(clip_values)
    nb_classes = nb_classes_of(model)
    if y is None:
        if targeted:
            raise ValueError("y (target labels) is required when targeted=True")
        y_arr = None
    else:
        y_arr = to_one_hot("y", y, x.shape[0], nb_classes)
    return x, y_arr, targeted, batch_size, clip, nb_classes
