"""A Hypothesis ``ExampleDatabase`` kept in the MLflow model registry, so counterexamples outlive a release.

Hypothesis saves every failing example it finds (and shrinks) to its database and replays
the saved ones first on the next run. Kept in a local ``.hypothesis/`` folder, they would
be lost between CI jobs and tied to one checkout; kept here, they belong to the
*registered model* (every version of it) and the *cell*: a counterexample found against
version 3 is the first thing tried against version 4, on any machine that uses the same
tracking store (the sqlite default, a shared server, every xdist worker).

Storage: one tag per saved example on the registered model,
``robustness.hypothesis.<cell>.<key>.<value>`` (12 hex digits of a SHA-256 each) = the
example's choice sequence, base64-encoded; plus ``robustness.hypothesis.<cell>`` = the
cell's name, so a reader can tell what the hashes belong to. One tag per value makes every
save and delete a single-row upsert: concurrent workers never rewrite each other's lists.
A registry that refuses writes (read-only, unreachable) loses the examples, never the test.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from typing import Iterable

from hypothesis.database import ExampleDatabase

log = logging.getLogger("pytest_robustness")

TAG_PREFIX = "robustness.hypothesis."


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


class RegisteredModelExampleDatabase(ExampleDatabase):
    """Examples of cell ``cell`` stored as tags of registered model ``model_name`` (``client``: an MlflowClient)."""

    def __init__(self, client, model_name: str, cell: str):
        super().__init__()
        self.client, self.model_name, self.cell = client, model_name, cell
        self.cell_prefix = f"{TAG_PREFIX}{_digest(cell.encode())}"
        self._named = False

    def __repr__(self) -> str:
        return f"RegisteredModelExampleDatabase({self.model_name!r}, {self.cell!r})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, RegisteredModelExampleDatabase) and other.model_name == self.model_name
                and other.cell == self.cell)

    def __hash__(self) -> int:
        return hash((self.model_name, self.cell))

    def _key_prefix(self, key: bytes) -> str:
        return f"{self.cell_prefix}.{_digest(key)}."

    def _tags(self) -> dict[str, str]:
        from mlflow.exceptions import MlflowException

        try:
            return dict(self.client.get_registered_model(self.model_name).tags)
        except MlflowException as exc:
            log.warning("Hypothesis examples of %s: cannot read registered model %s: %s", self.cell,
                        self.model_name, exc)
            return {}

    def fetch(self, key: bytes) -> Iterable[bytes]:
        prefix = self._key_prefix(key)
        found = [value for name, value in sorted(self._tags().items()) if name.startswith(prefix)]
        return [base64.b64decode(v) for v in found]

    def save(self, key: bytes, value: bytes) -> None:
        from mlflow.exceptions import MlflowException

        try:
            if not self._named:
                self.client.set_registered_model_tag(self.model_name, self.cell_prefix, self.cell[:5000])
                self._named = True
            self.client.set_registered_model_tag(self.model_name, self._key_prefix(key) + _digest(value),
                                                 base64.b64encode(value).decode())
        except MlflowException as exc:
            log.warning("Hypothesis example of %s not saved on %s: %s", self.cell, self.model_name, exc)

    def delete(self, key: bytes, value: bytes) -> None:
        from mlflow.exceptions import MlflowException

        name = self._key_prefix(key) + _digest(value)
        try:
            self.client.delete_registered_model_tag(self.model_name, name)
        except MlflowException:
            pass  # not there (already deleted by another worker) or not writable: nothing to undo


def stored_examples(client, model_name: str, cell: str) -> int:
    """How many examples (all keys) the registry holds for ``cell`` of ``model_name``."""
    prefix = f"{TAG_PREFIX}{_digest(cell.encode())}."
    tags = client.get_registered_model(model_name).tags
    return sum(1 for name in tags if name.startswith(prefix))
