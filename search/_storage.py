"""Where studies live: one function resolves the URL, one opens Optuna's RDB storage on it.

The database stays a plain Optuna database, so the ``optuna`` CLI and optuna-dashboard
open it too. SQLite files get WAL journaling and a busy timeout so several local workers
can share one; a ``postgresql+psycopg://`` URL serves workers on many machines.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

DEFAULT_STORAGE = "sqlite:///studies/digitune.db"
STORAGE_ENV = "DIGITUNE_STORAGE"
HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 60
SQLITE_BUSY_TIMEOUT = 60


class StorageError(RuntimeError):
    """A storage URL that cannot be used; the message hides any password."""


def resolve_storage_url(cli_value: str | None = None) -> str:
    """The storage URL by precedence: command line, then ``$DIGITUNE_STORAGE``, then the default."""
    for value in (cli_value, os.environ.get(STORAGE_ENV)):
        if value and value.strip():
            value = value.strip()
            if "://" not in value:  # a bare path means a SQLite file
                return f"sqlite:///{value}"
            return value
    return DEFAULT_STORAGE


def redact(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return url.split("@")[-1] if "@" in url else url


def open_storage(url: str, *, heartbeat: bool = True) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage on ``url``, created if new; ``StorageError`` if it cannot be reached.

    With ``heartbeat``, running trials send a heartbeat; one whose worker died is marked
    failed after the grace period and its parameters are tried again.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StorageError(f"storage URL {redact(url)!r} is not a database URL; use sqlite:///path/to/file.db "
                           f"or postgresql+psycopg://user@host/db") from exc
    engine_kwargs: dict = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            folder = Path(database).expanduser().parent
            if not folder.exists():
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StorageError(f"cannot create the folder {folder} for storage {redact(url)}: "
                                       f"{exc.strerror}") from exc
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT}
    else:
        engine_kwargs["pool_pre_ping"] = True
    heartbeat_kwargs: dict = {}
    if heartbeat:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)
        heartbeat_kwargs = dict(heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
                                heartbeat_stale_trial_callback=retry)
    try:
        with warnings.catch_warnings():  # heartbeats are marked experimental; we rely on them knowingly
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat_kwargs)
    except (SQLAlchemyError, ImportError, ModuleNotFoundError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StorageError(f"cannot open storage {redact(url)}: {reason}") from exc
    except RuntimeError as exc:  # Optuna's schema-version check
        raise StorageError(f"storage {redact(url)}: {str(exc).splitlines()[0]}") from exc
    if parsed.get_backend_name() == "sqlite":
        with storage.engine.connect() as conn:
            conn.execute(sqlalchemy.text("PRAGMA journal_mode=WAL"))
    return storage
