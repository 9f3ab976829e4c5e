"""Registered-model URIs (``models:/NAME/VERSION``, ``models:/NAME@ALIAS``): parsed without MLflow.

Options are checked against this form at start-up, before the engine
(``models.registered``) asks the registry whether the version exists.
"""

from __future__ import annotations

import re

from ..errors import RobustnessUsageError

MODEL_URI_PATTERN = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+|latest)|@(?P<alias>[\w-]+))$")


def parse_model_uri(uri: str, option: str = "--model-uri") -> tuple[str, str | None, str | None]:
    match = MODEL_URI_PATTERN.match(uri)
    if not match:
        raise RobustnessUsageError(
            f"{option} {uri}: expected models:/NAME/VERSION, models:/NAME/latest or models:/NAME@ALIAS"
        )
    return match["name"], match["version"], match["alias"]
