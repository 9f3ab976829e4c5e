"""Compiled adaptive attacks through a defense's TensorFlow form equal ART's BPDA attacks.

ART attacks a classifier whose preprocessing defense runs in numpy, with BPDA (identity)
gradients; the compiled kernels attack the model behind the defense's TensorFlow form
(forward: the defense, backward: the identity). Same forward, same gradient, so the same examples.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
from art.defences.preprocessor import SpatialSmoothing

from pytest_robustness.attacks import compiled
from pytest_robustness.data.datasets import load_builtin_mnist
from pytest_robustness.defenses.catalog import get_defense
from pytest_robustness.defenses.compiled.preprocessors import bpda_model, median_filter
from pytest_robustness.defenses.defense import bpda
from pytest_robustness.models.architectures import get_architecture
from pytest_robustness.models.classifiers import make_classifier


@pytest.fixture(scope="module")
def model_and_images():
    data = load_builtin_mnist(0)
    keras.utils.set_random_seed(0)
    model = get_architecture("le_net").build(data.input_shape, 10)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.fit(data.x_train[:512], keras.utils.to_categorical(data.y_train[:512], 10), epochs=1, verbose=0)
    return model, np.array(data.x_test[:96])


@pytest.mark.parametrize("window", [1, 3, 5])
def test_median_filter_is_arts_spatial_smoothing(window, model_and_images):
    _, x = model_and_images
    noisy = np.clip(x + np.random.default_rng(0).normal(0, 0.3, x.shape), -0.2, 1.2).astype(np.float32)
    expected, _ = SpatialSmoothing(window_size=window, channels_first=False, clip_values=(0.0, 1.0))(noisy)
    np.testing.assert_array_equal(median_filter(tf.constant(noisy), window).numpy(), expected)


def test_jpeg_inside_the_kernel_is_arts_encoder_bit_for_bit(model_and_images):
    _, x = model_and_images
    params = get_defense("jpeg_compression").resolve({"quality": 30})
    expected, _ = get_defense("jpeg_compression").preprocessor(params)(x)

    @tf.function
    def compiled_form(t):
        return get_defense("jpeg_compression").compiled(params)()(t)

    ours = compiled_form(tf.constant(x)).numpy()
    assert np.abs(ours - x).max() > 0.05  # the encoder changed the images
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("defense", ["spatial_smoothing", "jpeg_compression"])
@pytest.mark.parametrize("attack", ["fgm", "pgd"])
def test_compiled_adaptive_attack_equals_art_bpda(attack, defense, model_and_images):
    model, x = model_and_images
    params = get_defense(defense).resolve({})
    art_defense = get_defense(defense).preprocessor(params)
    classifier = make_classifier(model, 10, x.shape[1:], preprocessing_defences=[bpda(art_defense)])
    defended = bpda_model(classifier.model, get_defense(defense).compiled(params)())  # its logits
    if attack == "fgm":
        ours = compiled.fgm(defended, x, eps=0.2, eps_step=0.1, norm="inf", batch_size=32)
        reference = FastGradientMethod(classifier, eps=0.2, norm=np.inf, batch_size=32).generate(x)
    else:
        ours = compiled.pgd(defended, x, eps=0.2, eps_step=0.05, max_iter=5, norm="inf", batch_size=32)
        reference = ProjectedGradientDescent(classifier, eps=0.2, eps_step=0.05, max_iter=5, norm=np.inf,
                                             batch_size=32, verbose=False).generate(x)
    assert np.abs(ours - x).max() > 0.1  # the attack moved the images
    np.testing.assert_allclose(ours, reference, atol=1e-6)


def _defended_accuracy(classifier, x_adv, y, seed=0) -> float:
    np.random.seed(seed)  # ART's Gaussian noise draws from numpy's global generator
    return float(np.mean(classifier.predict(x_adv).argmax(1) == y))


def test_compiled_gaussian_noise_draws_are_seeded_and_averaged(model_and_images):
    model, x = model_and_images
    params = get_defense("gaussian_augmentation").resolve({})
    noise = get_defense("gaussian_augmentation").compiled(params)()
    assert noise.expectation_draws == params["eot_samples"] == 8
    defended = bpda_model(make_classifier(model, 10, x.shape[1:]).model, noise)
    runs = []
    for seed in (0, 0, 1):
        defended.reseed(seed)
        runs.append(compiled.fgm(defended, x, eps=0.1, eps_step=0.1, norm="inf", batch_size=32))
    np.testing.assert_array_equal(runs[0], runs[1])  # the same seed, the same draws, the same examples
    assert not np.array_equal(runs[0], runs[2])
    noise.reseed(0)
    once = noise(tf.constant(x)).numpy()
    assert 0.08 < np.std(once[(once > 0) & (once < 1)] - x[(once > 0) & (once < 1)]) < 0.12  # sigma 0.1


def test_compiled_eot_attack_is_as_strong_as_arts(model_and_images):
    """Other random numbers than ART's, the same expectation: defended accuracies within their 95% intervals."""
    from pytest_robustness.defenses.randomised import with_eot
    from pytest_robustness.metrics.statistics import wilson_interval

    model, x = model_and_images
    y = load_builtin_mnist(0).y_test[:len(x)]
    params = get_defense("gaussian_augmentation").resolve({})
    art_defense = get_defense("gaussian_augmentation").preprocessor(params)
    classifier = make_classifier(model, 10, x.shape[1:], preprocessing_defences=[bpda(art_defense)])
    defended = bpda_model(classifier.model, get_defense("gaussian_augmentation").compiled(params)())
    defended.reseed(0)
    ours = compiled.fgm(defended, x, eps=0.1, eps_step=0.1, norm="inf", batch_size=32, y=y)
    np.random.seed(0)
    reference = FastGradientMethod(with_eot(classifier, params["eot_samples"]), eps=0.1, norm=np.inf,
                                   batch_size=32).generate(x, np.eye(10, dtype=np.float32)[y])
    clean = _defended_accuracy(classifier, x, y)
    accuracies = [_defended_accuracy(classifier, a, y) for a in (ours, reference)]
    assert all(a < clean - 0.1 for a in accuracies), (clean, accuracies)  # both attacks bite
    (low_ours, high_ours), (low_art, high_art) = (wilson_interval(a, len(x)) for a in accuracies)
    assert low_ours <= high_art and low_art <= high_ours, accuracies
