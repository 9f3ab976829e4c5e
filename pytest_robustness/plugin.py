"""pytest-robustness plugin entry point (``pytest11``): options, markers, start-up checks, collection.

Fixtures live in :mod:`pytest_robustness.fixtures` and MLflow/JUnit reporting in
:mod:`pytest_robustness.reporting`; both are loaded through ``pytest_plugins``.
"""

from __future__ import annotations

import warnings

import pytest

from . import hookspecs
from .architectures import ARCHITECTURES, get_architecture, known_architectures
from .registry import activate_registry
from .settings import Settings, add_options, read_settings

# reporting first: fixtures imports it, and a plugin must be registered before
# another module imports it, or pytest cannot assertion-rewrite it.
pytest_plugins = ["pytest_robustness.reporting", "pytest_robustness.gating", "pytest_robustness.transfer",
                  "pytest_robustness.fixtures", "pytest_robustness.sweeps", "pytest_robustness.ordering"]

# Noise from our dependencies, not from the user's code.
DEPENDENCY_WARNINGS = (
    "ignore:PyTorch not found:UserWarning",
    "ignore:The ``noload`` loader strategy is deprecated",
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning",
)

SETTINGS_KEY = pytest.StashKey[Settings]()

MARKERS = {
    "fgm": "Fast Gradient Method evasion attack cells",
    "patch": "adversarial patch attack cells",
    "evasion": "iterative, optimisation and black-box evasion attack cells (PGD, CW-L2, DeepFool, Square)",
    "defense": "cells that evaluate a defense",
    "transfer": "examples crafted on one model, judged on another (source-to-target pairs)",
    "gpu": "needs a GPU: skipped unless --gpu",
    "slow": "slow on CPU (large architectures, adversarial training); deselect with -m 'not slow'",
    **{name: f"cells on the {name} architecture" for name in ARCHITECTURES},
}


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """``pytest_robustness_register(registry)``: conftest.py files and plugins register attacks & co."""
    pluginmanager.add_hookspecs(hookspecs)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    for line in DEPENDENCY_WARNINGS:
        config.addinivalue_line("filterwarnings", line)
    activate_registry(config)  # before the settings: they name registered architectures and datasets
    if config.option.help or config.option.markers or getattr(config.option, "showfixtures", False):
        return
    settings = read_settings(config)
    config.stash[SETTINGS_KEY] = settings
    for name in set(settings.architectures) - set(ARCHITECTURES):  # a user's model, named by --model-uri ARCH=URI
        config.addinivalue_line("markers", f"{name}: cells on the {name} model")
    check_environment(settings)


def check_environment(settings: Settings) -> None:
    """Start-up checks that need more than the options: is the GPU there, is the model registered.

    Each costs an import (TensorFlow, MLflow), so it runs only when its option is given.
    """
    if settings.gpu:
        from .devices import require_gpus

        require_gpus()
    if settings.mlflow_uri_source == "--mlflow-uri" or settings.model_uris or settings.baseline_uris:
        # an environment's MLFLOW_TRACKING_URI alone is probed when a test first needs MLflow
        from .server_health import require_tracking_server

        require_tracking_server(settings.mlflow_uri, settings.mlflow_timeout, settings.mlflow_uri_source)
    if settings.model_uris or settings.baseline_uris or settings.model.model_file:
        from .model_checks import check_models

        with warnings.catch_warnings():  # pytest's filterwarnings do not cover start-up
            for line in DEPENDENCY_WARNINGS:
                warnings.filterwarnings("ignore", message=line.split(":")[1])
            check_models(settings)


def settings_of(config: pytest.Config) -> Settings:
    return config.stash[SETTINGS_KEY]


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that asks for ``architecture`` runs once per selected architecture.

    Runs before ``@pytest.mark.parametrize`` so the architecture leads the test id
    (``test_fgm[le_net-linf-eps0.3]``); each cell carries its architecture marker,
    and ``slow`` for the large ones.
    """
    if "architecture" not in metafunc.fixturenames or "source_architecture" in metafunc.fixturenames:
        return  # transfer tests: transfer.py parametrises (source, target) pairs
    names = settings_of(metafunc.config).architectures
    params = [pytest.param(name, id=name, marks=[getattr(pytest.mark, name)]
                           + ([pytest.mark.slow] if name in known_architectures() and get_architecture(name).slow
                              else [])) for name in names]
    metafunc.parametrize("architecture", params)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--gpu"):
        return
    skip = pytest.mark.skip(reason="needs --gpu")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
