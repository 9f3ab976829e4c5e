"""Architectures registry: every network takes the data's own 28x28x1 images and predicts."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from pytest_robustness.errors import RobustnessUsageError
from pytest_robustness.models.architectures import (
    ARCHITECTURES,
    DEFAULT_ARCHITECTURES,
    get_architecture,
    recipe_image_size,
)

MNIST_SHAPE = (28, 28, 1)


def images(n=2, shape=MNIST_SHAPE):
    return np.random.default_rng(0).random((n, *shape), dtype=np.float32)


def test_registry_names_dioptras_architectures():
    assert set(ARCHITECTURES) == {"le_net", "shallow_net", "alex_net", "resnet50", "vgg16"}
    assert DEFAULT_ARCHITECTURES == ("le_net", "shallow_net")
    assert {name for name, arch in ARCHITECTURES.items() if arch.slow} == {"alex_net", "resnet50", "vgg16"}


@pytest.mark.parametrize("name", ["le_net", "shallow_net"])
def test_small_architectures_build_and_predict_on_mnist_shape(name):
    keras.utils.set_random_seed(0)
    model = get_architecture(name).build(MNIST_SHAPE, 10)
    assert model.input_shape == (None, *MNIST_SHAPE)
    probs = model.predict(images(5), verbose=0)
    assert probs.shape == (5, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)  # softmax output
    names = [layer.name for layer in model.layers]
    assert "resize_up" not in names and "grey_to_rgb" not in names


def test_shallow_net_is_dioptras():
    model = get_architecture("shallow_net").build(MNIST_SHAPE, 10)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [(d.units, d.activation.__name__) for d in dense] == [(32, "sigmoid"), (10, "softmax")]


@pytest.mark.parametrize("name, inner_size", [("alex_net", 195), ("resnet50", 32), ("vgg16", 32)])
def test_large_architectures_adapt_28x28_grey_inside_the_model(name, inner_size):
    """Resized up and grey -> RGB inside the network, so attacks work in the data's pixel space."""
    keras.utils.set_random_seed(0)
    model = get_architecture(name).build(MNIST_SHAPE, 10)
    assert model.input_shape == (None, *MNIST_SHAPE)
    assert model.get_layer("resize_up").output.shape[1:3] == (inner_size, inner_size)
    assert model.get_layer("grey_to_rgb").output.shape[-1] == 3
    probs = model(images(2), training=False).numpy()
    assert probs.shape == (2, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)


def test_rgb_input_needs_no_channel_adaptation():
    model = get_architecture("resnet50").build((32, 32, 3), 4)
    names = [layer.name for layer in model.layers]
    assert "grey_to_rgb" not in names and "resize_up" not in names
    assert model(images(1, (32, 32, 3))).shape == (1, 4)


@pytest.mark.parametrize("name, shape, cpu, gpu", [
    ("resnet50", (100, 100, 3), (32, 32), (100, 100)),   # Fruits360: 32x32 on CPU, its own size with --gpu
    ("vgg16", (224, 224, 3), (32, 32), (224, 224)),      # ImageNet-style
    ("resnet50", (28, 28, 1), (32, 32), (32, 32)),       # MNIST: up to the base's smallest input either way
    ("vgg16", (20, 40, 3), (32, 32), (32, 40)),
    ("alex_net", (28, 28, 1), (195, 195), (195, 195)),   # no CPU size: the data's, up to the smallest it takes
    ("alex_net", (224, 224, 3), (224, 224), (224, 224)),
    ("le_net", (100, 100, 3), (100, 100), (100, 100)),
])
def test_the_recipe_trains_resnet50_and_vgg16_at_32x32_on_cpu_and_at_the_datas_size_on_a_gpu(name, shape, cpu, gpu):
    assert recipe_image_size(ARCHITECTURES[name], shape, on_gpu=False) == cpu
    assert recipe_image_size(ARCHITECTURES[name], shape, on_gpu=True) == gpu


def test_the_rule_is_what_the_built_network_does():
    """The network takes the data's images and resizes them inside to the rule's size: down on CPU, not with --gpu."""
    keras.utils.set_random_seed(0)
    cpu = get_architecture("resnet50").build((64, 64, 3), 2)
    assert cpu.input_shape == (None, 64, 64, 3)
    assert cpu.get_layer("resize_down").output.shape[1:3] == (32, 32)
    gpu = get_architecture("resnet50").build((64, 64, 3), 2, on_gpu=True)
    assert "resize_down" not in [layer.name for layer in gpu.layers]
    assert gpu.get_layer("caffe_preprocess").output.shape[1:3] == (64, 64)
    assert cpu(images(1, (64, 64, 3))).shape == gpu(images(1, (64, 64, 3))).shape == (1, 2)


def test_unknown_architecture_names_the_choices():
    with pytest.raises(RobustnessUsageError) as info:
        get_architecture("lenet5")
    assert str(info.value) == (
        "--architecture lenet5: unknown architecture; choose from le_net, shallow_net, alex_net, resnet50, vgg16"
    )


def test_bad_input_shape_is_rejected():
    with pytest.raises(RobustnessUsageError, match=r"input shape \(28, 28, 2\) is not"):
        get_architecture("le_net").build((28, 28, 2), 10)
