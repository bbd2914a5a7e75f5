"""Handing out a study's trials to many workers: the claim lock, heartbeats and stale trials.

Workers of one study count its running and finished trials and create the next one under
a lock they all share, so together they finish exactly the target. A running trial sends a
heartbeat every few seconds; one whose worker died (or lost the database for longer than
the grace period) is failed with that reason by the next worker to claim, and Optuna
queues its parameters again. Lost database connections are waited out (``_reconnect``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import warnings
from typing import Iterator

import optuna
import sqlalchemy
from optuna.trial import TrialState

from ._beat import Beat
from ._optuna_private import backend_of, stale_trial_ids, storage_of, study_id
from ._schema import FAIL_ATTR
from .storage._reconnect import adopt_orphans, is_connection_error, retries, with_retry

_logger = logging.getLogger("digitune")
_COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
MIN_LOCK_IDLE_SECONDS = 30
STALE_REASON = "no heartbeat for {grace} s: its worker died or could not reach the database; tried again"


def heartbeat_enabled(storage: optuna.storages.BaseStorage) -> bool:
    """Whether ``storage`` records heartbeats (an RDB storage opened with a heartbeat interval)."""
    return getattr(storage, "get_heartbeat_interval", lambda: None)() is not None


class Heartbeat:
    """Records the running trial's heartbeat every few seconds (RDB storages), as ``Study.optimize`` does."""

    def __init__(self, storage: optuna.storages.BaseStorage, study: optuna.Study, trial: optuna.Trial):
        self.storage, self.study, self.trial = storage, study, trial
        self.beat: Beat | None = None

    def __enter__(self) -> "Heartbeat":
        if heartbeat_enabled(self.storage):
            study_id = self.storage.get_study_id_from_name(self.study.study_name)
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, self.trial.number)
            interval = self.storage.get_heartbeat_interval() or 60
            self.beat = Beat(lambda: self.storage.record_heartbeat(trial_id), lambda: interval,
                             name="digitune-heartbeat", now=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.beat is not None:
            self.beat.stop()


def fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's ``fail_stale_trials``, with the reason recorded on each trial it fails.

    Written out (on Optuna's ``_get_stale_trial_ids``, its heartbeat API's own listing)
    because a failed trial can no longer take a user attribute: the reason goes on first.
    """
    storage = storage_of(study)
    reason = STALE_REASON.format(grace=getattr(backend_of(storage), "grace_period", None))
    failed = []
    for trial_id in stale_trial_ids(storage, study):
        try:
            storage.set_trial_user_attr(trial_id, FAIL_ATTR, reason)
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                failed.append(trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # its worker finished it after all, or another worker failed it first
    callback = storage.get_heartbeat_stale_trial_callback()
    for trial_id in failed:
        trial = storage.get_trial(trial_id)
        _logger.warning("%s: trial %d failed: %s", study.study_name, trial.number, reason)
        # The retry copies the failed trial's user attributes: not its fail reason, which is not the retry's.
        trial.user_attrs = {k: v for k, v in trial.user_attrs.items() if k != FAIL_ATTR}
        if callback is not None:
            with warnings.catch_warnings():  # Optuna marks the retry callback experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                callback(study, trial)


def is_stale_failure(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether ``trial`` was failed by ``fail_stale_trials`` (its worker sent no heartbeat)."""
    reason = STALE_REASON.split("{")[0]
    return trial.state == TrialState.FAIL and str(trial.user_attrs.get(FAIL_ATTR, "")).startswith(reason)


@contextlib.contextmanager
def study_lock(storage: optuna.storages.BaseStorage, study_name: str) -> Iterator[None]:
    """The lock that workers of ``study_name`` take to claim trials; also guards its queue state."""
    with SlotLock(storage, study_name) as slots, slots.locked():
        yield


class SlotLock:
    """Hands out trials so that a study never holds more than its target of running and finished ones.

    Counting the running and finished trials and creating the next one happens under a lock
    that all workers of the study share: a PostgreSQL advisory lock, or a file lock beside a
    SQLite database. So N workers finish exactly the requested number of trials; a trial that
    fails frees its slot for another. Storages without such a lock (a gRPC proxy) count
    without it, and may overshoot by the trials that start at the same moment.
    """

    def __init__(self, storage: optuna.storages.BaseStorage, study_name: str):
        self.storage = storage
        self.key = int.from_bytes(hashlib.blake2b(study_name.encode(), digest_size=8).digest(), "big", signed=True)
        self.lock_file = None
        engine = getattr(storage, "engine", None)
        self.dialect = engine.dialect.name if engine is not None else None
        if self.dialect == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            # One file reached by two paths (a symlink, a relative path) must give one lock.
            database = os.path.realpath(os.path.expanduser(engine.url.database))
            self.lock_path = f"{database}.digitune-{self.key & 0xFFFFFFFF:08x}.lock"
        else:
            self.lock_path = None

    def __enter__(self) -> "SlotLock":
        if self.lock_path is not None:
            self.lock_file = open(self.lock_path, "a+")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.lock_file is not None:
            self.lock_file.close()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        if self.lock_file is not None:
            fcntl.flock(self.lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self.lock_file, fcntl.LOCK_UN)
        elif self.dialect == "postgresql":
            with self._advisory_lock():
                yield
        else:
            yield

    @contextlib.contextmanager
    def _advisory_lock(self) -> Iterator[None]:
        """PostgreSQL's advisory lock on the study, held by a connection of its own.

        A holder cut off from the server would keep the lock until the server noticed, hours
        later; so the server ends the holding session once it has been idle for the grace
        period (``idle_in_transaction_session_timeout``), and the lock with it. A lock lost
        with its connection needs no unlocking.
        """
        idle = max(MIN_LOCK_IDLE_SECONDS, getattr(self.storage, "grace_period", None) or 0)

        def acquire() -> sqlalchemy.Connection:
            conn = self.storage.engine.connect()
            try:
                conn.execute(sqlalchemy.text("SELECT set_config('idle_in_transaction_session_timeout', :ms, true)"),
                             {"ms": str(int(idle * 1000))})
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": self.key})
            except BaseException:
                conn.close()
                raise
            return conn

        conn = with_retry(self.storage, acquire)
        try:
            yield
        finally:
            try:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
                conn.commit()
            except sqlalchemy.exc.SQLAlchemyError as exc:
                if not is_connection_error(exc):
                    raise
            finally:
                conn.close()

    @property
    def heartbeats(self) -> bool:
        return heartbeat_enabled(self.storage)

    @property
    def patience(self) -> float:
        """How long to wait for others' running trials: past the grace period they are failed, or never will be."""
        grace = getattr(self.storage, "grace_period", None) or 0
        interval = getattr(self.storage, "heartbeat_interval", None) or 0
        return grace + 3 * interval + 5

    def claim(self, study: optuna.Study, target: int) -> optuna.Trial | None:
        """A new (or queued) trial if the study has room for one, else None.

        After a lost connection the whole claim runs again, lock and count included. An
        attempt whose new trial was stored but whose reply was lost leaves that trial
        running, unheld: ``adopt_orphans`` lets the grace period fail it.
        """
        if self.heartbeats:
            fail_stale_trials(study)  # a dead worker's trial: failed, and queued again

        def once() -> optuna.Trial | None:
            with self.locked():
                if len(study.get_trials(deepcopy=False, states=_COUNTED)) >= target:
                    return None
                with warnings.catch_warnings():  # Optuna warns that heartbeats suit Study.optimize; we beat
                    warnings.simplefilter("ignore", UserWarning)
                    return study.ask()

        before = retries(self.storage)
        trial = with_retry(self.storage, once)
        if retries(self.storage) != before and self.heartbeats:
            adopt_orphans(self.storage, study_id(study))
        return trial
