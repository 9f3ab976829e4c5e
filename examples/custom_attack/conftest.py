"""Register a small attack, an ART preprocessing defense and an architecture with pytest-robustness.

``pytest robustness_suites`` (from this folder) runs them like the built-ins: validated
at collection, cached, one nested MLflow run per cell, JUnit properties, thresholds by name.
"""

import numpy as np

from pytest_robustness.params import numeric


def random_sign(classifier, model, x, params, seed):
    """Noise of L-inf size eps in a random sign pattern: the floor any robust model should clear."""
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=x.shape)
    return np.clip(x + params["eps"] * signs, 0.0, 1.0).astype(np.float32)


def feature_squeezing(params):
    from art.defences.preprocessor import FeatureSqueezing

    return FeatureSqueezing(clip_values=(0.0, 1.0), bit_depth=params["bit_depth"],
                            apply_fit=params["apply_fit"], apply_predict=params["apply_predict"])


def tiny_mlp(input_shape, n_classes, width):
    import keras

    return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(),
                             keras.layers.Dense(width, activation="relu"),
                             keras.layers.Dense(n_classes, activation="softmax")])


def pytest_robustness_register(registry):
    registry.add_attack("random_sign", params={"eps": numeric(0.3, 0, 1, low_open=True, id_prefix="eps")},
                        generate=random_sign, doc="random-sign noise of size eps")
    registry.add_defense("feature_squeezing", params={"bit_depth": numeric(4, 1, 64, integer=True, id_prefix="bits")},
                         preprocessor=feature_squeezing, doc="ART FeatureSqueezing")
    registry.add_architecture("tiny_mlp", tiny_mlp, params={"width": numeric(32, 1, integer=True)})
