"""Read a study storage into plain records for the dashboard, read-only, refreshed incrementally.

A :class:`Reader` holds one storage and a cache of every study's trials. A refresh reads
only what can have changed: trials that were unfinished last time (running or waiting)
and trials newer than the newest one seen. A finished trial never changes in Optuna, so
it is read once. Nothing here writes to the storage.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterable, Iterator

import optuna
from optuna.trial import FrozenTrial, TrialState

from digitune.search import DATASET_ATTR, SPEC_ATTR, TrialRecord, stored_record
from digitune.search._optuna_private import pareto_front, trial_id as id_of
from digitune.search._ranking import rank

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
        done = [r for r in self.records if r["state"] == "complete" and r["value"] is not None and r["feasible"]]
        ranked = rank(done, self.directions[0], key=lambda r: r["value"])  # the first of equals, as Optuna
        return ranked[0] if ranked else None


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
    """A ``TrialRecord``'s listing plus what the dashboard shows: times, curves, configs, class report."""
    stored = TrialRecord(trial)
    record = stored.listing()
    attrs = trial.user_attrs
    record.update(
        trial_id=id_of(trial),
        datetime_start=trial.datetime_start,
        datetime_complete=trial.datetime_complete,
        duration_s=stored.duration_seconds,
        curves=stored.curves,
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
    curves = TrialRecord(trial).curves
    return max(len(trial.intermediate_values), len(curves.get("val_accuracy") or curves.get("loss") or []))


def _accuracy(trial: FrozenTrial, metrics: list[str]) -> float | None:
    """The trial's validation accuracy: its objective value if that is one, else its last epoch's."""
    if trial.state == TrialState.COMPLETE and trial.values is not None and "val_accuracy" in metrics:
        return trial.values[metrics.index("val_accuracy")]
    curve = TrialRecord(trial).curves.get("val_accuracy") or []
    if curve:
        return curve[-1]
    if trial.intermediate_values:
        return trial.intermediate_values[max(trial.intermediate_values)]
    return None


# --------------------------------------------------------------------------- the reader


def trial_alive(start: dt.datetime | None, heartbeat: dt.datetime | None, *, now: dt.datetime,
                db_now: dt.datetime | None) -> bool:
    """Whether a running trial's worker is running now.

    With a heartbeat: it is at most ``HEARTBEAT_ALIVE_SECONDS`` old (on the database's clock).
    Without one: the trial started at most ``RECENT_START_SECONDS`` ago (Optuna's clock, local time).
    """
    if heartbeat is not None and db_now is not None:
        return (db_now - heartbeat).total_seconds() <= HEARTBEAT_ALIVE_SECONDS
    return start is not None and (now - start).total_seconds() <= RECENT_START_SECONDS


# --------------------------------------------------------------------------- derived records


def family_of(record: dict[str, Any]) -> str:
    return record["family"] or record["params"].get("family") or "?"
