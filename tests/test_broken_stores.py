"""A tracking store that cannot be used fails the session in one line, before MLflow touches it.

Each case is a real file (or server) as users meet them: a half-copied ``mlflow.db``, a store of an older
or newer MLflow, another program's SQLite database, a read-only filesystem, a server refusing our
credentials. Each gives one line naming the store and what to do, exit code 4, nothing created, and the
file's bytes unchanged (MLflow would have created tables in it or migrated it).
"""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from mlflow.store.db.utils import _get_alembic_config
from mlflow.tracking import MlflowClient

from helpers import FGM_SUITE, TINY, tmpfs

CREATED = ("mlruns", "mlartifacts", ".robustness_cache")


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory) -> Path:
    """A real, current MLflow sqlite store (tables, alembic_version at the installed MLflow's head)."""
    path = tmp_path_factory.mktemp("valid-store") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments(max_results=1)
    return path


def at_revision(source: Path, target: Path, revision: str) -> Path:
    shutil.copyfile(source, target)
    with sqlite3.connect(target) as connection:
        connection.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    connection.close()
    return target


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def head_revision() -> tuple[str, str]:
    script = ScriptDirectory.from_config(_get_alembic_config(""))
    head = script.get_revision(script.get_current_head())
    return head.revision, head.down_revision


def fails_in_one_line(pytester: pytest.Pytester, store: Path | None, args: tuple[str, ...], expected: str) -> None:
    """One line holding ``expected``, exit code 4, nothing created, ``store``'s bytes unchanged."""
    before = digest(store) if store is not None and store.is_file() else None
    pytester.makepyfile(test_suite=FGM_SUITE)
    result = pytester.runpytest(*TINY, *args)
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output
    lines = [line for line in result.outlines + result.errlines if expected in line]
    assert len(lines) == 1, (expected, output)
    assert "Traceback" not in output and "sqlalchemy" not in output.lower()
    for name in CREATED:
        assert not (pytester.path / name).exists(), name
    assert not [p for p in pytester.path.rglob("*.db") if p != store]
    if before is not None:
        assert digest(store) == before


def test_not_a_database_given_by_mlflow_uri(pytester):
    store = pytester.path / "runs.db"
    store.write_bytes(b"PK\x03\x04 half of a zip that was copied here" * 40)
    fails_in_one_line(pytester, store, ("--mlflow-uri", f"sqlite:///{store}"),
                      f"ERROR: --mlflow-uri sqlite:///{store}: not an SQLite database (file is not a database); "
                      "move the file away or give another --mlflow-uri")


def test_not_a_database_as_the_default_store(pytester):
    """The default ``mlflow.db`` of the working directory is checked when the first robustness test needs it."""
    store = pytester.path / "mlflow.db"
    store.write_bytes(b"\x00garbage\xff" * 500)
    fails_in_one_line(pytester, store, (), f"default tracking URI sqlite:///{store}: not an SQLite database")


def test_an_older_mlflow_schema_asks_for_mlflow_db_upgrade(pytester, mlflow_store):
    _, previous = head_revision()
    store = at_revision(mlflow_store, pytester.path / "old.db", previous)
    fails_in_one_line(pytester, store, ("--mlflow-uri", f"sqlite:///{store}"),
                      "its MLflow schema is older than MLflow ")
    pytester.makepyfile(test_suite=FGM_SUITE)
    line = next(line for line in pytester.runpytest(*TINY, "--mlflow-uri", f"sqlite:///{store}").errlines
                if line.startswith("ERROR:"))
    assert line.endswith(f"back the file up, then run: mlflow db upgrade sqlite:///{store}"), line


def test_a_newer_mlflow_schema_is_named(pytester, mlflow_store):
    store = at_revision(mlflow_store, pytester.path / "new.db", "0123456789ab")
    fails_in_one_line(pytester, store, ("--mlflow-uri", f"sqlite:///{store}"),
                      "its MLflow schema (revision 0123456789ab) is unknown to MLflow ")


def test_another_programs_sqlite_database(pytester):
    store = pytester.path / "mlflow.db"
    with sqlite3.connect(store) as connection:
        connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    connection.close()
    fails_in_one_line(pytester, store, ("--mlflow-uri", f"sqlite:///{store}"),
                      "an SQLite database, but not an MLflow tracking store (tables notes, no alembic_version)")


def test_a_folder_named_like_the_store(pytester):
    folder = pytester.path / "mlflow.db"
    folder.mkdir()
    fails_in_one_line(pytester, folder, (), "mlflow.db: is a folder, not an SQLite file")
    assert not any(folder.iterdir())


def test_an_unreadable_file(pytester, mlflow_store):
    if os.geteuid() == 0:
        pytest.skip("root reads any file: permissions cannot make one unreadable")
    store = pytester.path / "locked.db"
    shutil.copyfile(mlflow_store, store)
    store.chmod(0)
    try:
        fails_in_one_line(pytester, None, ("--mlflow-uri", f"sqlite:///{store}"), "cannot be read (permission denied)")
    finally:
        store.chmod(0o644)


@pytest.fixture
def read_only_filesystem(tmp_path):
    """A real tmpfs, remounted read-only once the store is on it (chmod would not stop root)."""
    with tmpfs(tmp_path / "ro", "4m") as mount_point:
        yield mount_point


def test_a_store_on_a_read_only_filesystem(pytester, mlflow_store, read_only_filesystem):
    store = read_only_filesystem / "mlflow.db"
    shutil.copyfile(mlflow_store, store)
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_filesystem)], check=True)
    fails_in_one_line(pytester, store, ("--mlflow-uri", f"sqlite:///{store}"),
                      "on a read-only filesystem, and MLflow writes every run to it")


class _Refusing(http.server.BaseHTTPRequestHandler):
    status = 401

    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status, reason", [(401, "Unauthorized"), (403, "Forbidden")])
def test_a_server_refusing_our_credentials(pytester, status, reason):
    handler = type("Handler", (_Refusing,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        fails_in_one_line(pytester, None, ("--mlflow-uri", uri),
                          f"ERROR: --mlflow-uri {uri}: the MLflow tracking server refused our request: "
                          f"HTTP {status} {reason} (check ")
    finally:
        server.shutdown()
