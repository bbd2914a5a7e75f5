"""Plain records of what a storage holds, for the CLI's listings and the dashboard."""

from __future__ import annotations

from collections import Counter
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ._ranking import best_value, is_feasible, rank
from ._final_records import final_summary
from ._schema import AGENTS_STUDY, MANIFEST_ATTR, SPEC_ATTR, stored_dataset, stored_record
from ._trial_record import TrialRecord
from .study import load_study


def _state_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    counts = Counter(t.state.name.lower() for t in trials)
    return {state.name.lower(): counts.get(state.name.lower(), 0) for state in TrialState}


def list_studies(storage: optuna.storages.BaseStorage) -> list[dict[str, Any]]:
    """One record per study: name, direction, dataset, trials by state, best value, last activity."""
    rows = []
    for summary in optuna.get_all_study_summaries(storage=storage, include_best_trial=False):
        if summary.study_name == AGENTS_STUDY:  # digitune's agent registry, not a study
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        best = best_value(trials, summary.directions)  # a multi-objective study has a front, not a best value
        activity = [t.datetime_complete or t.datetime_start for t in trials if t.datetime_start]
        rows.append({
            "name": summary.study_name,
            "directions": [d.name.lower() for d in summary.directions],
            "dataset": stored_dataset(study.user_attrs).get("name"),
            "digitune": SPEC_ATTR in study.user_attrs,
            "trials": _state_counts(trials),
            "best_value": best,
            "last_activity": max(activity).isoformat(timespec="seconds") if activity else None,
        })
    return rows


def trial_record(trial: FrozenTrial) -> dict[str, Any]:
    """A trial as plain data: number, state, value, parameters and digitune's user attributes."""
    return TrialRecord(trial).listing()


def study_detail(name: str, storage: optuna.storages.BaseStorage, *, top: int = 10) -> dict[str, Any]:
    """A study's best trial (or its Pareto front), its ``top`` best finished trials (best first) and final models."""
    study = load_study(name, storage)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None]
    directions = [d.name.lower() for d in study.directions]
    spec = stored_record(study.user_attrs, SPEC_ATTR).get("study", {})
    objectives = spec.get("objectives") or [spec.get("metric", "value")]
    detail: dict[str, Any] = {
        "name": name,
        "objectives": objectives,
        "directions": directions,
        "dataset": stored_dataset(study.user_attrs) or None,
        "manifest": study.user_attrs.get(MANIFEST_ATTR),
        "trials": _state_counts(trials),
        "final_models": final_summary(study.user_attrs),  # what export-model recorded, by kind
    }
    if len(directions) > 1:
        front = sorted(study.best_trials, key=lambda t: t.number)
        detail["pareto_front"] = [trial_record(t) for t in front]
        detail["best"] = None
        detail["top"] = detail["pareto_front"][:top]
        return detail
    ranked = rank(complete, directions[0])
    feasible = [t for t in ranked if is_feasible(t)]
    detail["best"] = trial_record(feasible[0]) if feasible else None
    detail["top"] = [trial_record(t) for t in ranked[:top]]
    return detail

