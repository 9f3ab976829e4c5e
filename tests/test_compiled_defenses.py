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

from pytest_robustness.architectures import get_architecture
from pytest_robustness.attacks import compiled
from pytest_robustness.attacks.defense_kernels import bpda_model, median_filter
from pytest_robustness.classifiers import make_classifier
from pytest_robustness.datasets import load_builtin_mnist
from pytest_robustness.defenses import bpda, get_defense


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


@pytest.mark.parametrize("attack", ["fgm", "pgd"])
def test_compiled_adaptive_smoothing_equals_art_bpda(attack, model_and_images):
    model, x = model_and_images
    params = get_defense("spatial_smoothing").resolve({})
    art_defense = get_defense("spatial_smoothing").preprocessor(params)
    classifier = make_classifier(model, 10, x.shape[1:], preprocessing_defences=[bpda(art_defense)])
    defended = bpda_model(classifier.model, get_defense("spatial_smoothing").compiled(params))  # its logits
    if attack == "fgm":
        ours = compiled.fgm(defended, x, eps=0.2, eps_step=0.1, norm="inf", batch_size=32)
        reference = FastGradientMethod(classifier, eps=0.2, norm=np.inf, batch_size=32).generate(x)
    else:
        ours = compiled.pgd(defended, x, eps=0.2, eps_step=0.05, max_iter=5, norm="inf", batch_size=32)
        reference = ProjectedGradientDescent(classifier, eps=0.2, eps_step=0.05, max_iter=5, norm=np.inf,
                                             batch_size=32, verbose=False).generate(x)
    assert np.abs(ours - x).max() > 0.1  # the attack moved the images
    np.testing.assert_allclose(ours, reference, atol=1e-6)
