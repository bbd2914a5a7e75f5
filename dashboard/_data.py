"""Read a study storage into plain records for the dashboard, read-only, refreshed incrementally.

A :class:`Reader` holds one storage and a cache of every study's trials. A refresh reads
only what can have changed: trials that were unfinished last time (running or waiting)
and trials newer than the newest one seen. A finished trial never changes in Optuna, so
it is read once. Nothing here writes to the storage.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import gc
import json
import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterable, Iterator

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from digitune.dashboard._sql import heartbeats, read_trials
from digitune.search._optuna_private import pareto_front, trial_id as id_of
from digitune.search import AGENTS_STUDY, DATASET_ATTR, MANIFEST_ATTR, SPEC_ATTR, NoStudyDatabaseError, stored_record, open_storage, redact, resolve_storage_url, trial_record

# A running trial counts as alive while its heartbeat is this recent, or, without a
# heartbeat, while it started this recently.
HEARTBEAT_ALIVE_SECONDS = 60
RECENT_START_SECONDS = 300

STATES = tuple(state.name.lower() for state in TrialState)
# What reading Optuna's tables directly raises if a future Optuna moved them: then its API reads them.


# --------------------------------------------------------------------------- records of one study


@dataclass
class StudyData:
    """One study as the dashboard sees it at one refresh: its attributes and every trial, by number.

    ``version`` grows whenever a refresh found a new or changed trial, so callers can
    cache what they derive from a study on ``(name, version)``.
    """

    name: str
    study_id: int
    directions: list[str]
    user_attrs: dict[str, Any]
    trials: list[FrozenTrial]
    records: list[dict[str, Any]]
    version: int
    alive: dict[int, bool] = field(default_factory=dict)  # trial number -> its worker is running now
    memo: dict[Any, Any] = field(default_factory=dict, repr=False)  # what callers derived from this version

    def memoized(self, key: Any, make: Callable[[], Any]) -> Any:
        """``make()`` once per version of the study (figures of 10,000 trials are worth keeping)."""
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]

    @property
    def is_multi_objective(self) -> bool:
        return len(self.directions) > 1

    @property
    def spec(self) -> dict[str, Any]:
        return stored_record(self.user_attrs, SPEC_ATTR)

    @property
    def objectives(self) -> list[str]:
        return objectives_of(self.user_attrs, self.directions)

    @property
    def metrics(self) -> list[str]:
        return [o.split(":")[0] for o in self.objectives]

    @property
    def dataset(self) -> dict[str, Any]:
        return stored_record(self.user_attrs, DATASET_ATTR)

    @property
    def image_shape(self) -> tuple[int, int] | None:
        shape = self.dataset.get("image_shape")
        return tuple(int(d) for d in shape) if shape else None

    def record(self, number: int) -> dict[str, Any]:
        """The record of trial ``number`` (trial numbers count from 0 without gaps, so it is usually at that index)."""
        if 0 <= number < len(self.records) and self.records[number]["number"] == number:
            return self.records[number]
        return next(r for r in self.records if r["number"] == number)

    @cached_property
    def optuna_study(self) -> optuna.Study:
        """An in-memory copy of the study (no user attributes) for ``optuna.visualization`` and friends.

        Trials keep their numbers; reading it never touches the storage.
        """
        return in_memory_study(self.directions, self.name, (_light(t) for t in self.trials))

    def optuna_sample(self, limit: int) -> tuple[optuna.Study, int]:
        """An in-memory study of at most ``limit`` complete trials, evenly spaced by number, and how many there are.

        For plots that slow down with every trial they draw and show no trial numbers (the
        sample's trials are numbered afresh). ``optuna_study`` itself where there are few enough.
        """
        def make() -> tuple[optuna.Study, int]:
            complete = [t for t in self.trials if t.state == TrialState.COMPLETE]
            if len(complete) <= limit:
                return self.optuna_study, len(complete)
            step = len(complete) / limit
            chosen = (_light(complete[int(i * step)]) for i in range(limit))
            return in_memory_study(self.directions, self.name, chosen), len(complete)

        return self.memoized(("optuna_sample", limit), make)

    @cached_property
    def pareto_numbers(self) -> list[int]:
        """Trial numbers on the Pareto front of feasible complete trials (multi-objective only), as
        Optuna's ``Study.best_trials`` gives them: by Optuna's own front function, straight on the
        trials, without the in-memory copy and the deep copy of every trial that ``best_trials`` makes."""
        if not self.is_multi_objective:
            return []
        directions = [optuna.study.StudyDirection[d.upper()] for d in self.directions]
        try:
            return sorted(t.number for t in pareto_front(self.trials, directions))
        except ImportError:  # a future Optuna moved them
            return sorted(t.number for t in self.optuna_study.best_trials)

    @cached_property
    def best(self) -> dict[str, Any] | None:
        """The best feasible complete trial's record (single objective), as Optuna ranks it."""
        if self.is_multi_objective:
            return None
        maximize = self.directions[0] == "maximize"
        done = [r for r in self.records if r["state"] == "complete" and r["value"] is not None and r["feasible"]]
        if not done:
            return None
        return (max if maximize else min)(done, key=lambda r: r["value"])  # the first of equals, as Optuna


def objectives_of(user_attrs: dict[str, Any], directions: list[str]) -> list[str]:
    """``["val_accuracy:max", ...]`` from digitune's stored spec; ``value:max`` and the like for other studies."""
    study = stored_record(user_attrs, SPEC_ATTR).get("study", {})
    objectives = study.get("objectives") or ([f"{study['metric']}:{_short(directions[0])}"]
                                             if study.get("metric") else None)
    if objectives and len(objectives) == len(directions):
        return list(objectives)
    if len(directions) == 1:
        return [f"value:{_short(directions[0])}"]
    return [f"objective_{i}:{_short(d)}" for i, d in enumerate(directions)]


def in_memory_study(directions: list[str], name: str, trials: Iterable[FrozenTrial]) -> optuna.Study:
    """A new in-memory study holding copies of ``trials`` (numbered in order), made without Optuna's log line.

    Only ever read (by Optuna's plots and importances), so its storage hands out its trials
    without the deep copy of every trial that Optuna makes on each ``study.trials``.
    """
    with quiet_optuna():
        study = optuna.create_study(directions=directions, study_name=name, storage=_ReadOnlyInMemoryStorage())
    study.add_trials(trials)
    return study


class _ReadOnlyInMemoryStorage(optuna.storages.InMemoryStorage):
    """Optuna's in-memory storage for a study nothing changes after it is filled: trials are not deep-copied."""

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Any = None) -> list[FrozenTrial]:
        return super().get_all_trials(study_id, deepcopy=False, states=states)


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's log lines (new study, a parameter with one value) are noise in the dashboard."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: reading 10,000 trials makes half a million small dicts
    and lists, none of them in a cycle, and the collector's passes over them doubled the time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _short(direction: str) -> str:
    return "max" if direction == "maximize" else "min"


def _light(trial: FrozenTrial) -> FrozenTrial:
    """``trial`` without user attributes (curves, configs): cheap to copy into an in-memory study."""
    return FrozenTrial(
        number=trial.number, state=trial.state, value=None, values=trial.values,
        datetime_start=trial.datetime_start, datetime_complete=trial.datetime_complete, params=trial.params,
        distributions=trial.distributions, user_attrs={}, system_attrs=trial.system_attrs,
        intermediate_values=trial.intermediate_values, trial_id=id_of(trial),
    )


def record_of(trial: FrozenTrial, metrics: list[str]) -> dict[str, Any]:
    """:func:`search.trial_record` plus what the dashboard shows: times, curves, configs, class report."""
    record = trial_record(trial)
    attrs = trial.user_attrs
    curves = stored_record(attrs, "curves")
    start, end = trial.datetime_start, trial.datetime_complete
    record.update(
        trial_id=id_of(trial),
        datetime_start=start,
        datetime_complete=end,
        duration_s=(end - start).total_seconds() if start and end else None,
        curves=curves,
        epoch=last_epoch(trial),
        accuracy=_accuracy(trial, metrics),
        model_config=attrs.get("model_config"),
        train_config=attrs.get("train_config"),
        keras_backend=attrs.get("keras_backend"),
        device=attrs.get("device"),
        latency_ms=attrs.get("latency_ms"),
        confusion_matrix=attrs.get("confusion_matrix"),
        per_class_accuracy=attrs.get("per_class_accuracy"),
    )
    return record


def last_epoch(trial: FrozenTrial) -> int:
    """Epochs known done: reported intermediate values while running, the stored curves after."""
    curves = stored_record(trial.user_attrs, "curves")
    return max(len(trial.intermediate_values), len(curves.get("val_accuracy") or curves.get("loss") or []))


def _accuracy(trial: FrozenTrial, metrics: list[str]) -> float | None:
    """The trial's validation accuracy: its objective value if that is one, else its last epoch's."""
    if trial.state == TrialState.COMPLETE and trial.values is not None and "val_accuracy" in metrics:
        return trial.values[metrics.index("val_accuracy")]
    curve = stored_record(trial.user_attrs, "curves").get("val_accuracy") or []
    if curve:
        return curve[-1]
    if trial.intermediate_values:
        return trial.intermediate_values[max(trial.intermediate_values)]
    return None


# --------------------------------------------------------------------------- the reader


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


def trial_alive(start: dt.datetime | None, heartbeat: dt.datetime | None, *, now: dt.datetime,
                db_now: dt.datetime | None) -> bool:
    """Whether a running trial's worker is running now.

    With a heartbeat: it is at most ``HEARTBEAT_ALIVE_SECONDS`` old (on the database's clock).
    Without one: the trial started at most ``RECENT_START_SECONDS`` ago (Optuna's clock, local time).
    """
    if heartbeat is not None and db_now is not None:
        return (db_now - heartbeat).total_seconds() <= HEARTBEAT_ALIVE_SECONDS
    return start is not None and (now - start).total_seconds() <= RECENT_START_SECONDS


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
        return open_storage(url, heartbeat=False, create=False)
    except NoStudyDatabaseError:
        return None


# --------------------------------------------------------------------------- derived records


def study_row(data: StudyData) -> dict[str, Any]:
    """A study for the Studies page; the keys of :func:`search.list_studies` plus live and objective details."""
    counts = {state: 0 for state in STATES}
    for record in data.records:
        counts[record["state"]] += 1
    activity = [r["datetime_complete"] or r["datetime_start"] for r in data.records if r["datetime_start"]]
    best = data.best
    running = running_trials(data)
    return {
        "name": data.name,
        "directions": data.directions,
        "objectives": data.objectives,
        "dataset": data.dataset.get("name"),
        "digitune": SPEC_ATTR in data.user_attrs,
        "trials": counts,
        "n_trials": len(data.records),
        "best_value": best["value"] if best else None,
        "best_trial": best["number"] if best else None,
        "pareto_size": len(data.pareto_numbers) if data.is_multi_objective else None,
        "last_activity": max(activity).isoformat(timespec="seconds") if activity else None,
        "running_now": any(r["alive"] for r in running),
        "running": running,
    }


def running_trials(data: StudyData) -> list[dict[str, Any]]:
    """Running trials: number, family, epochs done so far, last reported value, whether the worker is alive."""
    rows = []
    for record in data.records:
        if record["state"] != "running":
            continue
        inter = record["intermediate_values"]
        rows.append({
            "number": record["number"],
            "family": record["family"] or record["params"].get("family"),
            "epoch": record["epoch"],
            "last_value": inter[max(inter)] if inter else None,
            "started": record["datetime_start"],
            "alive": data.alive.get(record["number"], False),
        })
    return rows


def study_summary(data: StudyData) -> dict[str, Any]:
    """The Study page's header: objectives, dataset, counts, best trial or Pareto front, sampler and pruner."""
    row = study_row(data)
    spec = data.spec.get("study", {})
    best = data.best
    return {
        **row,
        "sampler": spec.get("sampler"),
        "pruner": spec.get("pruner"),
        "target_trials": spec.get("trials"),
        "max_params": spec.get("max_params"),
        "best": best,
        "pareto_front": [data.record(n) for n in data.pareto_numbers],
        "dataset_info": data.dataset,
        "manifest": data.user_attrs.get(MANIFEST_ATTR),
    }


def learning_curves(data: StudyData, metric: str = "val_accuracy") -> list[dict[str, Any]]:
    """Per trial, ``metric`` per epoch: from the stored curves, or the reported values while it runs.

    Each entry: number, state, family, baseline, values (epoch 1 first), final, best.
    Trials with no epoch yet are left out.
    """
    maximize = "accuracy" in metric
    curves = []
    for record in data.records:
        values = list((record["curves"] or {}).get(metric) or [])
        if not values and metric == "val_accuracy" and record["intermediate_values"]:
            inter = record["intermediate_values"]
            values = [inter[k] for k in sorted(inter)]
        if not values:
            continue
        curves.append({
            "number": record["number"],
            "state": record["state"],
            "family": record["family"],
            "baseline": record["baseline"],
            "values": values,
            "final": values[-1],
            "best": max(values) if maximize else min(values),
        })
    return curves


def family_of(record: dict[str, Any]) -> str:
    return record["family"] or record["params"].get("family") or "?"


def compare_rows(studies: list[StudyData]) -> list[dict[str, Any]]:
    """One summary row per study for the Compare page."""
    rows = []
    for data in studies:
        row = study_row(data)
        best = data.best
        complete = [r for r in data.records if r["state"] == "complete"]
        accuracies = [r["accuracy"] for r in complete if r["accuracy"] is not None]
        seconds = [r["duration_s"] for r in data.records if r["duration_s"] is not None]
        rows.append({
            "study": data.name,
            "dataset": row["dataset"],
            "objectives": ", ".join(data.objectives),
            "trials": row["n_trials"],
            "complete": row["trials"]["complete"],
            "pruned": row["trials"]["pruned"],
            "failed": row["trials"]["fail"],
            "best value": row["best_value"],
            "best trial": row["best_trial"],
            "best family": best["family"] if best else None,
            "best params": best["params_count"] if best else None,
            "Pareto front": row["pareto_size"],
            "best accuracy": max(accuracies) if accuracies else None,
            "total hours": round(sum(seconds) / 3600, 3) if seconds else 0.0,
        })
    return rows


def model_layers(model_config: dict[str, Any], image_shape: tuple[int, ...]) -> dict[str, Any]:
    """The Keras model a trial trained, rebuilt from its stored config: one row per layer and the totals.

    Builds (never trains) the model with :func:`models.build_model`, so Keras is imported
    on the first call.
    """
    from digitune.models import build_model, model_config_from_dict

    config = model_config_from_dict(copy.deepcopy(model_config))
    model = build_model(config, tuple(image_shape))
    layers = []
    for layer in model.layers:
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):
            shape = None
        layers.append({
            "layer": layer.name,
            "type": type(layer).__name__,
            "output shape": "" if shape is None else "(" + ", ".join("None" if d is None else str(d)
                                                                        for d in shape) + ")",
            "params": int(layer.count_params()),
        })
    result = {"layers": layers, "total_params": int(model.count_params()),
              "input_shape": list(image_shape), "config": json.loads(json.dumps(model_config))}
    _clear_keras()
    return result


def _clear_keras() -> None:
    try:
        from digitune.models import clear_state

        clear_state()
    except Exception:  # noqa: BLE001 (clearing is only tidiness)
        pass
