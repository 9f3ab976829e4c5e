"""pytest-robustness: adversarial-robustness evaluation of image classifiers as pytest tests."""

__version__ = "0.1.0"
