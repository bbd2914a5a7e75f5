"""Which trial is best: the one rule that reports, exports, saved models and the dashboard share.

A trial counts when it completed with values and meets its constraints (``trial.set_constraint``
values <= 0, as Optuna judges feasibility); it is ranked by its first objective, and of equal
values the earlier trial is best, as in Optuna's ``best_trial``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, TypeVar

from optuna.trial import FrozenTrial, TrialState

T = TypeVar("T")


def is_feasible(trial: FrozenTrial) -> bool:
    """Whether ``trial`` meets all its constraints (``trial.set_constraint`` values <= 0), as Optuna judges it."""
    return all(v <= 0 for v in (trial.constraints or {}).values())


def maximizes(direction: Any) -> bool:
    """Whether a direction (Optuna's ``StudyDirection`` or its lower-case name) is "maximize"."""
    return str(getattr(direction, "name", direction)).lower() == "maximize"


def rank(items: Iterable[T], direction: Any, key: Callable[[T], float] = lambda t: t.values[0]) -> list[T]:
    """``items`` best first by ``key`` (a trial's first value); equals keep their order, the first best."""
    return sorted(items, key=key, reverse=maximizes(direction))


def counted(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that compete for best: complete, with values, feasible."""
    return [t for t in trials if t.state == TrialState.COMPLETE and t.values and is_feasible(t)]


def best_value(trials: Iterable[FrozenTrial], directions: list) -> float | None:
    """The best first-objective value of a single-objective study's counted trials; None for a front or none."""
    if len(directions) != 1:
        return None
    ranked = rank(counted(trials), directions[0])
    return ranked[0].values[0] if ranked else None
