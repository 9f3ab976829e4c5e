"""Models: architectures, training and recipes, loading users' models, ART classifiers, the registry of models."""
