"""Datasets: built-in MNIST split, Dioptra PNG folders and .npz files, all to one float32 NHWC form."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pytest_robustness.data.datasets import load_builtin_mnist, load_dataset, validate_dataset_spec
from pytest_robustness.errors import RobustnessUsageError


@pytest.fixture(scope="module")
def mnist_seed0():
    return load_builtin_mnist(0)


def test_builtin_mnist_is_a_stratified_80_20_split(mnist_seed0):
    data = mnist_seed0
    assert data.x_train.shape == (4000, 28, 28, 1) and data.x_test.shape == (1000, 28, 28, 1)
    assert data.x_train.dtype == np.float32 and data.x_test.dtype == np.float32
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0 and data.x_train.max() > 0.99
    # 500 digits per class in the source: 400 train / 100 test each, not the label-sorted head.
    assert np.bincount(data.y_train, minlength=10).tolist() == [400] * 10
    assert np.bincount(data.y_test, minlength=10).tolist() == [100] * 10
    assert data.class_names == tuple(str(i) for i in range(10)) and data.n_classes == 10
    assert data.input_shape == (28, 28, 1)
    # Shuffled, so the first --samples images are not all one digit.
    assert len(np.unique(data.y_test[:50])) == 10


def test_builtin_mnist_split_is_deterministic_by_seed(mnist_seed0):
    again = load_builtin_mnist(0)
    np.testing.assert_array_equal(again.x_test, mnist_seed0.x_test)
    np.testing.assert_array_equal(again.y_train, mnist_seed0.y_train)
    assert again.digest == mnist_seed0.digest

    other = load_builtin_mnist(1)
    assert other.digest != mnist_seed0.digest
    assert not np.array_equal(other.y_test, mnist_seed0.y_test)
    # Same images overall, different assignment to train and test.
    all_seed0 = np.concatenate([mnist_seed0.x_train, mnist_seed0.x_test]).reshape(5000, -1)
    all_seed1 = np.concatenate([other.x_train, other.x_test]).reshape(5000, -1)
    assert sorted(map(bytes, all_seed0)) == sorted(map(bytes, all_seed1))


def write_folder(root: Path, images: dict[str, dict[str, list[np.ndarray]]]) -> Path:
    """Dioptra layout written as real PNG files: root/<split>/<label>/<i>.png."""
    for split, by_label in images.items():
        for label, arrays in by_label.items():
            folder = root / split / label
            folder.mkdir(parents=True)
            for i, array in enumerate(arrays):
                Image.fromarray(array).save(folder / f"{i:03d}.png")
    return root


def random_images(rng, n, shape):
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("shape, channels", [((12, 10), 1), ((12, 10, 3), 3)], ids=["grey", "rgb"])
def test_dioptra_folder_png_images(tmp_path, shape, channels):
    import keras

    rng = np.random.default_rng(0)
    # Keras' image_dataset_from_directory order: plain sorted names ("10" before "2").
    labels = ["2", "9", "10"]
    images = {"training": {lab: random_images(rng, 3, shape) for lab in labels},
              "testing": {lab: random_images(rng, 2, shape) for lab in labels}}
    root = write_folder(tmp_path / "digits", images)

    validate_dataset_spec(str(root))
    data = load_dataset(str(root), seed=0)
    assert data.class_names == ("10", "2", "9")
    assert data.x_train.shape == (9, 12, 10, channels) and data.x_test.shape == (6, 12, 10, channels)
    assert data.x_train.dtype == np.float32
    expected = np.stack([a for lab in sorted(labels) for a in images["training"][lab]]).reshape(data.x_train.shape)
    np.testing.assert_array_equal(data.x_train, expected.astype(np.float32) / 255.0)
    # The same classes, images and labels, in the same order, as the user's Keras training job would see.
    theirs = keras.utils.image_dataset_from_directory(root / "training", shuffle=False, batch_size=None,
                                                      image_size=shape[:2], color_mode="grayscale" if channels == 1 else "rgb")
    assert tuple(theirs.class_names) == data.class_names
    x_keras, y_keras = zip(*((x.numpy(), int(y)) for x, y in theirs))
    np.testing.assert_array_equal(np.stack(x_keras) / 255.0, data.x_train)
    assert list(y_keras) == data.y_train.tolist()
    assert data.y_train.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert data.y_test.tolist() == [0, 0, 1, 1, 2, 2]
    assert data.name == "digits"

    # Same content elsewhere: same digest. Changed content: different digest.
    copy = write_folder(tmp_path / "copy", images)
    assert load_dataset(str(copy), seed=0).digest == data.digest
    images["testing"]["9"][0] = 255 - images["testing"]["9"][0]
    changed = write_folder(tmp_path / "changed", images)
    assert load_dataset(str(changed), seed=0).digest != data.digest


def test_dioptra_folder_testing_label_must_exist_in_training(tmp_path):
    rng = np.random.default_rng(0)
    root = write_folder(tmp_path / "d", {"training": {"a": random_images(rng, 1, (4, 4))},
                                         "testing": {"b": random_images(rng, 1, (4, 4))}})
    with pytest.raises(RobustnessUsageError, match=r"testing labels \['b'\] do not exist under training/"):
        load_dataset(str(root), seed=0)


@pytest.fixture
def arrays_uint8():
    rng = np.random.default_rng(3)
    return dict(x_train=rng.integers(0, 256, (20, 8, 8), dtype=np.uint8), y_train=rng.integers(0, 4, 20),
                x_test=rng.integers(0, 256, (10, 8, 8), dtype=np.uint8), y_test=np.arange(10) % 4)


def test_npz_uint8_and_float_int_and_one_hot_agree(tmp_path, arrays_uint8):
    a = arrays_uint8
    np.savez(tmp_path / "u8_int.npz", **a)
    as_float = {k: (v.astype(np.float32) / np.float32(255) if k.startswith("x") else v) for k, v in a.items()}
    one_hot = {k: (np.eye(4)[v] if k.startswith("y") else v) for k, v in as_float.items()}
    np.savez(tmp_path / "float_onehot.npz", **one_hot)

    base = load_dataset(str(tmp_path / "u8_int.npz"), seed=0)
    other = load_dataset(str(tmp_path / "float_onehot.npz"), seed=0)
    assert base.x_train.shape == (20, 8, 8, 1) and base.x_train.dtype == np.float32
    assert base.x_train.max() <= 1.0
    np.testing.assert_array_equal(base.x_train, a["x_train"][..., None].astype(np.float32) / 255.0)
    np.testing.assert_array_equal(base.y_train, a["y_train"])
    np.testing.assert_array_equal(other.y_test, a["y_test"])
    assert base.n_classes == 4 and base.name == "u8_int"
    assert other.digest == base.digest


def test_npz_float_in_0_255_is_rescaled(tmp_path, arrays_uint8):
    a = {k: (v.astype(np.float32) if k.startswith("x") else v) for k, v in arrays_uint8.items()}
    np.savez(tmp_path / "f255.npz", **a)
    data = load_dataset(str(tmp_path / "f255.npz"), seed=0)
    assert 0.0 <= data.x_test.min() and data.x_test.max() <= 1.0
    np.testing.assert_allclose(data.x_test[..., 0], a["x_test"] / 255.0, rtol=1e-6)
