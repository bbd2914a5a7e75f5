"""One trial as digitune reads it: the one record type behind listings, exports and the dashboard.

Each stored key of a trial is read here (the names come from ``_schema``); the shapes a user
sees are views of it: ``listing()`` for ``show``, ``best`` and their ``--json``, ``export()``
for ``digitune export``, and the dashboard's record is ``listing()`` plus its page's fields.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from optuna.trial import FrozenTrial

from ._ranking import is_feasible
from ._schema import BASELINE_ATTR, CURVES_ATTR, FAIL_ATTR, START_ATTR, STOPPED_ATTR, WARM_ATTR, stored_record

SIZE_KEYS = ("family", "params_count", "train_seconds", "epochs_run")  # what a trial's model was and cost


class TrialRecord:
    """A stored trial (a ``FrozenTrial``) with digitune's fields read from it."""

    def __init__(self, trial: FrozenTrial) -> None:
        self.trial = trial
        self.attrs = trial.user_attrs

    @property
    def values(self) -> list[float] | None:
        return list(self.trial.values) if self.trial.values is not None else None

    @property
    def curves(self) -> dict[str, Any]:
        """The per-epoch curves (``loss``, ``val_accuracy``, ``epoch_seconds``...); empty when none were stored."""
        return stored_record(self.attrs, CURVES_ATTR)

    @property
    def duration_seconds(self) -> float | None:
        start, end = self.trial.datetime_start, self.trial.datetime_complete
        return (end - start).total_seconds() if start and end else None

    def identity(self) -> dict[str, Any]:
        """The fields every view starts with: number, state, value (one objective), values, parameters."""
        values = self.values
        return {"number": self.trial.number, "state": self.trial.state.name.lower(),
                "value": values[0] if values is not None and len(values) == 1 else None, "values": values,
                "params": dict(self.trial.params)}

    def size(self) -> dict[str, Any]:
        return {key: self.attrs.get(key) for key in SIZE_KEYS}

    def listing(self) -> dict[str, Any]:
        """The trial as ``show`` and ``best`` list it: identity, size, curve points, origin, outcome."""
        attrs = self.attrs
        return {
            **self.identity(),
            **self.size(),
            "intermediate_values": {int(k): v for k, v in self.trial.intermediate_values.items()},
            "fail_reason": attrs.get(FAIL_ATTR),
            "baseline": attrs.get(BASELINE_ATTR),
            "start": attrs.get(START_ATTR),  # "defaults": the known-good start
            "warm_start": attrs.get(WARM_ATTR),  # "STUDY:NUMBER": queued from an earlier study
            "stopped_at_deadline": attrs.get(STOPPED_ATTR),  # epochs run when the time budget ran out
            "constraints": dict(self.trial.constraints) if self.trial.constraints else None,
            "feasible": is_feasible(self.trial),
        }

    def export(self) -> dict[str, Any]:
        """The trial as ``digitune export`` writes it: identity, times, size, failure, curves."""
        return {
            **self.identity(),
            "datetime_start": _iso(self.trial.datetime_start),
            "datetime_complete": _iso(self.trial.datetime_complete),
            "duration_seconds": self.duration_seconds,
            **self.size(),
            "fail_reason": self.attrs.get(FAIL_ATTR),
            "intermediate_values": {str(step): v for step, v in sorted(self.trial.intermediate_values.items())},
            "curves": self.curves,
        }


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None
