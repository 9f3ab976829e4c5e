"""Two machines sharing one store never train the same model: the claim lives in the registry.

Two pytest processes with different cache folders (so different file locks:
two machines, as far as the lock can tell) run against one store; the second
starts while the first holds its claim, waits, and reuses the version the
first registered. A claim whose owner died is taken over.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from helpers import MODEL_NAME, TINY
from pytest_robustness.models.registered import DIGEST_TAG, find_version
from pytest_robustness.tracking.orphans import OWNER_TAG
from pytest_robustness.tracking.training_claims import HEARTBEAT_TAG, claim_name, read_claim, training_claim

ONE_CELL = "def test_cell(robustness):\n    robustness.attack('fgm', eps=0.1)\n"


def _register(client, name: str, digest: str, source: str) -> None:
    """A version as find_or_train leaves it: registered, then tagged with its training digest."""
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(name, source=source)
    client.set_model_version_tag(name, version.version, DIGEST_TAG, digest)


def test_a_session_waits_for_the_claim_holder_and_reuses_its_version(store):
    client, name, digest = store.client, "claims_model", "d1"
    client.search_registered_models()  # creates the sqlite store
    find = lambda: find_version(client, name, digest)  # noqa: E731
    outcome = {}

    with training_claim(client, name, digest, find) as found:
        assert found is None  # we hold the claim: we train
        held = read_claim(client, claim_name(name, digest))
        assert held is not None and held.owner and held.age < 5

        def other_machine():
            with training_claim(client, name, digest, find, poll=0.1) as theirs:
                outcome["found"] = theirs

        waiter = threading.Thread(target=other_machine)
        waiter.start()
        time.sleep(1.0)
        assert waiter.is_alive() and "found" not in outcome  # it waits while we train
        _register(client, name, digest, (store.db.parent / "model").as_uri())
    waiter.join(10)
    assert outcome["found"] is not None and str(outcome["found"].version) == "1"
    assert read_claim(client, claim_name(name, digest)) is None  # released
    assert [str(v.version) for v in client.search_model_versions(f"name = '{name}'")] == ["1"]


@pytest.mark.parametrize("owner, heartbeat_age", [("elsewhere/pid:[1]/4242/1", 3600.0),  # another machine, silent
                                                  (None, 0.0)])  # this machine, process gone, beat just now
def test_a_stale_claim_is_taken_over(store, owner, heartbeat_age):
    client, name, digest = store.client, "claims_model", "d2"
    if owner is None:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        from pytest_robustness.tracking.orphans import owner_tag

        alive = owner_tag()[OWNER_TAG]  # this process: same machine and namespace, then a PID that ended
        owner = f"{alive.rsplit('/', 2)[0]}/{dead.pid}/1"
    client.create_registered_model(claim_name(name, digest), tags={
        OWNER_TAG: owner, HEARTBEAT_TAG: f"{time.time() - heartbeat_age:.3f}"})
    started = time.monotonic()
    with training_claim(client, name, digest, lambda: find_version(client, name, digest), stale_after=60) as found:
        assert found is None
        assert read_claim(client, claim_name(name, digest)).owner != owner  # ours now
    assert time.monotonic() - started < 10
    assert read_claim(client, claim_name(name, digest)) is None


def _session(pytester, store, cache: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", *TINY, "--train", "samples=2000", "--mlflow-uri", store.uri,
         "--robustness-cache-dir", str(pytester.path / cache), "-o", "log_cli=true", "--log-cli-level=WARNING",
         *extra, "test_cell.py"],
        cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))


def test_two_machines_train_one_model(pytester, store):
    pytester.makepyfile(test_cell=ONE_CELL)
    store.client.search_registered_models()  # the shared store exists before either machine starts
    first = _session(pytester, store, "machine-a")
    claims = lambda: [m.name for m in store.client.search_registered_models()  # noqa: E731
                      if ".training-claim." in m.name]
    deadline = time.monotonic() + 180
    while not claims() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert claims(), f"the first session never claimed the training:\n{first.communicate(timeout=300)[0]}"
    assert not store.versions()  # it has not registered yet: the second one must wait, not train
    second = _session(pytester, store, "machine-b")
    out_second, _ = second.communicate(timeout=300)
    out_first, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out_first
    assert second.returncode == 0, out_second
    assert f"waiting for {MODEL_NAME}" in out_second and "is training it (registry claim" in out_second
    assert [str(v.version) for v in store.versions()] == ["1"]
    assert len(store.training_runs()) == 1
    assert "models: 1 trained, 0 reused" in out_first
    assert "models: 0 trained, 1 reused from the registry" in out_second
    assert not claims()
