"""Named defenses: preprocessors, adversarial and patch training, randomised ones; compiled/ holds their TensorFlow forms."""
