"""Plain records of what a storage holds, for the CLI's listings and the dashboard."""

from __future__ import annotations

from collections import Counter
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ._runner import DATASET_ATTR, SPEC_ATTR, load_study


def _state_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    counts = Counter(t.state.name.lower() for t in trials)
    return {state.name.lower(): counts.get(state.name.lower(), 0) for state in TrialState}


def list_studies(storage: optuna.storages.BaseStorage) -> list[dict[str, Any]]:
    """One record per study: name, direction, dataset, trials by state, best value, last activity."""
    rows = []
    for summary in optuna.get_all_study_summaries(storage=storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        finished = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None]
        maximize = summary.direction == optuna.study.StudyDirection.MAXIMIZE
        best = None
        if finished and len(summary.directions) == 1:
            best = (max if maximize else min)(t.value for t in finished)
        activity = [t.datetime_complete or t.datetime_start for t in trials if t.datetime_start]
        rows.append({
            "name": summary.study_name,
            "directions": [d.name.lower() for d in summary.directions],
            "dataset": study.user_attrs.get(DATASET_ATTR, {}).get("name"),
            "digitune": SPEC_ATTR in study.user_attrs,
            "trials": _state_counts(trials),
            "best_value": best,
            "last_activity": max(activity).isoformat(timespec="seconds") if activity else None,
        })
    return rows


def trial_record(trial: FrozenTrial) -> dict[str, Any]:
    """A trial as plain data: number, state, value, parameters and digitune's user attributes."""
    attrs = trial.user_attrs
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "value": trial.value if trial.values is not None and len(trial.values) == 1 else None,
        "values": trial.values,
        "params": trial.params,
        "family": attrs.get("family"),
        "params_count": attrs.get("params_count"),
        "train_seconds": attrs.get("train_seconds"),
        "epochs_run": attrs.get("epochs_run"),
        "intermediate_values": {int(k): v for k, v in trial.intermediate_values.items()},
        "fail_reason": attrs.get("fail_reason"),
    }


def study_detail(name: str, storage: optuna.storages.BaseStorage, *, top: int = 10) -> dict[str, Any]:
    """A study's best trial and its ``top`` best finished trials, best first."""
    study = load_study(name, storage)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    ranked = sorted(complete, key=lambda t: t.value, reverse=maximize)
    return {
        "name": name,
        "direction": study.direction.name.lower(),
        "metric": study.user_attrs.get(SPEC_ATTR, {}).get("study", {}).get("metric"),
        "dataset": study.user_attrs.get(DATASET_ATTR),
        "trials": _state_counts(trials),
        "best": trial_record(ranked[0]) if ranked else None,
        "top": [trial_record(t) for t in ranked[:top]],
    }
