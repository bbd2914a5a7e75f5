"""The dashboard's reader: one per storage, shared by every browser session, refreshing only what changed."""

from __future__ import annotations

import argparse
import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any

from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from digitune.search import AGENTS_STUDY, NoStudyDatabaseError, read_storage, redact, resolve_storage_url

from digitune.search._optuna_private import trial_id as id_of

from ._data import StudyData, gc_paused, objectives_of, record_of, trial_alive
from ._records import study_row
from ._sql import heartbeats, read_trials


@dataclass
class _Cache:
    study_id: int
    trials: dict[int, FrozenTrial]  # by number
    records: dict[int, dict[str, Any]]
    max_trial_id: int
    version: int
    data: StudyData | None = None


class Reader:
    """Read-only access to every study in one storage, with per-study trial caches.

    Safe to share between Streamlit sessions: a lock serializes refreshes. On Optuna's RDB
    storage, trials are read with plain SELECTs over Optuna's tables (:func:`read_trials_sql`);
    ``sql=False`` reads them through Optuna's storage API instead (the same trials, slower).
    """

    def __init__(self, storage: BaseStorage | None, *, url: str | None = None, sql: bool = True):
        self.storage = storage
        self.url = url
        self.sql = sql
        self._cache: dict[str, _Cache] = {}
        self._lock = threading.RLock()
        self.reads = 0  # trials read from the storage, for tests and the benchmark

    @classmethod
    def open(cls, url: str | None = None, *, sql: bool = True) -> "Reader":
        """A reader on ``url`` (resolved like the CLI's ``--storage``), opened without heartbeats.

        Nothing is created or changed: on a SQLite file that does not exist yet, or a server
        database without Optuna's tables, the reader shows no studies until a first one is made.
        """
        url = resolve_storage_url(url)
        return cls(_open_existing(url), url=url, sql=sql)

    @property
    def display_url(self) -> str:
        return redact(self.url) if self.url else "(in memory)"

    def opened(self) -> BaseStorage | None:
        """The storage; a SQLite file that did not exist when the reader was made is opened once it does."""
        if self.storage is None and self.url:
            with self._lock:
                if self.storage is None:
                    self.storage = _open_existing(self.url)
        return self.storage

    # ---- studies

    def study_names(self) -> list[str]:
        storage = self.opened()
        return [] if storage is None else [s.study_name for s in storage.get_all_studies()
                                           if s.study_name != AGENTS_STUDY]

    def studies(self) -> list[dict[str, Any]]:
        """One record per study, every study refreshed: see :func:`study_row`."""
        storage = self.opened()
        if storage is None:
            return []
        rows = []
        for frozen in storage.get_all_studies():
            if frozen.study_name == AGENTS_STUDY:  # digitune's agent registry, not a study
                continue
            try:
                data = self.study(frozen.study_name)
            except KeyError:  # deleted while we read
                continue
            rows.append(study_row(data))
        return rows

    def study(self, name: str) -> StudyData:
        """The study ``name`` with its trials, refreshed; ``KeyError`` if there is no such study."""
        if self.opened() is None:
            raise KeyError(name)
        with self._lock:
            try:
                study_id = self.storage.get_study_id_from_name(name)
            except KeyError:
                self._cache.pop(name, None)  # deleted: forget its trials
                raise
            cache = self._cache.get(name)
            if cache is None or cache.study_id != study_id:  # new, or deleted and made again
                cache = _Cache(study_id=study_id, trials={}, records={}, max_trial_id=-1, version=0)
                self._cache[name] = cache
            directions = [d.name.lower() for d in self.storage.get_study_directions(study_id)]
            user_attrs = self.storage.get_study_user_attrs(study_id)
            with gc_paused():
                changed = self._read_changes(cache)
                old = cache.data
                attrs_changed = old is None or old.user_attrs != user_attrs or old.directions != directions
                if changed or attrs_changed:
                    metrics = [o.split(":")[0] for o in objectives_of(user_attrs, directions)]
                    for number in (cache.trials if attrs_changed else changed):
                        cache.records[number] = record_of(cache.trials[number], metrics)
                    cache.version += 1
                    numbers = sorted(cache.trials)
                    cache.data = StudyData(name=name, study_id=study_id, directions=directions,
                                           user_attrs=user_attrs, trials=[cache.trials[n] for n in numbers],
                                           records=[cache.records[n] for n in numbers], version=cache.version)
            data = cache.data
            data.alive = self._alive(data)
            return data

    def _read_changes(self, cache: _Cache) -> list[int]:
        """Read new and unfinished trials into ``cache``; the numbers of those that changed."""
        unfinished = {id_of(t) for t in cache.trials.values() if not t.state.is_finished()}
        fresh = read_trials(self.storage, cache.study_id, unfinished_ids=unfinished, after_trial_id=cache.max_trial_id,
                            sql=self.sql)
        self.reads += len(fresh)
        changed = []
        for trial in fresh:
            old = cache.trials.get(trial.number)
            if old is None or old != trial:
                cache.trials[trial.number] = trial
                changed.append(trial.number)
            cache.max_trial_id = max(cache.max_trial_id, id_of(trial))
        return changed

    def _alive(self, data: StudyData) -> dict[int, bool]:
        running = [t for t in data.trials if t.state == TrialState.RUNNING]
        if not running:
            return {}
        beats, db_now = heartbeats(self.storage, [id_of(t) for t in running])
        now = dt.datetime.now()
        return {t.number: trial_alive(t.datetime_start, beats.get(id_of(t)), now=now, db_now=db_now)
                for t in running}




def storage_url(argv: list[str]) -> str:
    """The storage URL for the app: ``--storage URL`` among ``argv`` (what follows ``streamlit run app.py --``),
    else ``$DIGITUNE_STORAGE``, else digitune's default."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--storage")
    known, _ = parser.parse_known_args(argv)
    return resolve_storage_url(known.storage)


def _open_existing(url: str) -> BaseStorage | None:
    """The storage on ``url``, opened read-only; None while there is no study database there yet."""
    try:
        return read_storage(url)
    except NoStudyDatabaseError:
        return None
