"""Cost-aware fidelity: a trial reports to the pruner at the step its training time has reached.

Why it is built this way: docs/internals.md, "search/_fidelity.py".
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ._schema import COST_ATTR, CURVES_ATTR, STEPS_ATTR, stored_record

MIN_FINISHED = 3  # finished trials with timed epochs before a study's typical epoch is trusted
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class EpochCost:
    """A study's typical epoch times: the median first epoch (tracing included) and the median later one."""

    first: float
    later: float

    def epochs_worth(self, epoch_seconds: list[float]) -> float:
        """How many typical epochs the time of ``epoch_seconds`` (a trial's epochs so far) would have bought."""
        if not epoch_seconds:
            return 0.0
        return epoch_seconds[0] / self.first + sum(epoch_seconds[1:]) / self.later

    def to_dict(self) -> dict[str, float]:
        return {"first": round(self.first, 4), "later": round(self.later, 4)}


def epoch_cost(trials: Iterable[FrozenTrial]) -> EpochCost | None:
    """The typical epoch times of ``trials`` that finished, or None with fewer than ``MIN_FINISHED`` timed ones.

    ``later`` is the median over trials of each trial's median later epoch, so a trial that
    ran many epochs counts once, as a trial pruned early does.
    """
    firsts: list[float] = []
    laters: list[float] = []
    for trial in trials:
        if trial.state not in _FINISHED:
            continue
        seconds = stored_record(trial.user_attrs, CURVES_ATTR).get("epoch_seconds") or []
        if not seconds:
            continue
        firsts.append(float(seconds[0]))
        if len(seconds) > 1:
            laters.append(statistics.median(seconds[1:]))
    if len(firsts) < MIN_FINISHED or not laters or min(statistics.median(firsts), statistics.median(laters)) <= 0:
        return None
    return EpochCost(first=statistics.median(firsts), later=statistics.median(laters))


def next_step(epoch_seconds: list[float], cost: EpochCost | None, last: int) -> int:
    """The step to report after the epochs timed in ``epoch_seconds``, the last step reported being ``last``.

    Never below the epoch's index, always past the last step (one report per epoch, no
    step reported twice); with a ``cost``, at least the typical epochs its time bought, less one.
    """
    step = max(len(epoch_seconds) - 1, last + 1)
    return step if cost is None else max(step, int(cost.epochs_worth(epoch_seconds) + 1e-9) - 1)


def fidelity_attrs(fidelity: str, study: optuna.Study) -> tuple[EpochCost | None, dict[str, Any]]:
    """The cost a new trial measures its steps against (None: plain epochs) and the user attributes saying so."""
    cost = epoch_cost(study.get_trials(deepcopy=False, states=_FINISHED)) if fidelity == "time" else None
    if cost is None:
        return None, {STEPS_ATTR: "epochs"}
    return cost, {STEPS_ATTR: "time", COST_ATTR: cost.to_dict()}


def pruning_callback(trial: optuna.Trial, curves: dict[str, list[float]], cost: EpochCost | None,
                     monitor: str = "val_accuracy") -> Any:
    """A Keras callback reporting ``monitor`` after every epoch at ``next_step`` and pruning when the pruner says.

    ``curves`` is the training log's, filled by an earlier callback with the seconds of
    every epoch so far (``epoch_seconds``), the clock the study's stored times are on.
    ``epoch`` (Keras' index) and the epochs timed agree; the index counts if they do not.
    """
    import keras

    reported = [-1]

    def report(epoch: int, logs: Any = None) -> None:
        value = (logs or {}).get(monitor)
        if value is None:
            return
        seconds = list(curves.get("epoch_seconds", []))[:epoch + 1]
        step = max(epoch, next_step(seconds, cost, reported[0]))
        reported[0] = step
        trial.report(float(value), step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} (step {step})")

    return keras.callbacks.LambdaCallback(on_epoch_end=report)
