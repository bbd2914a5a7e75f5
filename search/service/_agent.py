"""``digitune agent``: a long-running process that works through the study queue.

Why it is built this way: docs/internals.md, "search/service/_agent.py".
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Callable

import optuna
import sqlalchemy

from digitune.models import DataError, Dataset, load_dataset

from .._artifacts import ModelKeeper
from ._queue import AgentRecord, QueueEntry, mark_ended, mark_started, queue_entries, queue_entry, state_of
from ..storage._reconnect import keep_reconnecting
from .._deadline import monotonic_deadline
from ..loop import run_trials
from ..study import StudyNotFoundError, load_study, open_study, stored_spec
from .._optuna_private import study_id as optuna_study_id
from .._schema import data_changed
from .._signals import Interrupt
from .._spec import SpecError, StudySpec

_logger = logging.getLogger("digitune")
STORAGE_RETRY_SECONDS = 30.0


@dataclass
class AgentSummary:
    trials_run: int
    studies: list[str]
    refused: dict[str, str]


class Agent:
    """One agent process: its registry record, its data cache, and the loop over the queue."""

    def __init__(self, storage: optuna.storages.BaseStorage, *, keeper_for: Callable[[StudySpec], ModelKeeper],
                 devices: str = "cpu", poll: float = 5.0, until_idle: bool = False, max_trials: int | None = None,
                 interrupt: Interrupt | None = None):
        self.storage = keep_reconnecting(storage)  # a database that blinks is waited for, up to a deadline
        self.keeper_for = keeper_for
        self.devices = devices
        self.poll = poll
        self.until_idle = until_idle
        self.max_trials = max_trials
        self.interrupt = interrupt or Interrupt()
        self.refused: dict[str, str] = {}
        self.studies: list[str] = []
        self.trials_run = 0
        self._data: dict[str, Dataset | DataError] = {}
        self.record: AgentRecord | None = None

    # ----------------------------------------------------------------------- the loop

    def run(self) -> AgentSummary:
        """Work through the queue until interrupted, or (``until_idle``) until no study has work for us."""
        with AgentRecord(self.storage, devices=self.devices) as record:
            self.record = record
            _logger.info("agent %s on %s: waiting for studies (digitune submit)", record.id, self.devices)
            while True:
                self.interrupt.check()
                if self.max_trials is not None and self.trials_run >= self.max_trials:
                    break
                try:
                    entries = [e for e in queue_entries(self.storage) if e.has_work and e.name not in self.refused]
                    worked = False
                    for entry in entries:
                        try:
                            worked = self._work_on(entry)
                        except StudyNotFoundError:  # deleted (digitune delete) since the queue listed it
                            _logger.warning("agent %s: study %r was deleted; leaving it", record.id, entry.name)
                            continue
                        if worked:
                            break  # read the queue again: priorities and budgets may have changed
                except sqlalchemy.exc.SQLAlchemyError as exc:  # SQLite busy past its timeout, say: wait, retry
                    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
                    _logger.error("agent %s: storage error (%s); trying again in %.0f s", record.id, reason,
                                  STORAGE_RETRY_SECONDS)
                    self._sleep(STORAGE_RETRY_SECONDS)
                    continue
                if worked:
                    continue
                if self.until_idle and not entries:
                    _logger.info("agent %s: no study has work left; exiting (--until-idle)", record.id)
                    break
                record.update(state="idle", study=None, trial=None)
                self._sleep(self.poll)
        return AgentSummary(self.trials_run, self.studies, dict(self.refused))

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.interrupt.check()
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))

    def _work_on(self, entry: QueueEntry) -> bool:
        """Run trials of ``entry`` while it stays the most urgent; whether any trial ran."""
        study = load_study(entry.name, self.storage)
        try:
            spec = stored_spec(study)
        except SpecError as exc:
            mark_ended(self.storage, entry.name, "failed", str(exc))
            return False
        dataset = self._dataset(entry.name, spec, study)
        if dataset is None:
            return False
        try:
            study = open_study(spec, self.storage, dataset, seed_offset=os.getpid())
        except SpecError as exc:  # the space does not fit this data, say: no agent could run it
            _logger.error("study %r cannot run: %s", entry.name, exc)
            mark_ended(self.storage, entry.name, "failed", str(exc))
            return False
        if not mark_started(self.storage, entry.name):
            return False
        current = queue_entry(self.storage, entry.name)
        if not current.has_work:
            self._finish_if_spent(current)
            return False
        study_id = optuna_study_id(study)
        self.record.update(state="working", study=entry.name, trial=None)
        ran_here = [0]

        def should_stop() -> bool:
            if state_of(self.storage, study_id) not in ("queued", "running"):
                _logger.info("agent %s: study %r was stopped; leaving it", self.record.id, entry.name)
                return True
            if self.max_trials is not None and self.trials_run + ran_here[0] >= self.max_trials:
                return True
            return self._more_urgent_than(entry)

        def on_start(trial: optuna.Trial) -> None:
            self.record.update(state="working", study=entry.name, trial=trial.number)

        def on_trial(_study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
            ran_here[0] += 1
            self.record.update(trials_run=self.trials_run + ran_here[0])

        left = current.seconds_left()
        ends = monotonic_deadline(spec.timeout if left is None else left, None)
        summary = run_trials(study, spec, dataset, self.storage, n_trials=current.trials, ends=ends,
                             keeper=self.keeper_for(spec), should_stop=should_stop, on_start=on_start,
                             on_trial=on_trial, wait=False)
        self.trials_run += summary.ran
        if summary.ran and entry.name not in self.studies:
            self.studies.append(entry.name)
        if summary.gave_up:
            mark_ended(self.storage, entry.name, "failed",
                       f"{summary.failed} trials failed in a row; see their fail_reason (digitune show {entry.name})")
        else:
            self._finish_if_spent(queue_entry(self.storage, entry.name))
        return summary.ran > 0

    def _finish_if_spent(self, entry: QueueEntry) -> None:
        # Trials still running elsewhere finish the study; past a time budget they stop at their next epoch end.
        out_of_time = entry.seconds_left() is not None and entry.seconds_left() <= 0
        if entry.state in ("queued", "running") and entry.budget_spent and (not entry.running or out_of_time):
            mark_ended(self.storage, entry.name, "done")
            _logger.info("study %r is done: %d finished trials, best %s", entry.name, entry.finished,
                         "-" if entry.best is None else f"{entry.best:.4f}")

    def _more_urgent_than(self, entry: QueueEntry) -> bool:
        for other in queue_entries(self.storage, min_priority=entry.priority + 1):
            if other.has_work and other.name not in self.refused and other.running + other.finished < other.trials:
                _logger.info("agent %s: leaving %r for the more urgent study %r", self.record.id, entry.name,
                             other.name)
                return True
        return False

    # ----------------------------------------------------------------------- data

    def _dataset(self, name: str, spec: StudySpec, study: optuna.Study) -> Dataset | None:
        """The study's data, loaded here once per source; None (and the study refused) if it cannot be."""
        key = json.dumps([spec.data.source, spec.data.load_kwargs()], sort_keys=True, default=str)
        if key not in self._data:
            try:
                self._data[key] = load_dataset(spec.data.source, **spec.data.load_kwargs())
            except DataError as exc:
                self._data[key] = exc
        loaded = self._data[key]
        if isinstance(loaded, DataError):
            return self._refuse(name, f"cannot load its data {spec.data.source!r} on this machine: {loaded}")
        changed = data_changed(study.user_attrs, loaded.info.fingerprint, study=name, source=spec.data.source,
                               context="agent")
        return self._refuse(name, changed) if changed else loaded

    def _refuse(self, name: str, reason: str) -> None:
        self.refused[name] = reason
        _logger.error("agent %s refuses study %r: %s", self.record.id, name, reason)
        self.record.update(refused=dict(self.refused))
        return None


def serve(store: optuna.storages.BaseStorage, folder: str, *, until_idle: bool, poll: float,
          mixed_precision: bool, recycle_after: int = 0) -> AgentSummary:
    """This process as one agent on ``store`` (saved models under ``folder``) until the queue says stop.

    Ctrl-C and SIGTERM raise ``KeyboardInterrupt`` after the running trial is marked failed.
    """
    from digitune.models import describe_device

    from ._child import prepare_worker
    from .._signals import interrupts

    prepare_worker(mixed_precision=mixed_precision)
    with interrupts() as interrupt:
        agent = Agent(store, keeper_for=lambda spec: ModelKeeper(folder, spec.save_models), devices=describe_device(),
                      poll=poll, until_idle=until_idle, max_trials=recycle_after or None, interrupt=interrupt)
        return agent.run()
