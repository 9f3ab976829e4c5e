"""Import paths from before the package was split into folders by domain (version 0.1 of the layout).

The paths the README gives users keep working (``PUBLIC``: the old name is the new module); any other
old path fails with one line naming where the module went, instead of a bare ``ModuleNotFoundError``.
The finder runs after Python's own, so it only ever sees names that exist nowhere else.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

PACKAGE = "pytest_robustness"

# Old module -> new module, relative to the package.
MOVED = {
    "adversarial_sets": "data.adversarial_sets",
    "architectures": "models.architectures",
    "attack_result": "cells.result",
    "attacks.adversarial_training": "defenses.compiled.pgd_training",
    "attacks.deepfool_kernel": "attacks.compiled.deepfool",
    "attacks.defense_kernels": "defenses.compiled.preprocessors",
    "attacks.fgm_kernel": "attacks.compiled.fgm",
    "attacks.kernels": "attacks.compiled.kernels",
    "attacks.patch_kernel": "attacks.compiled.patch",
    "attacks.pgd_kernel": "attacks.compiled.pgd",
    "baselines": "cells.baseline",
    "cache": "data.cache",
    "cell_artifacts": "cells.artifacts",
    "classifiers": "models.classifiers",
    "data_checks": "data.checks",
    "datasets": "data.datasets",
    "defended_cells": "cells.defended",
    "defenses": "defenses.catalog",
    "devices": "models.devices",
    "evaluation": "cells.cell",
    "evidence": "cells.pictures",
    "fixtures": "plugin.fixtures",
    "gating": "reports.gating",
    "grid": "cells.grid",
    "hookspecs": "plugin.hookspecs",
    "image_folders": "data.image_folders",
    "junit": "reports.junit",
    "keras_layers": "models.keras_layers",
    "masking": "cells.masking",
    "memo": "engine.memo",
    "metric_names": "metrics.names",
    "metrics": "metrics.formulas",
    "mlflow_search": "tracking.search",
    "model_adapter": "models.adapter",
    "model_checks": "models.checks",
    "model_files": "models.files",
    "model_loading": "models.loading",
    "model_registry": "models.registered",
    "model_settings": "options.model_options",
    "model_slots": "engine.slot_models",
    "model_uris": "models.uris",
    "ordering": "plugin.ordering",
    "orphans": "tracking.orphans",
    "patch_control": "cells.patch_control",
    "patch_deployment": "attacks.patch_deployment",
    "patch_training": "defenses.patch_training",
    "plugin": "plugin.entry_point",
    "predictors": "models.predictors",
    "progress": "engine.progress",
    "randomised": "defenses.randomised",
    "recipes": "models.recipes",
    "reporting": "reports.session_run",
    "robustness_plugin": "plugin.robustness_plugin",
    "scope": "plugin.ours",
    "scoring": "cells.scoring",
    "server_health": "tracking.server_health",
    "session": "engine.session",
    "settings": "options.settings",
    "statistics": "metrics.statistics",
    "sweeps": "reports.sweeps",
    "thresholds": "options.thresholds",
    "tracking": "tracking.runs",
    "training": "models.training",
    "training_claims": "tracking.training_claims",
    "transfer": "reports.transfer_matrix",
    "transfer_cells": "cells.transfer",
    "versions": "data.versions",
}
# Old paths users were told to import (README): they load the new module under the old name.
PUBLIC = {"classifiers"}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module) -> None:
        """Nothing to run: the module is the new one, already imported."""


class OldPathFinder(importlib.abc.MetaPathFinder):
    """``pytest_robustness.<old>``: the new module for a public path, else one line saying where it went."""

    def find_spec(self, fullname, path=None, target=None):
        old = fullname[len(PACKAGE) + 1:] if fullname.startswith(PACKAGE + ".") else None
        if old not in MOVED:
            return None
        new = f"{PACKAGE}.{MOVED[old]}"
        if old in PUBLIC:
            return importlib.util.spec_from_loader(fullname, _AliasLoader(new))
        raise ModuleNotFoundError(f"{fullname} moved to {new}: import it from there", name=fullname)


def install() -> None:
    """Once per process: after every other finder, so real modules are never shadowed."""
    if not any(isinstance(finder, OldPathFinder) for finder in sys.meta_path):
        sys.meta_path.append(OldPathFinder())
