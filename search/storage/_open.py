"""Where studies live: one function resolves the URL, one opens the storage on it.

The database stays a plain Optuna database, so the ``optuna`` CLI and optuna-dashboard
open it too. SQLite files get WAL journaling and a busy timeout so several local workers
can share one; a ``postgresql+psycopg://`` URL serves workers on many machines; a
``grpc://host:port`` URL reaches Optuna's gRPC storage proxy (``digitune storage-proxy``),
which serves hundreds of workers over one database.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from pathlib import Path

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from .._env import GRACE_ENV, HEARTBEAT_ENV, STORAGE_ENV
from ._setup import NotAStudyDatabase, check_existing, create_with_retry, refuse_foreign_sqlite, schema_lock

DEFAULT_STORAGE = "sqlite:///studies/digitune.db"
HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 60
SQLITE_BUSY_TIMEOUT = 60
CONNECT_TIMEOUT = 10  # seconds to reach a database server (or the gRPC proxy) before giving up
POOL_RECYCLE_SECONDS = 1800  # reopen pooled connections before firewalls or servers drop idle ones
# The driver's name for its connect timeout (libpq's and MySQL's connect_timeout, pg8000's timeout).
TIMEOUT_ARGUMENT = {"psycopg": "connect_timeout", "psycopg2": "connect_timeout", "pg8000": "timeout",
                    "pymysql": "connect_timeout", "mysqldb": "connect_timeout"}
# libpq: unacknowledged data fails the connection after 30 s; an idle one is probed after 30 s (search/storage/_reconnect.py).
LIBPQ_DEAD_LINK = {"tcp_user_timeout": 30000, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                   "keepalives_count": 3}
GRPC_SCHEME = "grpc"
GRPC_DEFAULT_PORT = 13000


class StorageError(RuntimeError):
    """A storage URL that cannot be used; the message hides any password."""


class NoStudyDatabaseError(StorageError):
    """Nothing there yet for a command that only reads: no SQLite file, or a server database without tables."""


def resolve_storage_url(cli_value: str | None = None) -> str:
    """The storage URL by precedence: command line, then ``$DIGITUNE_STORAGE``, then the default."""
    for value in (cli_value, os.environ.get(STORAGE_ENV)):
        if value and value.strip():
            value = value.strip()
            if "://" not in value:  # a bare path means a SQLite file
                _refuse_mistyped_url(value)
                return f"sqlite:///{value}"
            return value
    return DEFAULT_STORAGE


# A value without "://" that is a URL with a typo, not a file path: "scheme:/rest" or "user:password@host".
_MISTYPED_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/(?!/)|^[^/@]*:[^/@]*@")


def _refuse_mistyped_url(value: str) -> None:
    """Refuse a storage value that looks like a mistyped URL (it may hold a password: it is not echoed)."""
    if _MISTYPED_URL.search(value):
        raise StorageError("the storage given looks like a database URL with a typo (not shown: it may hold a "
                           "password), not a SQLite file path; write it as SCHEME://user:password@host/db, e.g. "
                           "postgresql+psycopg://me@db.example/studies, or give a file path")


def redact(url: str) -> str:
    """``url`` with its whole password, if any, replaced by ``***`` (also a ``password=`` query value)."""
    scheme, sep, rest = url.partition("://")
    if not sep:  # not a URL: keep only what follows the last @, if any
        return url.rsplit("@", 1)[-1]
    url = f"{scheme}://" + re.sub(r"([?&]password=)[^&]*", r"\1***", rest, flags=re.IGNORECASE)
    parts = _split_password(url)
    return url if parts is None else f"{parts[0]}:***@{parts[2]}"


def _split_password(url: str) -> tuple[str, str, str] | None:
    """``(scheme://user, password, host...)`` of a URL with a password, as typed; None without one.

    Split by hand, not by SQLAlchemy's parser: userinfo ends at the LAST ``@`` (SQLAlchemy
    stops at the first, so ``u:Secr3t@Pw@host`` kept ``Pw`` in sight). A user name has no
    ``:``, ``/``, ``?``, ``#`` or ``@``; the password may hold anything.
    """
    scheme, _, rest = url.partition("://")
    user_end = re.search(r"[:/?#@]", rest)
    if user_end is None or user_end.group() != ":" or "@" not in rest[user_end.end():]:
        return None  # no password in the userinfo (none, or a user name alone)
    password, _, host = rest[user_end.end():].rpartition("@")
    return f"{scheme}://{rest[:user_end.start()]}", password, host


def grpc_address(url: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``grpc://host[:port]`` URL (port 13000 by default); None for any other URL.

    An IPv6 host keeps its brackets (``grpc://[::1]:13000`` gives ``("[::1]", 13000)``), as gRPC wants it.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != GRPC_SCHEME:
        return None
    address = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    if address.startswith("["):  # [ipv6]:port
        host, _, tail = address[1:].partition("]")
        port_text = tail.removeprefix(":")
    else:
        host, _, port_text = address.partition(":")
    try:
        port = int(port_text) if port_text else GRPC_DEFAULT_PORT
    except ValueError:
        raise StorageError(f"storage URL {redact(url)!r} has a bad port {port_text!r}; "
                           f"use grpc://HOST:PORT, e.g. grpc://127.0.0.1:{GRPC_DEFAULT_PORT}") from None
    if not host or not 0 < port < 65536:
        raise StorageError(f"storage URL {redact(url)!r} needs a host and a port from 1 to 65535; "
                           f"use grpc://HOST:PORT, e.g. grpc://127.0.0.1:{GRPC_DEFAULT_PORT}")
    return (f"[{host}]" if ":" in host else host), port  # gRPC wants an IPv6 address in brackets


def read_storage(storage: str | None = None) -> optuna.storages.BaseStorage:
    """The storage of a command or call that only reads: ``storage`` (a URL or a path; None:
    ``$DIGITUNE_STORAGE``, then the default) opened without heartbeats, creating and changing nothing."""
    return open_storage(resolve_storage_url(storage), heartbeat=False, create=False)


def open_storage(url: str, *, heartbeat: bool = True, create: bool = True) -> optuna.storages.BaseStorage:
    """The storage on ``url``, created if new (``create``); ``StorageError`` if it cannot be used.

    A database URL gives Optuna's RDB storage. With ``heartbeat``, its running trials send
    a heartbeat; one whose worker died is marked failed after the grace period and its
    parameters are tried again. With ``create=False`` (commands that only read) nothing is
    created or changed: a missing file or a database without Optuna's tables is refused.
    A ``grpc://host:port`` URL gives Optuna's gRPC storage proxy client; heartbeats are an
    RDB-storage feature, so trials run through the proxy send none.
    """
    address = grpc_address(url)
    if address is not None:
        return _open_grpc(url, *address)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StorageError(f"storage URL {redact(url)!r} is not a database URL; use sqlite:///path/to/file.db, "
                           f"postgresql+psycopg://user@host/db or grpc://host:port") from exc
    if "@" in (_split_password(url) or ("", "", ""))[1]:  # SQLAlchemy would take the rest for the host
        raise StorageError(f"storage URL {redact(url)!r} has an '@' in its password; write it as %40 "
                           f"(percent-encode the password, e.g. with urllib.parse.quote(password, safe=''))")
    backend = parsed.get_backend_name()
    engine_kwargs = _engine_kwargs(parsed)
    connect_args = engine_kwargs.get("connect_args", {})
    try:
        if create:
            _make_sqlite_folder(url, parsed)
            if backend == "sqlite":
                refuse_foreign_sqlite(parsed.database or "")
        else:
            check_existing(url, parsed, connect_args)
        with warnings.catch_warnings():  # heartbeats are marked experimental; we rely on them knowingly
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            kwargs = dict(engine_kwargs=engine_kwargs, skip_table_creation=not create, **_heartbeat_kwargs(heartbeat))
            with schema_lock(url, parsed, connect_args) if create else contextlib.nullcontext():
                storage = create_with_retry(lambda: optuna.storages.RDBStorage(url, **kwargs))
    except NotAStudyDatabase as exc:
        raise (NoStudyDatabaseError if exc.empty else StorageError)(f"storage {redact(url)} {exc}") from None
    except (SQLAlchemyError, ImportError, ModuleNotFoundError) as exc:
        raise StorageError(f"cannot open storage {redact(url)}: {_reason(exc, url)}") from exc
    except StorageError:
        raise
    except RuntimeError as exc:  # Optuna's schema-version check
        raise StorageError(_schema_message(url, parsed.password is not None, str(exc))) from exc
    if backend == "sqlite" and create:
        with storage.engine.connect() as conn:
            conn.execute(sqlalchemy.text("PRAGMA journal_mode=WAL"))
    return storage


def _make_sqlite_folder(url: str, parsed) -> None:
    """Create the folder of a new SQLite file (``StorageError`` if it cannot be made)."""
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return
    if database.endswith(("/", os.sep)) or Path(database).expanduser().is_dir():
        raise StorageError(f"storage {redact(url)} names a folder, not a database file; give a file in it, "
                           f"e.g. sqlite:///{database.rstrip('/')}/digitune.db")
    folder = Path(database).expanduser().parent
    if not folder.exists():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the folder {folder} for storage {redact(url)}: "
                               f"{exc.strerror}") from exc


def _engine_kwargs(parsed) -> dict:
    """SQLAlchemy engine options: SQLite's busy timeout; a server's connect timeout and pool checks."""
    if parsed.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT}}
    # A connection dropped by the server or a firewall is replaced rather than failing a trial.
    engine_kwargs: dict = dict(pool_pre_ping=True, pool_recycle=POOL_RECYCLE_SECONDS)
    try:
        driver = parsed.get_driver_name()
    except (SQLAlchemyError, ImportError):  # an unknown dialect: RDBStorage reports it
        driver = None
    connect_args: dict = {}
    timeout_key = TIMEOUT_ARGUMENT.get(driver)
    if timeout_key and timeout_key not in parsed.query:
        # A dead host fails after CONNECT_TIMEOUT seconds instead of hanging; the URL's own value wins.
        connect_args[timeout_key] = CONNECT_TIMEOUT
    if driver in ("psycopg", "psycopg2") and "application_name" not in parsed.query:
        connect_args["application_name"] = "digitune"  # how our connections show in pg_stat_activity
    if driver in ("psycopg", "psycopg2"):  # a link cut under a connection fails in seconds, not TCP's 15 min
        connect_args.update({k: v for k, v in LIBPQ_DEAD_LINK.items() if k not in parsed.query})
    if connect_args:
        engine_kwargs["connect_args"] = connect_args
    return engine_kwargs


def _heartbeat_kwargs(heartbeat: bool) -> dict:
    """RDBStorage's heartbeat options: a stale trial is failed after the grace period and retried."""
    if not heartbeat:
        return {}
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)
    return dict(heartbeat_interval=int(os.environ.get(HEARTBEAT_ENV, HEARTBEAT_SECONDS)),
                grace_period=int(os.environ.get(GRACE_ENV, GRACE_SECONDS)),
                heartbeat_stale_trial_callback=retry)


def _reason(exc: BaseException, url: str) -> str:
    """The first line of the driver's own message, with the password scrubbed out just in case."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    text = reason[0] if reason else type(exc).__name__
    try:
        password = make_url(url).password
    except (ArgumentError, ValueError):
        password = None
    return text.replace(str(password), "***") if password else text


def _schema_message(url: str, has_password: bool, optuna_message: str) -> str:
    """Optuna refused the database's schema version: say which way it is off and how to fix it."""
    shown = redact(url)
    if "optuna storage upgrade" in optuna_message:
        fill_in = " (with the real password for ***)" if has_password else ""
        return (f"storage {shown} has an older Optuna schema than this Optuna ({optuna.__version__}) uses; "
                f"back it up, then upgrade it with `optuna storage upgrade --storage {shown}`{fill_in}")
    if "pip install -U optuna" in optuna_message:
        return (f"storage {shown} was set up by a newer Optuna than this one ({optuna.__version__}); "
                f"upgrade Optuna with `pip install -U optuna`")
    return f"storage {shown}: {optuna_message.strip().splitlines()[0]}"


def _open_grpc(url: str, host: str, port: int) -> optuna.storages.BaseStorage:
    """Optuna's gRPC storage proxy client, once the proxy answers (``StorageError`` if it does not)."""
    try:
        import grpc  # noqa: F401  (Optuna imports it lazily; a missing package should fail here, clearly)
        import google.protobuf  # noqa: F401
    except ImportError as exc:
        raise StorageError(f"cannot open storage {redact(url)}: the gRPC storage proxy needs the grpcio and "
                           f"protobuf packages (pip install grpcio protobuf)") from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.GrpcStorageProxy(host=host, port=port)
    try:
        storage.wait_server_ready(timeout=CONNECT_TIMEOUT)
    except ConnectionError as exc:
        storage.close()
        raise StorageError(f"cannot open storage {redact(url)}: no storage proxy answered at {host}:{port} within "
                           f"{CONNECT_TIMEOUT} s; start one with `digitune storage-proxy --storage URL "
                           f"--host HOST --port {port}`") from exc
    return storage
