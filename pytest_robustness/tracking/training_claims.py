"""Claims in the model registry, so two machines sharing a tracking server never train the same model.

The file lock of ``models.registered.find_or_train`` covers one machine's xdist
workers. Across machines the claim lives in the registry: before training, a
session creates the registered model ``{name}.training-claim.{digest}``
(creating a registered model is atomic: of two sessions racing, one gets
RESOURCE_ALREADY_EXISTS), tagged with its owner and a heartbeat it refreshes
while it trains, and deletes it once the trained version is registered and
tagged. Another session that needs the same model waits until the version is
READY and reuses it, or takes the claim over when its owner stopped beating
(crashed, killed) or, on the same machine, no longer runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .orphans import OWNER_TAG, owner_gone, owner_tag

log = logging.getLogger("pytest_robustness")

CLAIM_TAG = "robustness.training_claim"  # JSON: the model and digest being trained
HEARTBEAT_TAG = "robustness.heartbeat"  # seconds since the epoch, refreshed while training
HEARTBEAT_S = 10.0
STALE_AFTER_S = 120.0  # a claim whose heartbeat is older was left by a session that died
POLL_S = 1.0


def claim_name(name: str, digest: str) -> str:
    return f"{name}.training-claim.{digest}"


@dataclass
class Claim:
    """Who holds a claim, as read from the registry."""

    owner: str
    heartbeat: float

    @property
    def age(self) -> float:
        return time.time() - self.heartbeat

    def stale(self, stale_after: float) -> bool:
        return self.age > stale_after or owner_gone(self.owner)


def read_claim(client, name: str) -> Claim | None:
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_registered_model(name).tags
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    try:
        heartbeat = float(tags.get(HEARTBEAT_TAG, "0"))
    except ValueError:
        heartbeat = 0.0
    return Claim(tags.get(OWNER_TAG, ""), heartbeat)


def _create(client, name: str, model: str, digest: str) -> str | None:
    """Our owner string if we now hold the claim; None if someone else does."""
    from mlflow.exceptions import MlflowException

    owner = owner_tag().get(OWNER_TAG) or f"unknown/{id(client)}/{time.time()}"
    try:
        client.create_registered_model(
            name, tags={CLAIM_TAG: json.dumps({"model": model, "digest": digest}), OWNER_TAG: owner,
                        HEARTBEAT_TAG: f"{time.time():.3f}"},
            description=f"pytest-robustness: {model} (training digest {digest}) is being trained; "
                        "deleted when its version is registered")
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_ALREADY_EXISTS":
            return None
        raise
    return owner


def _release(client, name: str, owner: str) -> None:
    """Delete the claim if it is still ours (a taker-over may hold it now)."""
    with contextlib.suppress(Exception):
        held = read_claim(client, name)
        if held is not None and held.owner == owner:
            client.delete_registered_model(name)


class _Heartbeat(threading.Thread):
    def __init__(self, tracking_uri: str, name: str, every: float):
        super().__init__(name=f"robustness-heartbeat-{name}", daemon=True)
        self.tracking_uri, self.claim, self.every = tracking_uri, name, every
        self.stopped = threading.Event()

    def run(self) -> None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(self.tracking_uri)  # its own: the session's client is not shared across threads
        while not self.stopped.wait(self.every):
            with contextlib.suppress(Exception):  # a missed beat is retried at the next one
                client.set_registered_model_tag(self.claim, HEARTBEAT_TAG, f"{time.time():.3f}")


@contextlib.contextmanager
def training_claim(client, model: str, digest: str, find: Callable[[], Any], *,
                   stale_after: float = STALE_AFTER_S, heartbeat: float = HEARTBEAT_S,
                   poll: float = POLL_S) -> Iterator[Any]:
    """Yields what ``find()`` returns once another session registered the model, or None when
    this session holds the claim and must train (the claim is released when the block ends)."""
    name = claim_name(model, digest)
    waited_for = None
    while True:
        found = find()
        if found is not None:
            yield found
            return
        owner = _create(client, name, model, digest)
        if owner is not None:
            break
        held = read_claim(client, name)
        if held is None:
            continue  # released between our two calls: look again
        if held.stale(stale_after):
            log.warning("taking over the claim on training %s (digest %s): its owner %s %s", model, digest,
                        held.owner, "no longer runs" if owner_gone(held.owner) else
                        f"has not beaten for {held.age:.0f} s")
            current = read_claim(client, name)
            if current is not None and current.owner == held.owner:
                with contextlib.suppress(Exception):
                    client.delete_registered_model(name)
            continue
        if waited_for != held.owner:
            log.warning("waiting for %s (digest %s): %s is training it (registry claim %s)", model, digest,
                        held.owner, name)
            waited_for = held.owner
        time.sleep(poll)
    beat = _Heartbeat(client.tracking_uri, name, heartbeat)
    try:
        found = find()  # registered between our look and our claim: nothing to train
        if found is not None:
            yield found
            return
        beat.start()
        yield None
    finally:
        beat.stopped.set()
        if beat.is_alive():
            beat.join(5)
        _release(client, name, owner)
