"""The trial loop: claim a slot, run the objective under a heartbeat, tell Optuna, until the budget is spent."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from digitune.models import Dataset, load_dataset

from .._artifacts import ModelKeeper
from .._claim import Heartbeat, SlotLock, is_stale_failure
from .._deadline import monotonic_deadline
from .._objective import Objective
from ..storage._reconnect import StorageUnreachable, keep_reconnecting
from .._signals import interrupts
from .._spec import StudySpec
from ..study import StudyDeletedError, count_finished, deleted_as_error, is_gone, open_study
from ._log import describe_trial

_logger = logging.getLogger("digitune")

MAX_CONSECUTIVE_FAILURES = 10


@dataclass
class RunSummary:
    study: optuna.Study
    finished: int
    ran: int
    failed: int
    recycled: bool = False  # stopped after ``max_trials`` trials so a fresh process can go on
    gave_up: bool = False  # stopped after ``MAX_CONSECUTIVE_FAILURES`` failures in a row


def run_study(spec: StudySpec, storage: optuna.storages.BaseStorage, *, dataset: Dataset | None = None,
              n_trials: int | None = None, timeout: float | None = None, deadline: float | None = None,
              on_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None, seed_offset: int = 0,
              keeper: ModelKeeper | None = None, max_trials: int | None = None, study: optuna.Study | None = None,
              should_stop: Callable[[], bool] | None = None, on_start: Callable[[optuna.Trial], None] | None = None,
              wait: bool = True) -> RunSummary:
    """Open the study of ``spec`` on ``storage`` (unless ``study`` is given) and run it with ``run_trials``.

    The one call for a notebook or a script: the data is loaded from the spec when not given,
    and the budget is ``n_trials`` (default the spec's) within ``timeout`` seconds or ``deadline``.
    """
    keep_reconnecting(storage)
    ends = monotonic_deadline(spec.timeout if timeout is None and deadline is None else timeout, deadline)
    dataset = dataset if dataset is not None else load_dataset(spec.data.source, **spec.data.load_kwargs())
    study = study if study is not None else open_study(spec, storage, dataset, seed_offset=seed_offset)
    return run_trials(study, spec, dataset, storage, n_trials=spec.trials if n_trials is None else n_trials,
                      ends=ends, keeper=keeper, on_trial=on_trial, on_start=on_start, max_trials=max_trials,
                      should_stop=should_stop, wait=wait)


def run_trials(study: optuna.Study, spec: StudySpec, dataset: Dataset, storage: optuna.storages.BaseStorage, *,
               n_trials: int, ends: float | None = None, keeper: ModelKeeper | None = None,
               on_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
               on_start: Callable[[optuna.Trial], None] | None = None, max_trials: int | None = None,
               should_stop: Callable[[], bool] | None = None, wait: bool = True) -> RunSummary:
    """Run the open ``study``'s trials until it holds ``n_trials`` finished ones; it opens nothing.

    Several workers together finish exactly ``n_trials`` (``SlotLock``); failed trials keep their
    reason and do not count. Past ``ends`` (``time.monotonic()``) no trial starts and running ones
    stop at their next epoch end; ``max_trials`` caps this call's trials, ``should_stop`` is asked
    before each. The long story: docs/internals.md, "search/loop/_trials.py run_study".
    """
    keep_reconnecting(storage)
    if (already := count_finished(study)) >= n_trials:
        _logger.info("study %r already has %d finished trials (asked for %d)", spec.name, already, n_trials)
        return RunSummary(study, already, 0, 0)
    counts = _Counts()
    with interrupts() as interrupt, SlotLock(storage, study.study_name) as slots, deleted_as_error(study):
        objective = Objective(spec, dataset, interrupt, keeper, deadline=ends)
        waiting_since: float | None = None
        while True:
            interrupt.check()
            if (ends is not None and time.monotonic() >= ends) or (should_stop is not None and should_stop()):
                break
            trial = slots.claim(study, n_trials)
            if trial is None:
                waiting_since = waiting_since or time.monotonic()
                if not _worth_waiting(study, slots, n_trials, wait, waiting_since):
                    break
                time.sleep(1.0)  # the other workers' running trials may still fail; then we take over
                continue
            waiting_since = None
            if on_start is not None:
                on_start(trial)
            frozen = _run_one(study, storage, trial, objective)
            counts.add(frozen)
            _logger.info("%s: %s", study.study_name, describe_trial(frozen))
            if on_trial is not None:
                on_trial(study, frozen)
            if (summary := _stop_early(study, counts, n_trials, ends, max_trials)) is not None:
                return summary
    return RunSummary(study, count_finished(study), counts.ran, counts.failed)


@dataclass
class _Counts:
    """The trials this call ran, failed, and failed in a row."""

    ran: int = 0
    failed: int = 0
    failed_in_a_row: int = 0

    def add(self, frozen: FrozenTrial) -> None:
        self.ran += 1
        failed = frozen.state == TrialState.FAIL
        self.failed += failed
        self.failed_in_a_row = self.failed_in_a_row + 1 if failed else 0


def _worth_waiting(study: optuna.Study, slots: SlotLock, n_trials: int, wait: bool, since: float) -> bool:
    """Whether a worker with no slot should wait for the others' running trials (one may fail and free it).

    Without heartbeats (a gRPC proxy), or past the grace period, a trial that stays running
    may belong to no live worker: leave it rather than wait for ever.
    """
    return (wait and count_finished(study) < n_trials and bool(slots.heartbeats)
            and time.monotonic() - since <= slots.patience)


def _stop_early(study: optuna.Study, counts: _Counts, n_trials: int, ends: float | None,
                max_trials: int | None) -> RunSummary | None:
    """The summary to stop with after this trial: too many failures in a row, or ``max_trials`` run."""
    if counts.failed_in_a_row >= MAX_CONSECUTIVE_FAILURES:
        _logger.error("stopping: %d trials in a row failed; see their fail_reason (digitune show %s)",
                      counts.failed_in_a_row, study.study_name)
        return RunSummary(study, count_finished(study), counts.ran, counts.failed, gave_up=True)
    if max_trials is not None and counts.ran >= max_trials:
        finished = count_finished(study)
        more = finished < n_trials and (ends is None or time.monotonic() < ends)  # past it, none to recycle for
        return RunSummary(study, finished, counts.ran, counts.failed, recycled=more)
    return None


def _run_one(study: optuna.Study, storage: optuna.storages.BaseStorage, trial: optuna.Trial,
             objective: Objective) -> FrozenTrial:
    """Run ``objective`` on ``trial`` with heartbeats, and tell Optuna how it ended.

    Like ``Study.optimize`` does for one trial: pruned trials are told as pruned, any
    exception fails this trial alone (its reason is in the user attribute ``fail_reason``),
    and Ctrl-C fails it and stops the run. A database that stayed away past the reconnect
    deadline stops the run too; the trial, left running, is failed after the grace period.
    """
    with Heartbeat(storage, study, trial):
        try:
            values = objective(trial)
        except optuna.TrialPruned:
            return _tell(study, trial, state=TrialState.PRUNED)
        except KeyboardInterrupt:
            _tell(study, trial, state=TrialState.FAIL)
            raise
        except StorageUnreachable:  # nothing can be told
            raise
        except Exception:  # recorded by the objective; the study goes on
            if is_gone(study):
                raise StudyDeletedError(study.study_name) from None
            return _tell(study, trial, state=TrialState.FAIL)
    return _tell(study, trial, values)


def _tell(study: optuna.Study, trial: optuna.Trial, values: Any = None, *,
          state: TrialState | None = None) -> FrozenTrial:
    """``study.tell``; a trial another worker failed meanwhile (its heartbeat went stale) stays failed."""
    try:
        frozen = study.tell(trial, values, state=state, skip_if_finished=True)
    except optuna.exceptions.UpdateFinishedTrialError:  # failed as stale between tell's look and its write
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
    if is_stale_failure(frozen):
        _logger.warning("%s: trial %d was failed by another worker while this one could not reach the database; "
                        "its result is dropped and its parameters run again as a new trial",
                        study.study_name, trial.number)
    return frozen
