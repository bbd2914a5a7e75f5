"""Every private Optuna name digitune relies on, behind one function each (the boundary with Optuna).

Optuna has no public API for these: a study's storage and ids, the RDB storage's stale-trial
listing and its one-transaction attribute writes, its table models, the Pareto front with
constraints. ``REQUIRED`` lists each name; tests/search/test_boundaries.py fails with the module to
update when a new Optuna moves one. Each function keeps a fallback where one exists.
"""

from __future__ import annotations

import importlib
from typing import Any

import optuna

# (module, attribute path) of every private name used here; an attribute path "" is the module itself.
REQUIRED = (
    ("optuna.study.study", "Study._storage"),
    ("optuna.study.study", "Study._study_id"),
    ("optuna.study.study", "Study._thread_local"),
    ("optuna.trial._trial", "Trial._trial_id"),
    ("optuna.trial._trial", "Trial._cached_frozen_trial"),
    ("optuna.trial._frozen", "FrozenTrial._trial_id"),
    ("optuna.study._frozen", "FrozenStudy._study_id"),
    ("optuna.storages._cached_storage", "_CachedStorage._backend"),
    ("optuna.storages._rdb.storage", "RDBStorage._get_stale_trial_ids"),
    ("optuna.storages._rdb.storage", "RDBStorage._set_trial_attr_without_commit"),
    ("optuna.storages._rdb.storage", "RDBStorage._get_trials"),
    # search/storage/_reconnect.py retries these too (Optuna's cache calls them instead of the public ones)
    ("optuna.storages._rdb.storage", "RDBStorage._create_new_trial"),
    ("optuna.storages._rdb.storage", "RDBStorage._set_trial_param"),
    ("optuna.storages._rdb.storage", "RDBStorage._get_best_trial_id"),
    ("optuna.storages._rdb.storage", "_create_scoped_session"),
    ("optuna.storages._rdb.models", "TrialUserAttributeModel"),
    ("optuna.storages._rdb.models", "TrialHeartbeatModel"),
    ("optuna.pruners._hyperband", "HyperbandPruner._create_bracket_study"),
    ("optuna.study._constrained_optimization", "_is_constrained_optimization"),
    ("optuna.study._multi_objective", "_get_pareto_front_trials_by_trials"),
)


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study reads and writes through (Optuna's cache around an RDB storage, often)."""
    return study._storage


def study_id(study: optuna.Study | optuna.study.FrozenStudy) -> int:
    """The storage's id of a study or a frozen study summary."""
    return study._study_id


def trial_id(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """The storage's id of a trial (live or frozen)."""
    return trial._trial_id


def backend_of(storage: Any) -> Any:
    """The RDB storage behind Optuna's cache; the storage itself when it has none."""
    return getattr(storage, "_backend", storage)


def stale_trial_ids(storage: optuna.storages.BaseStorage, study: optuna.Study) -> list[int]:
    """The running trials of ``study`` whose heartbeat went stale (Optuna's heartbeat API's own listing)."""
    return storage._get_stale_trial_ids(study_id(study))


def one_transaction_writer(trial: optuna.Trial):
    """A function writing a dict of user attributes in one transaction, or None where the storage has no way.

    Uses the RDB storage's own upsert (``_set_trial_attr_without_commit``) inside its scoped
    session; the trial's cached copy is brought up to date as ``Trial.set_user_attr`` does.
    """
    backend = backend_of(getattr(trial, "storage", None))
    write = getattr(backend, "_set_trial_attr_without_commit", None)
    if write is None or not isinstance(backend, optuna.storages.RDBStorage):
        return None
    from optuna.storages._rdb import models as rdb_models
    from optuna.storages._rdb.storage import _create_scoped_session

    def write_all(attrs: dict[str, Any]) -> None:
        with _create_scoped_session(backend.scoped_session, True) as session:
            for key, value in attrs.items():
                write(session, rdb_models.TrialUserAttributeModel, trial_id(trial), key, value)

    return backend, write_all


def cache_user_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Update the trial's cached frozen copy after writing ``attrs`` around ``Trial.set_user_attr``."""
    trial._cached_frozen_trial.user_attrs.update(attrs)


def rdb_models():
    """Optuna's SQLAlchemy table models (``optuna.storages._rdb.models``)."""
    return importlib.import_module("optuna.storages._rdb.models")


def trials_after(storage: Any, study: int, unfinished: set[int], after_trial_id: int) -> list | None:
    """The RDB storage's trials past ``after_trial_id`` plus ``unfinished``; None where it cannot say."""
    if after_trial_id < 0 or not hasattr(storage, "_get_trials"):
        return None
    return storage._get_trials(study, None, unfinished, after_trial_id)


def pareto_front(trials: list, directions: list) -> list:
    """Optuna's Pareto front of ``trials``, feasible trials first when any carry constraints."""
    from optuna.study._constrained_optimization import _is_constrained_optimization
    from optuna.study._multi_objective import _get_pareto_front_trials_by_trials

    return _get_pareto_front_trials_by_trials(trials, directions,
                                              consider_constraint=_is_constrained_optimization(trials))


class SharedCacheHyperband(optuna.pruners.HyperbandPruner):
    """Optuna's Hyperband, with TPE's draws for a trial sharing one read of the study's trials.

    Why it is built this way: docs/internals.md, "search/_optuna_private.py SharedCacheHyperband".
    """

    def _create_bracket_study(self, study: optuna.Study, bracket_id: int) -> optuna.Study:
        bracket = super()._create_bracket_study(study, bracket_id)
        object.__setattr__(bracket, "_thread_local", study._thread_local)
        return bracket
