"""One in-process memo for everything a session computes once: loaded models, classifiers, attack
runs, deployments, predictions and arrays, each under a key that says what it is and what determined it."""

from __future__ import annotations

from typing import Any, Callable, Hashable


class Memo:
    """Values under keys of the form ``(kind, *what determines the value)``."""

    def __init__(self):
        self._values: dict[tuple, Any] = {}

    def once(self, key: tuple[Hashable, ...], compute: Callable[[], Any]) -> Any:
        """The value under ``key``, computed by ``compute`` the first time (a failure stores nothing)."""
        try:
            return self._values[key]
        except KeyError:
            value = self._values[key] = compute()
            return value

    def get(self, key: tuple[Hashable, ...], default: Any = None) -> Any:
        return self._values.get(key, default)

    def put(self, key: tuple[Hashable, ...], value: Any) -> None:
        self._values[key] = value

    def keys(self, kind: str) -> list[tuple]:
        """The keys of one kind, without the kind (e.g. ``keys("classifier")``)."""
        return [key[1:] for key in self._values if key[0] == kind]
