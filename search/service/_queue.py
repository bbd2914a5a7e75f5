"""The study queue: studies submitted to the shared database, and the agents that work them.

Why it is built this way: docs/internals.md, "search/service/_queue.py".
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from .._ranking import best_value
from .._beat import Beat
from .._claim import study_lock
from .._optuna_private import study_id
from .._schema import AGENTS_STUDY, QUEUE_ATTR
from ..study import FINISHED, load_study, open_submitted
from .._spec import SpecError, StudySpec
from ..storage._open import GRACE_ENV, GRACE_SECONDS, HEARTBEAT_ENV, HEARTBEAT_SECONDS

STATES = ("queued", "running", "done", "stopped", "failed")
ACTIVE = ("queued", "running")  # states in which agents take trials
HIDE_AGENTS_AFTER = dt.timedelta(days=1)  # agents that exited or were lost longer ago are not listed


class QueueError(SpecError):
    """A queue command that cannot be carried out; the message says why and what to do."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _parse(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


# --------------------------------------------------------------------------- studies in the queue


@dataclass
class QueueEntry:
    """A submitted study as the queue sees it now."""

    name: str
    state: str
    priority: int
    trials: int
    timeout: float | None
    submitted_at: str
    started_at: str | None
    finished_at: str | None
    reason: str | None
    finished: int = 0  # complete + pruned trials
    running: int = 0
    failed: int = 0
    best: float | None = None
    directions: list[str] = field(default_factory=list)

    @property
    def deadline(self) -> dt.datetime | None:
        started = _parse(self.started_at)
        return None if started is None or self.timeout is None else started + dt.timedelta(seconds=self.timeout)

    def seconds_left(self) -> float | None:
        deadline = self.deadline
        return None if deadline is None else (deadline - _now()).total_seconds()

    @property
    def budget_spent(self) -> bool:
        left = self.seconds_left()
        return self.finished >= self.trials or (left is not None and left <= 0)

    @property
    def has_work(self) -> bool:
        """Whether agents should take trials of this study now."""
        return self.state in ACTIVE and not self.budget_spent

    def seconds_used(self) -> float | None:
        started = _parse(self.started_at)
        if started is None:
            return None
        end = _parse(self.finished_at) if self.state not in ACTIVE and self.finished_at else _now()
        return max(0.0, (end - started).total_seconds())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds_used": self.seconds_used(), "budget_spent": self.budget_spent}


def _entry(storage: optuna.storages.BaseStorage, study_id: int, name: str, user_attrs: dict[str, Any],
           directions: list) -> QueueEntry:
    queue = user_attrs[QUEUE_ATTR]
    directions = [d.name.lower() for d in directions]
    trials = storage.get_all_trials(study_id, deepcopy=False,
                                    states=(*FINISHED, TrialState.RUNNING, TrialState.FAIL))
    best = best_value(trials, directions)
    return QueueEntry(
        name=name, state=queue["state"], priority=int(queue.get("priority", 0)),
        trials=int(queue["trials"]), timeout=queue.get("timeout"), submitted_at=queue["submitted_at"],
        started_at=queue.get("started_at"), finished_at=queue.get("finished_at"), reason=queue.get("reason"),
        finished=sum(t.state in FINISHED for t in trials), running=sum(t.state == TrialState.RUNNING for t in trials),
        failed=sum(t.state == TrialState.FAIL for t in trials), best=best, directions=directions)


def queue_entries(storage: optuna.storages.BaseStorage, *, min_priority: int | None = None) -> list[QueueEntry]:
    """Every submitted study (of at least ``min_priority``), most urgent first: higher priority, then older."""
    entries = []
    for s in storage.get_all_studies():
        if QUEUE_ATTR in s.user_attrs and (min_priority is None
                                           or int(s.user_attrs[QUEUE_ATTR].get("priority", 0)) >= min_priority):
            try:
                entries.append(_entry(storage, study_id(s), s.study_name, s.user_attrs, s.directions))
            except KeyError:  # deleted since it was listed
                continue
    return sorted(entries, key=lambda e: (-e.priority, e.submitted_at, e.name))


def _submitted(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    """Study ``name``; ``QueueError`` if it was never submitted to the queue."""
    study = load_study(name, storage)
    if QUEUE_ATTR not in study.user_attrs:
        raise QueueError(f"study {name!r} was not submitted to the queue (it was started with `digitune run`); "
                         f"submit its file with `digitune submit STUDY.toml` to let agents work on it")
    return study


def queue_entry(storage: optuna.storages.BaseStorage, name: str) -> QueueEntry:
    """The queue entry of study ``name``; ``QueueError`` if it was never submitted."""
    study = _submitted(storage, name)
    return _entry(storage, study_id(study), name, study.user_attrs, study.directions)


def submit(spec: StudySpec, storage: optuna.storages.BaseStorage, *, priority: int = 0) -> QueueEntry:
    """Store ``spec`` as a queued study and return at once; agents will run it.

    Submitting a study that exists with the same search definition updates its priority and
    budget and queues it again (to give a finished study more trials, say); a different
    definition under the same name is refused, as for ``digitune run``.
    """
    check_submittable(spec)
    study = open_submitted(spec, storage)
    with study_lock(storage, spec.name):
        old = study.user_attrs.get(QUEUE_ATTR)
        queue = {
            "state": "queued", "priority": int(priority), "trials": spec.trials, "timeout": spec.timeout,
            "submitted_at": _iso(_now()), "started_at": None, "finished_at": None, "reason": None,
            "submitted_by": socket.gethostname(),
        }
        if old is not None:
            keep_started = old.get("state") in ACTIVE and old.get("started_at")
            queue.update(submitted_at=old["submitted_at"], started_at=old.get("started_at") if keep_started else None)
            if old.get("state") == "running":
                queue["state"] = "running"
        study.set_user_attr(QUEUE_ATTR, queue)
    return queue_entry(storage, spec.name)


def _change(study: optuna.Study, **changes: Any) -> dict[str, Any]:
    """Update ``study``'s queue entry (read afresh: call it under the study's lock)."""
    queue = dict(study.user_attrs[QUEUE_ATTR])
    queue.update(changes)
    study.set_user_attr(QUEUE_ATTR, queue)
    return queue


def stop(storage: optuna.storages.BaseStorage, name: str) -> tuple[str, str]:
    """Stop a queued or running study; agents leave it at their next trial boundary. (old, new) state."""
    study = _submitted(storage, name)
    with study_lock(storage, name):
        state = study.user_attrs[QUEUE_ATTR]["state"]
        if state not in ACTIVE:
            return state, state
        _change(study, state="stopped", finished_at=_iso(_now()), reason="stopped by a user")
    return state, "stopped"


def resume(storage: optuna.storages.BaseStorage, name: str) -> tuple[str, str]:
    """Queue a stopped or failed study again. (old, new) state; a spent budget is refused."""
    entry = queue_entry(storage, name)
    if entry.state in ACTIVE:
        return entry.state, entry.state
    if entry.finished >= entry.trials:
        raise QueueError(f"study {name!r} already has {entry.finished} of its {entry.trials} trials; to run more, "
                         f"submit its file again with a larger --trials")
    with study_lock(storage, name):
        # Its time budget, if any, starts again: the clock ran while it was stopped.
        _change(load_study(name, storage), state="queued", started_at=None, finished_at=None, reason=None)
    return entry.state, "queued"


def mark_started(storage: optuna.storages.BaseStorage, name: str) -> bool:
    """Queued → running, when an agent starts it. False if it is no longer active (stopped meanwhile)."""
    with study_lock(storage, name):
        study = load_study(name, storage)
        queue = study.user_attrs[QUEUE_ATTR]
        if queue["state"] not in ACTIVE:
            return False
        if queue["state"] == "queued":
            _change(study, state="running", started_at=queue.get("started_at") or _iso(_now()))
    return True


def mark_ended(storage: optuna.storages.BaseStorage, name: str, state: str, reason: str | None = None) -> None:
    """An active study → ``done`` (budget spent) or ``failed`` (``reason``); a stopped one stays stopped."""
    with study_lock(storage, name):
        study = load_study(name, storage)
        if study.user_attrs[QUEUE_ATTR]["state"] in ACTIVE:
            _change(study, state=state, finished_at=_iso(_now()), reason=reason)


def state_of(storage: optuna.storages.BaseStorage, study_id: int) -> str | None:
    """The queue state of a study, read fresh (what an agent asks at each trial boundary)."""
    queue = storage.get_study_user_attrs(study_id).get(QUEUE_ATTR)
    return None if queue is None else queue["state"]


# --------------------------------------------------------------------------- agents


def heartbeat_interval() -> float:
    return float(os.environ.get(HEARTBEAT_ENV, HEARTBEAT_SECONDS))


def lost_after() -> float:
    """Seconds without a heartbeat after which an agent counts as lost (the trials' grace period)."""
    return float(os.environ.get(GRACE_ENV, GRACE_SECONDS))


def _agents_study(storage: optuna.storages.BaseStorage) -> optuna.Study:
    return optuna.create_study(storage=storage, study_name=AGENTS_STUDY, load_if_exists=True)


class AgentRecord:
    """This agent's entry in the registry, written on every change and every heartbeat interval."""

    def __init__(self, storage: optuna.storages.BaseStorage, *, devices: str, workers: int = 1):
        self.storage = storage
        self.host = socket.gethostname()
        self.id = f"{self.host}:{os.getpid()}"
        self.data: dict[str, Any] = {
            "id": self.id, "host": self.host, "pid": os.getpid(), "devices": devices, "workers": workers,
            "started_at": _iso(_now()), "heartbeat": None, "state": "idle", "study": None, "trial": None,
            "trials_run": 0, "refused": {},
            # How a reader tells a live agent from a lost one, as this agent was configured.
            "heartbeat_interval": heartbeat_interval(), "lost_after": lost_after(),
        }
        self._lock = threading.Lock()
        self._beat = Beat(self.update, heartbeat_interval, name="digitune-agent-heartbeat", now=False)
        self._study = _agents_study(storage)

    def update(self, **changes: Any) -> None:
        with self._lock:
            self.data.update(changes)
            self.data["heartbeat"] = _iso(_now())
            record = dict(self.data)
        try:
            self._study.set_user_attr(self.id, record)
        except Exception:  # a missed write is not fatal: the next beat repeats it
            pass

    def __enter__(self) -> "AgentRecord":
        self.update(state="idle")
        self._beat.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._beat.stop()
        self.update(state="exited", study=None, trial=None)


def list_agents(storage: optuna.storages.BaseStorage, *, everything: bool = False) -> list[dict[str, Any]]:
    """Registered agents with ``status``: working, idle, lost (no heartbeat for the grace period) or exited.

    Agents that exited or were lost more than a day ago are left out unless ``everything``.
    """
    try:
        study_id = storage.get_study_id_from_name(AGENTS_STUDY)
    except KeyError:
        return []
    now = _now()
    agents = []
    for record in storage.get_study_user_attrs(study_id).values():
        beat = _parse(record.get("heartbeat")) or _parse(record.get("started_at")) or now
        age = (now - beat).total_seconds()
        if record.get("state") == "exited":
            status = "exited"
        elif age > float(record.get("lost_after") or lost_after()):
            status = "lost"
        else:
            status = record.get("state") or "idle"
        if not everything and status in ("exited", "lost") and now - beat > HIDE_AGENTS_AFTER:
            continue
        agents.append({**record, "status": status, "heartbeat_age": round(age, 1)})
    return sorted(agents, key=lambda a: (a["status"] in ("exited", "lost"), a.get("started_at") or "", a["id"]))


def is_reserved(name: str) -> bool:
    """Studies digitune keeps for itself (the agent registry): not listed as studies."""
    return name == AGENTS_STUDY


def check_submittable(spec: StudySpec) -> None:
    if spec.name == AGENTS_STUDY:
        raise QueueError(f"the study name {AGENTS_STUDY!r} is reserved for digitune's agent registry; "
                         f"choose another [study] name")

