"""A database's first moments: creating Optuna's schema once, and refusing what is not a study database.

``open_storage`` creates Optuna's tables on a new database. Several processes doing that at
once race (two ``CREATE TABLE``s, two version rows), so on PostgreSQL the creation runs under
an advisory lock, and on every backend the loser of exactly that race tries again. Commands
that only read open nothing new: ``check_existing`` refuses a missing SQLite file, a file that
is not SQLite, and a database without Optuna's tables, before anything touches them.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

# pg_advisory_lock's key for "creating Optuna's schema": the bytes of "digitune" as a bigint.
SCHEMA_LOCK_KEY = int.from_bytes(b"digitune", "big") & (2**63 - 1)
CREATE_ATTEMPTS = 8
# What a process that lost the race to create the schema sees; nothing else is retried.
_RACE_MARKERS = ("already exists", "UNIQUE constraint failed", "duplicate key value violates unique constraint",
                 "database is locked")
# Optuna's tables that every Optuna database has since schema v1.
OPTUNA_TABLES = ("studies", "trials", "version_info")


class NotAStudyDatabase(Exception):
    """The database a read-only command was pointed at is missing or is not an Optuna database.

    ``empty`` when there is nothing there yet (no file, or a server database without tables):
    a live reader may wait for a first study instead of giving up.
    """

    def __init__(self, message: str, *, empty: bool = False) -> None:
        super().__init__(message)
        self.empty = empty


def is_creation_race(exc: BaseException) -> bool:
    """Whether ``exc`` is another process creating the same schema at the same moment."""
    text = str(getattr(exc, "orig", None) or exc)
    return isinstance(exc, SQLAlchemyError) and any(marker in text for marker in _RACE_MARKERS)


def create_with_retry(create, *, attempts: int = CREATE_ATTEMPTS):
    """``create()``, tried again (after a short random pause) while it loses the schema-creation race."""
    for attempt in range(attempts):
        try:
            return create()
        except SQLAlchemyError as exc:
            if attempt == attempts - 1 or not is_creation_race(exc):
                raise
            time.sleep(random.uniform(0.05, 0.3) * (attempt + 1))
    raise AssertionError("unreachable")


@contextlib.contextmanager
def schema_lock(url: str, parsed: URL, connect_args: dict) -> Iterator[None]:
    """Hold PostgreSQL's advisory lock for schema creation (other backends: nothing to hold)."""
    if parsed.get_backend_name() != "postgresql":
        yield
        return
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK_KEY})
                conn.commit()
    finally:
        engine.dispose()


def check_existing(url: str, parsed: URL, connect_args: dict) -> None:
    """Raise ``NotAStudyDatabase`` unless ``url`` is an Optuna database that exists; writes nothing."""
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite_file(parsed.database or "")
        return
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            tables = set(sqlalchemy.inspect(conn).get_table_names())
            versions = (conn.execute(sqlalchemy.text("SELECT count(*) FROM version_info")).scalar()
                        if "version_info" in tables else 0)
    finally:
        engine.dispose()
    if set(OPTUNA_TABLES) <= tables and not versions:
        raise NotAStudyDatabase("is an Optuna database still being created (no schema version yet); try again "
                                "in a moment")
    if not set(OPTUNA_TABLES) <= tables:
        raise NotAStudyDatabase("holds no Optuna tables yet (no study was ever run there); check the URL, or "
                                "create a study with `digitune run` or `digitune submit`", empty=not tables)


def _check_sqlite_file(database: str) -> None:
    """The SQLite file must exist and hold Optuna's tables; it is read through a read-only handle."""
    if not database or database == ":memory:":
        raise NotAStudyDatabase("is an in-memory database, which holds no studies; give a file, "
                                "e.g. sqlite:///studies/digitune.db")
    path = Path(database).expanduser()
    if not path.exists():
        raise NotAStudyDatabase(f"names the file {path}, which does not exist; check the path, or create "
                                f"a study there with `digitune run`", empty=True)
    if not path.is_file():
        raise NotAStudyDatabase(f"names {path}, which is not a file; give a SQLite database file")
    try:
        tables, versions = _sqlite_tables(path)
    except sqlite3.DatabaseError as exc:
        if "readonly" in str(exc) or "unable to open" in str(exc):
            raise NotAStudyDatabase(f"names {path}, which cannot be read here ({exc}): SQLite needs write access "
                                    f"to the database's folder even to read a WAL-mode database; fix the "
                                    f"permissions, or copy the file somewhere writable") from None
        if "malformed" in str(exc):
            raise NotAStudyDatabase(f"names {path}, a damaged SQLite database ({exc}); restore it from a backup, "
                                    f"or try `sqlite3 {path} .recover`") from None
        raise NotAStudyDatabase(f"names {path}, which is not a SQLite database ({exc}); check the path") from None
    if not set(OPTUNA_TABLES) <= tables:
        raise NotAStudyDatabase(f"names {path}, a SQLite database without Optuna's tables (not a study "
                                f"database); check the path, it was left as it was")
    if not versions:
        raise NotAStudyDatabase(f"names {path}, an Optuna database still being created (no schema version "
                                f"yet); try again in a moment")


def _sqlite_tables(path: Path) -> tuple[set[str], int]:
    """The table names of a SQLite file and its count of Optuna version rows, read through a read-only handle."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        versions = conn.execute("SELECT count(*) FROM version_info").fetchone()[0] if "version_info" in tables else 0
    finally:
        conn.close()
    return tables, versions


def refuse_foreign_sqlite(database: str) -> None:
    """Refuse to add Optuna's tables to an existing SQLite file that holds only tables of its own."""
    path = Path(database).expanduser()
    if not database or database == ":memory:" or not path.is_file() or path.stat().st_size == 0:
        return
    try:
        tables, _ = _sqlite_tables(path)
    except sqlite3.DatabaseError:
        return  # Optuna's own open reports what is wrong with it
    if tables and not tables & set(OPTUNA_TABLES):
        raise NotAStudyDatabase(f"names {path}, a SQLite database of other tables ({', '.join(sorted(tables)[:3])}"
                                f"...), not a study database; keep studies in a file of their own: give another "
                                f"path (it was left as it was)")
