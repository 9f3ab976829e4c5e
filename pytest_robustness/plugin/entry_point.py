"""pytest-robustness plugin entry point (``pytest11``): options, markers, start-up checks.

Everything a run does after start-up belongs to one plugin object,
:class:`~pytest_robustness.plugin.robustness_plugin.RobustnessPlugin`, registered here
in ``pytest_configure`` and unregistered in ``pytest_unconfigure`` (as pytest's
junitxml registers its ``LogXML``). Fixtures live in :mod:`pytest_robustness.plugin.fixtures`.
Which tests the plugin touches at all: :mod:`pytest_robustness.plugin.ours`.
"""

from __future__ import annotations

import pytest

from ..models.architectures import ARCHITECTURES
from ..models.checks import check_models
from ..models.devices import require_gpus
from ..options.settings import Settings, add_options, read_settings
from ..options.thresholds import load_table
from ..registry import activate_registry
from ..tracking.store_checks import require_tracking_store
from . import hookspecs
from .ours import DEPENDENCY_WARNINGS, SUITE_MARKER, dependency_warnings_ignored  # noqa: F401  (re-exported)
from .robustness_plugin import PLUGIN_KEY, PLUGIN_NAME, RobustnessPlugin

pytest_plugins = ["pytest_robustness.plugin.fixtures", "pytest_robustness.plugin.property_hooks"]

MARKERS = {
    SUITE_MARKER: "a robustness suite's test: the plugin parametrises, skips and filters it (as any test using "
                  "its fixtures)",
    "fgm": "Fast Gradient Method evasion attack cells",
    "patch": "adversarial patch attack cells",
    "evasion": "iterative, optimisation and black-box evasion attack cells (PGD, CW-L2, DeepFool, Square)",
    "autoattack": "AutoAttack ensemble cells (APGD-CE, APGD-T, DeepFool for FAB-T, Square): the per-image worst case",
    "defense": "cells that evaluate a defense",
    "transfer": "examples crafted on one model, judged on another (source-to-target pairs)",
    "spatial": "rotations and translations: ART's spatial grid (universal, per-image) and searched properties",
    "corruption": "Hendrycks & Dietterich's common corruptions at severities 1-5, mean corruption accuracy, mCE",
    "gpu": "needs a GPU: skipped unless --gpu",
    "slow": "slow on CPU (large architectures, adversarial training); deselect with -m 'not slow'",
    **{name: f"cells on the {name} architecture" for name in ARCHITECTURES},
}


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """``pytest_robustness_register(registry)``: conftest.py files and plugins register attacks & co."""
    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    registry = activate_registry(config)  # before the settings: they name registered architectures and datasets
    if config.option.help or config.option.markers or getattr(config.option, "showfixtures", False):
        return
    settings = read_settings(config)
    for name in set(settings.architectures) - set(ARCHITECTURES):  # a user's model, named by --model-uri ARCH=URI
        config.addinivalue_line("markers", f"{name}: cells on the {name} model")
    check_environment(settings)
    plugin = RobustnessPlugin(config, settings,
                              load_table(settings.thresholds_file, config.rootpath, settings.max_regression,
                                         registry, tuple(sorted(settings.model.user_architectures))))
    plugin.registry = registry
    config.stash[PLUGIN_KEY] = plugin
    config.pluginmanager.register(plugin, PLUGIN_NAME)


def pytest_unconfigure(config: pytest.Config) -> None:
    plugin = config.stash.get(PLUGIN_KEY, None)
    if plugin is not None:
        del config.stash[PLUGIN_KEY]
        plugin.guard.restore()  # the previous SIGTERM/SIGHUP handlers, as they were before the session
        if config.pluginmanager.is_registered(plugin.guard):
            config.pluginmanager.unregister(plugin.guard)
        config.pluginmanager.unregister(plugin)


def check_environment(settings: Settings) -> None:
    """Start-up checks that need more than the options: is the GPU there, is the model registered.

    Each costs an import (TensorFlow, MLflow), so it runs only when its option is given.
    """
    if settings.gpu:
        require_gpus()
    if settings.mlflow_uri_source == "--mlflow-uri" or settings.model.model_uris or settings.model.baseline_uris:
        # an environment's MLFLOW_TRACKING_URI alone is probed when a test first needs MLflow

        require_tracking_store(settings.mlflow_uri, settings.mlflow_timeout, settings.mlflow_uri_source)
    if settings.model.model_uris or settings.model.baseline_uris or settings.model.model_file:
        with dependency_warnings_ignored():  # pytest's filterwarnings do not cover start-up
            check_models(settings)
