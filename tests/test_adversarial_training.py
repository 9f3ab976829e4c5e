"""The compiled PGD adversarial trainer reaches the robustness of ART's ``AdversarialTrainer`` (the reference).

Both start from the same plainly trained le_net and train with the same recipe (L-inf PGD, eps 0.3, 5
steps of 0.1, half of each batch replaced) on the same images; their draws differ (ART uses numpy's
global RNG), so the weights differ and the comparison is statistical: the white-box FGM accuracy of each
trained model on the same 500 test images must agree within the 95% interval of their difference, and
both must beat the undefended model by far.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from pytest_robustness.attacks import compiled
from pytest_robustness.attacks.base import seed_everything
from pytest_robustness.data.datasets import load_builtin_mnist
from pytest_robustness.defenses.compiled.pgd_training import madry_pgd_fit
from pytest_robustness.defenses.pgd_training import PGD_DEFAULTS, art_pgd_training
from pytest_robustness.models.adapter import adapt
from pytest_robustness.models.architectures import get_architecture
from pytest_robustness.models.training import TrainingParams, compile_model, fit, make_optimizer

TRAIN_IMAGES, TEST_IMAGES = 2000, 500


def fgm_accuracy(model, x, y) -> float:
    x_adv = compiled.fgm(adapt(model).model, x, eps=0.3, eps_step=0.1, norm="inf", batch_size=32)  # on logits
    return float((model.predict(x_adv, batch_size=256, verbose=0).argmax(1) == y).mean())


def test_compiled_pgd_training_as_robust_as_arts():
    tf.config.experimental.enable_op_determinism()
    data = load_builtin_mnist(0)
    x, y = data.x_train[:TRAIN_IMAGES], data.y_train[:TRAIN_IMAGES]
    x_test, y_test = data.x_test[:TEST_IMAGES], data.y_test[:TEST_IMAGES]
    y_onehot = keras.utils.to_categorical(y, 10)
    keras.utils.set_random_seed(0)
    plain = get_architecture("le_net").build(data.input_shape, 10)
    params = TrainingParams(epochs=2)
    compile_model(plain, params)
    fit(plain, x, y, params, 10, 0)
    undefended = fgm_accuracy(plain, x_test, y_test)

    recipe = dict(PGD_DEFAULTS, epochs=1)
    trained = {}
    for backend in ("art", "compiled"):
        model = keras.models.clone_model(plain)
        model.set_weights(plain.get_weights())
        seed_everything(0)
        optimizer, loss = make_optimizer("adam", 0.001), keras.losses.CategoricalCrossentropy(from_logits=True)
        if backend == "art":
            art_pgd_training(model, x, y_onehot, data, optimizer, loss, 32, recipe)
        else:
            madry_pgd_fit(adapt(model).model, x, y_onehot, optimizer=optimizer, loss_object=loss, eps=recipe["eps"],
                          eps_step=recipe["eps_step"], max_iter=recipe["max_iter"], ratio=recipe["ratio"],
                          epochs=recipe["epochs"], batch_size=32, seed=0)
        trained[backend] = fgm_accuracy(model, x_test, y_test)

    art, ours = trained["art"], trained["compiled"]
    assert art > undefended + 0.2 and ours > undefended + 0.2, (undefended, trained)
    half_width = 1.96 * math.sqrt((art * (1 - art) + ours * (1 - ours)) / TEST_IMAGES)
    assert abs(art - ours) <= half_width, f"ART {art:.3f} vs compiled {ours:.3f}: differ by more than {half_width:.3f}"
