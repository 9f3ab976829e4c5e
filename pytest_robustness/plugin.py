"""pytest-robustness plugin entry point (``pytest11``): options, markers, start-up checks.

Everything a run does after start-up belongs to one plugin object,
:class:`~pytest_robustness.robustness_plugin.RobustnessPlugin`, registered here
in ``pytest_configure`` and unregistered in ``pytest_unconfigure`` (as pytest's
junitxml registers its ``LogXML``). Fixtures live in :mod:`pytest_robustness.fixtures`.
Which tests the plugin touches at all: :mod:`pytest_robustness.scope`.
"""

from __future__ import annotations

import pytest

from .architectures import ARCHITECTURES
from .devices import require_gpus
from .model_registry import check_model_uri
from .robustness_plugin import PLUGIN_KEY, PLUGIN_NAME, RobustnessPlugin
from .scope import DEPENDENCY_WARNINGS, SUITE_MARKER, dependency_warnings_ignored  # noqa: F401  (re-exported)
from .settings import Settings, add_options, read_settings
from .thresholds import load_table

pytest_plugins = ["pytest_robustness.fixtures"]

MARKERS = {
    SUITE_MARKER: "a robustness suite's test: the plugin parametrises, skips and filters it (as any test using "
                  "its fixtures)",
    "fgm": "Fast Gradient Method evasion attack cells",
    "patch": "adversarial patch attack cells",
    "defense": "cells that evaluate a defense",
    "transfer": "examples crafted on one model, judged on another (source-to-target pairs)",
    "gpu": "needs a GPU: skipped unless --gpu",
    "slow": "slow on CPU (large architectures, adversarial training); deselect with -m 'not slow'",
    **{name: f"cells on the {name} architecture" for name in ARCHITECTURES},
}


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    if config.option.help or config.option.markers or getattr(config.option, "showfixtures", False):
        return
    settings = read_settings(config)
    check_environment(settings)
    plugin = RobustnessPlugin(config, settings,
                              load_table(settings.thresholds_file, config.rootpath, settings.max_regression))
    config.stash[PLUGIN_KEY] = plugin
    config.pluginmanager.register(plugin, PLUGIN_NAME)


def pytest_unconfigure(config: pytest.Config) -> None:
    plugin = config.stash.get(PLUGIN_KEY, None)
    if plugin is not None:
        del config.stash[PLUGIN_KEY]
        config.pluginmanager.unregister(plugin)


def check_environment(settings: Settings) -> None:
    """Start-up checks that need more than the options: is the GPU there, is the model registered.

    Each costs an import (TensorFlow, MLflow), so it runs only when its option is given.
    """
    if settings.gpu:
        require_gpus()
    uris = {"--model-uri": settings.model_uri, "--baseline-uri": settings.baseline_uri}
    if any(uris.values()):
        with dependency_warnings_ignored():  # pytest's filterwarnings do not cover start-up
            for option, uri in uris.items():
                if uri:
                    check_model_uri(uri, settings.mlflow_uri, option)
