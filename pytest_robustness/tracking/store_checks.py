"""Is the tracking store usable? Checked before MLflow opens it, so a broken store costs one line.

MLflow opens a ``sqlite:///`` store by creating it, or by creating the tables it lacks and migrating an
old schema (``SqlAlchemyStore.__init__``): it would change a user's file before failing, and then every
test would fail with SQLAlchemy's error. So the file is first inspected with the ``sqlite3`` module,
read-only (``mode=ro``), and each problem is one line naming the store and what to do
(``RobustnessUsageError``, exit code 4), with nothing created and the file left byte for byte as it was:

- not an SQLite database (a half-copied artifact, another file of that name);
- a folder, or a file that cannot be read, or a read-only file, folder or filesystem (runs are written);
- an SQLite database that is not an MLflow store (tables, but no ``alembic_version``);
- an MLflow store whose schema is older than the installed MLflow's (``mlflow db upgrade``), or newer.

``http(s)`` stores are probed by ``server_health`` (a 401/403 names the credentials); other schemes are
left to MLflow.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
from importlib.metadata import version
from pathlib import Path

from filelock import FileLock

from ..errors import RobustnessUsageError
from .server_health import is_http, require_tracking_server

SQLITE_PREFIX = "sqlite:///"


def require_tracking_store(uri: str, timeout: float, source: str = "--mlflow-uri") -> None:
    """Start-up check of the tracking store at ``uri``: one line and exit code 4 if it cannot be used."""
    if is_http(uri):
        require_tracking_server(uri, timeout, source)
    elif uri.startswith(SQLITE_PREFIX):
        path = Path(uri[len(SQLITE_PREFIX):].partition("?")[0])
        with sqlite_lock(path):  # not while another process of this machine creates or migrates it
            problem = sqlite_store_problem(path)
        if problem is not None:
            raise RobustnessUsageError(f"{source} {uri}: {problem}")


def sqlite_lock(path: Path) -> FileLock:
    """The machine-wide lock under which a process creates, migrates or checks the SQLite store ``path``."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    return FileLock(str(Path(tempfile.gettempdir()) / f"robustness-sqlite-{digest}.lock"))


def sqlite_store_problem(path: Path) -> str | None:
    """What is wrong with the SQLite file at ``path`` as an MLflow store (None: usable, or not there yet)."""
    if not path.exists():
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is not None and not (parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)):
            return f"cannot be created ({parent} is not a writable folder)"
        return None
    if path.is_dir():
        return "is a folder, not an SQLite file; give the file's path (e.g. sqlite:///mlflow.db)"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied); fix its permissions or use another --mlflow-uri"
    read_only = _read_only(path)
    try:
        tables = _tables(path)
    except sqlite3.DatabaseError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return None  # another session writing it (5 s of SQLite's busy timeout passed): MLflow waits too
        if "not a database" in str(exc) or "malformed" in str(exc):
            return (f"not an SQLite database ({exc}); move the file away or give another --mlflow-uri "
                    "(MLflow would fail on every test)")
        return f"cannot be read as an SQLite database ({exc})"
    if read_only:
        return f"{read_only}, and MLflow writes every run to it; make it writable or give another --mlflow-uri"
    if not tables:
        return None  # an empty file: MLflow creates its tables in it
    if "alembic_version" not in tables:
        return (f"an SQLite database, but not an MLflow tracking store (tables {', '.join(sorted(tables)[:5])}, "
                "no alembic_version); give another --mlflow-uri")
    return _schema_problem(path)


def _read_only(path: Path) -> str | None:
    """Why SQLite could not write the file (it also writes a journal beside it), if it could not."""
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "on a read-only filesystem"
    except OSError:
        pass
    if not os.access(path, os.W_OK):
        return "read-only"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return f"in a read-only folder ({path.parent}: SQLite writes its journal beside the file)"
    return None


def _connect(path: Path) -> sqlite3.Connection:
    # read-only and immutable-safe: opening creates nothing and changes no byte of the file
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def _tables(path: Path) -> set[str]:
    connection = _connect(path)
    try:
        return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        connection.close()


def _schema_problem(path: Path) -> str | None:
    """The store's schema revision against the installed MLflow's head."""
    connection = _connect(path)
    try:
        rows = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.DatabaseError as exc:
        return None if "locked" in str(exc) or "busy" in str(exc) else f"cannot read its schema version ({exc})"
    finally:
        connection.close()
    if not rows:
        return None  # MLflow's own half-initialised store: it completes it
    revision = rows[0][0]
    head, known = _mlflow_revisions(revision)
    if head is None or revision == head:
        return None
    if known:
        return (f"its MLflow schema is older than MLflow {version('mlflow')}'s (revision {revision}, expected "
                f"{head}); back the file up, then run: mlflow db upgrade sqlite:///{path}")
    return (f"its MLflow schema (revision {revision}) is unknown to MLflow {version('mlflow')}, probably written "
            "by a newer MLflow; upgrade mlflow or give another --mlflow-uri")


def _mlflow_revisions(revision: str) -> tuple[str | None, bool]:
    """The installed MLflow's head schema revision, and whether ``revision`` is one of its (older) ones."""
    try:
        from alembic.script import ScriptDirectory
        from mlflow.store.db.utils import _get_alembic_config  # MLflow's own migration scripts
    except ImportError:
        return None, False
    script = ScriptDirectory.from_config(_get_alembic_config(""))
    heads = script.get_heads()
    if len(heads) != 1:
        return None, False
    try:
        known = script.get_revision(revision) is not None
    except Exception:  # noqa: BLE001 - alembic's errors for an unknown revision vary by version
        known = False
    return heads[0], known
