"""TensorFlow forms of the defenses: preprocessors for compiled adaptive attacks, PGD training steps."""
