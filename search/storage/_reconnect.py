"""Riding out a database server that goes away for a while (a restart, a network blip).

Why it is built this way: docs/internals.md, "search/storage/_reconnect.py".
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from typing import Any, Callable, Iterator, TypeVar

import optuna
import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage

from .._env import RECONNECT_ENV
from .._optuna_private import backend_of
from .._signals import active_interrupt
from ._open import StorageError, _reason, open_storage, redact

_logger = logging.getLogger("digitune")
T = TypeVar("T")

RECONNECT_SECONDS = 300.0
FIRST_PAUSE, LONGEST_PAUSE = 0.5, 5.0


class StorageUnreachable(StorageError):
    """The database stayed unreachable past the reconnect deadline."""


def is_connection_error(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it was raised from) says the connection to the database is gone."""
    while exc is not None:
        if isinstance(exc, sqlalchemy.exc.DBAPIError) and (
                exc.connection_invalidated or isinstance(exc, (sqlalchemy.exc.OperationalError,
                                                               sqlalchemy.exc.InterfaceError))):
            return True
        if isinstance(exc, (sqlalchemy.exc.TimeoutError, sqlalchemy.exc.PendingRollbackError)):
            return True  # no pooled connection came free; a session still holding a dropped one
        exc = exc.__cause__  # Optuna re-raises the driver's error as StorageInternalError from it
    return False


def _root(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def reconnect_seconds() -> float:
    """How long a process waits for a lost database: ``$DIGITUNE_RECONNECT_SECONDS``, else 300."""
    text = os.environ.get(RECONNECT_ENV, "").strip()
    if not text:
        return RECONNECT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise StorageError(f"${RECONNECT_ENV} must be a number of seconds, 0 or more; got {text!r} "
                           f"(unset it to wait up to {RECONNECT_SECONDS:.0f} s for a lost database)")
    return seconds


class _Local(threading.local):
    depth = 0  # inside a retried call: nested calls run once, the outer one retries them all
    passthrough = False


_local = _Local()


@contextlib.contextmanager
def passthrough() -> Iterator[None]:
    """Calls in this block (a heartbeat thread's) fail at once instead of waiting for the database."""
    _local.passthrough = True
    try:
        yield
    finally:
        _local.passthrough = False


class _Policy:
    """One storage's outage: when it began, how long to wait, and its two log lines."""

    def __init__(self, url: str, seconds: float, reset: Callable[[], None] = lambda: None):
        self.url, self.seconds, self.reset = url, seconds, reset  # reset: drop this thread's dead connection
        self.lock = threading.Lock()
        self.down_since: float | None = None
        self.retries = 0  # calls tried again so far (a claim compares it before and after)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if _local.depth or _local.passthrough:
            return fn(*args, **kwargs)
        _local.depth += 1
        try:
            attempt = 0
            while True:
                try:
                    result = fn(*args, **kwargs)
                except Exception as exc:
                    if not is_connection_error(exc):
                        raise
                    self._pause(exc, attempt)
                    attempt += 1
                    continue
                self._back()
                return result
        finally:
            _local.depth -= 1

    def _pause(self, exc: BaseException, attempt: int) -> None:
        self.reset()
        url = self.url
        with self.lock:
            now = time.monotonic()
            self.retries += 1
            if self.down_since is None:
                self.down_since = now
                _logger.warning("storage %s unreachable (%s); retrying for up to %.0f s", redact(url),
                                _reason(_root(exc), url), self.seconds)
            left = self.down_since + self.seconds - now
        if left <= 0:
            raise StorageUnreachable(
                f"storage {redact(url)} stayed unreachable for {self.seconds:.0f} s ({_reason(_root(exc), url)}); "
                f"a trial left running is failed after the heartbeat grace period and tried again; run the "
                f"command again once the database is back (${RECONNECT_ENV} sets how long to wait)") from None
        end = time.monotonic() + min(LONGEST_PAUSE, FIRST_PAUSE * 2 ** attempt, left)
        while time.monotonic() < end:
            interrupt = active_interrupt()
            if interrupt is not None:
                interrupt.check()  # Ctrl-C while waiting stops the run as it would anywhere else
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))

    def _back(self) -> None:
        if self.down_since is None:
            return
        with self.lock:
            if self.down_since is not None:
                _logger.warning("storage %s reachable again after %.0f s", redact(self.url),
                                time.monotonic() - self.down_since)
                self.down_since = None


class ReconnectingRDBStorage(RDBStorage):
    """Optuna's RDB storage whose database calls wait out a lost connection (see the module)."""

    _reconnect: _Policy

    def set_trial_state_values(self, trial_id: int, state: optuna.trial.TrialState,
                               values: Any = None) -> bool:
        tries = []

        def once() -> bool:
            tries.append(1)
            try:
                return RDBStorage.set_trial_state_values(self, trial_id, state, values)
            except UpdateFinishedTrialError:
                if len(tries) > 1 and RDBStorage.get_trial(self, trial_id).state == state:
                    return True  # the attempt whose reply was lost had stored it
                raise

        return self._reconnect.call(once)


def _retrying(name: str) -> Callable:
    method = getattr(RDBStorage, name)

    @functools.wraps(method)
    def call(self: ReconnectingRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return self._reconnect.call(method, self, *args, **kwargs)

    return call


# Every RDBStorage method that runs its own database transaction. The underscored ones are
# Optuna's private names, wrapped because Optuna's cache in front of the storage
# (optuna.storages._CachedStorage) calls them instead of the public ones.
_RETRIED = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name",
    "get_study_name_from_id", "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
    "get_all_studies", "create_new_trial", "_create_new_trial", "set_trial_param", "_set_trial_param",
    "get_trial_param", "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number", "get_trial_number_from_id", "get_trial", "get_all_trials",
    "_get_trials", "get_best_trial", "_get_best_trial_id", "get_trial_params", "get_trial_user_attrs",
    "get_trial_system_attrs", "get_n_trials", "record_heartbeat", "_get_stale_trial_ids",
)
for _name in _RETRIED:
    if hasattr(RDBStorage, _name):
        setattr(ReconnectingRDBStorage, _name, _retrying(_name))


def _backend(storage: optuna.storages.BaseStorage) -> Any:
    return backend_of(storage)  # a study's storage is Optuna's cache around ours


def keep_reconnecting(storage: T) -> T:
    """Make ``storage`` (an RDB storage on a database server) wait out lost connections; returns it.

    The object itself changes class, so every holder of it (a study opened earlier, Optuna's
    cache around it) waits too. SQLite, the gRPC proxy and ``$DIGITUNE_RECONNECT_SECONDS=0``
    are left as they are.
    """
    seconds = reconnect_seconds()  # a bad value is refused on every storage, not only where it matters
    backend = _backend(storage)
    if type(backend) is not RDBStorage or backend.engine.dialect.name == "sqlite":
        return storage
    if seconds > 0:
        backend.__class__ = ReconnectingRDBStorage  # a subclass adding no state of its own beyond the policy
        backend._reconnect = _Policy(backend.url, seconds, backend.remove_session)
    return storage


def open_reconnecting(url: str) -> optuna.storages.BaseStorage:
    """The storage on ``url`` for a worker or agent process digitune started, waiting for its database.

    Its parent opened ``url`` moments ago, so a server that does not answer now is an outage,
    waited for as ``keep_reconnecting`` waits later (a command a person types still fails at
    once: a mistyped URL should not wait). The storage returned reconnects.
    """
    seconds = reconnect_seconds()
    if seconds > 0 and not url.lower().startswith(("sqlite", "grpc")):  # files and the proxy: nothing to wait for
        return keep_reconnecting(_Policy(url, seconds).call(lambda: open_storage(url)))
    return keep_reconnecting(open_storage(url))


def with_retry(storage: optuna.storages.BaseStorage, fn: Callable[[], T]) -> T:
    """``fn()``, run again from the start after a lost connection when ``storage`` reconnects."""
    backend = _backend(storage)
    if isinstance(backend, ReconnectingRDBStorage):
        return backend._reconnect.call(fn)
    return fn()


def retries(storage: optuna.storages.BaseStorage) -> int:
    """How many calls ``storage`` has tried again after a lost connection (0 if it does not reconnect)."""
    backend = _backend(storage)
    return backend._reconnect.retries if isinstance(backend, ReconnectingRDBStorage) else 0


_ADOPT = sqlalchemy.text(
    "INSERT INTO trial_heartbeats (trial_id, heartbeat) SELECT t.trial_id, CURRENT_TIMESTAMP FROM trials t "
    "WHERE t.study_id = :study_id AND t.state = 'RUNNING' "
    "AND NOT EXISTS (SELECT 1 FROM trial_heartbeats h WHERE h.trial_id = t.trial_id)")


def adopt_orphans(storage: optuna.storages.BaseStorage, study_id: int) -> None:
    """Give a first heartbeat to the study's running trials that have none (see the module).

    A live worker's new trial gets its own within a second anyway; one that no worker holds
    then goes stale and is failed after the grace period. Written in SQL on Optuna's
    ``trials`` and ``trial_heartbeats`` tables: its API cannot list trials without heartbeats.
    """
    backend = _backend(storage)

    def insert() -> None:
        with backend.engine.begin() as conn:
            conn.execute(_ADOPT, {"study_id": study_id})

    with_retry(storage, insert)
