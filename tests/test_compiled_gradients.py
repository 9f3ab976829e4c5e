"""The compiled DeepFool kernel against ART's ``DeepFool``, and the classifier's one-pass class gradients against ART's.

DeepFool stops a row when its label flips: where a step lands a hair from the boundary, float
rounding in the class gradients (one Jacobian here, one backward pass per class in ART) can take
one more or one fewer step. Nearly every image is equal to ART's; the metrics the suite reads
(adversarial accuracy, median L2 distance) agree to rounding.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from art.attacks.evasion import DeepFool

from pytest_robustness.attacks.compiled.deepfool import deepfool
from pytest_robustness.data.datasets import load_builtin_mnist
from pytest_robustness.models.architectures import get_architecture
from pytest_robustness.models.classifiers import make_classifier


@pytest.fixture(scope="module", params=["le_net", "shallow_net"])
def trained(request):
    data = load_builtin_mnist(0)
    keras.utils.set_random_seed(0)
    model = get_architecture(request.param).build(data.input_shape, 10)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.fit(data.x_train[:1000], keras.utils.to_categorical(data.y_train[:1000], 10), epochs=2, verbose=0)
    classifier = make_classifier(model, 10, data.input_shape)  # logits, as the suites attack it
    return classifier, np.array(data.x_test[:128]), np.array(data.y_test[:128])


def _compare(classifier, x, y, **params):
    ours = deepfool(classifier.model, x, clip_values=classifier.clip_values, **params)
    reference = DeepFool(classifier, verbose=False, **params).generate(x)
    equal = np.all(np.isclose(ours, reference, atol=1e-5), axis=(1, 2, 3))
    accuracy = [float(np.mean(classifier.predict(a).argmax(1) == y)) for a in (ours, reference)]
    median_l2 = [float(np.median(np.linalg.norm((a - x).reshape(len(x), -1), axis=1))) for a in (ours, reference)]
    return ours, equal, accuracy, median_l2


@pytest.mark.parametrize("nb_grads", [10, 3])
def test_compiled_deepfool_is_arts(trained, nb_grads):
    classifier, x, y = trained
    ours, equal, accuracy, median_l2 = _compare(classifier, x, y, max_iter=10, epsilon=0.02, nb_grads=nb_grads,
                                                batch_size=32)
    assert median_l2[1] > 0.5  # the reference attack moved the images
    assert equal.mean() >= 0.95, f"{equal.mean():.3f} of the images equal ART's"
    assert abs(accuracy[0] - accuracy[1]) <= 2 / len(x), accuracy
    assert median_l2[0] == pytest.approx(median_l2[1], rel=0.02)


def test_no_iterations_is_the_overshoot_of_nothing(trained):
    classifier, x, y = trained
    np.testing.assert_array_equal(deepfool(classifier.model, x, max_iter=0, batch_size=32), x)


def test_per_sample_class_gradients_are_arts(trained):
    """The harness's classifier computes Carlini-Wagner's per-sample class gradients in one pass."""
    from art.estimators.classification import TensorFlowV2Classifier

    classifier, x, _ = trained
    plain = TensorFlowV2Classifier(model=classifier.model, nb_classes=10, input_shape=x.shape[1:],
                                   clip_values=(0.0, 1.0),
                                   loss_object=keras.losses.CategoricalCrossentropy(from_logits=True))
    labels = np.random.default_rng(0).integers(0, 10, len(x))
    ours = classifier.class_gradient(x, label=labels)
    assert type(classifier) is not TensorFlowV2Classifier and ours.shape == (len(x), 1, *x.shape[1:])
    # one compiled graph against eager passes: equal to float rounding (bit for bit on le_net here)
    np.testing.assert_allclose(ours, plain.class_gradient(x, label=labels), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(classifier.class_gradient(x, label=3), plain.class_gradient(x, label=3))
