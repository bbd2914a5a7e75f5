"""What a study records of its exported final models: one record per kind, read back from any study.

``export-model`` stores under the study's user attribute ``test_accuracy`` a mapping from the
kind of final model (``single``, ``retrained``, ``ensemble-K``, ``retrained-ensemble-K``) to
its record: the trials it came from, its held-out test accuracy and loss, and its validation
accuracy where that is honest (a model trained on train + validation has none; its record
says so in ``validation_note``). A study exported by an older digitune holds one record there
(with ``test_accuracy`` at its top level); it reads as the record of its kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._schema import TEST_ATTR, stored_record

SINGLE = "single"
RETRAINED = "retrained"
NO_VALIDATION = "trained on train + validation: no held-out validation score"
NOT_RECORDED = "not recorded (exported by an older digitune)"


def ensemble_kind(size: int, *, retrained: bool = False) -> str:
    """The kind of an ensemble of ``size`` models: ``ensemble-K`` or ``retrained-ensemble-K``."""
    return f"{'retrained-' if retrained else ''}ensemble-{size}"


def final_records(attrs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The final models recorded on a study (its ``user_attrs``), by kind; empty when none."""
    value = stored_record(attrs, TEST_ATTR)
    if "test_accuracy" in value:  # the one record an older digitune kept
        kind = RETRAINED if str(value.get("model", "")).startswith("retrained") else SINGLE
        return {kind: {**value, "kind": kind, "trials": [value.get("trial")], "validation_accuracy": None,
                       "validation_note": NO_VALIDATION if kind == RETRAINED else NOT_RECORDED}}
    return {kind: dict(record) for kind, record in value.items() if isinstance(record, Mapping)}


def best_on_validation(records: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The kind whose final model scored best on the validation split; None if none has a validation score."""
    scored = {kind: r["validation_accuracy"] for kind, r in records.items()
              if isinstance(r.get("validation_accuracy"), (int, float))}
    return max(scored, key=scored.get) if scored else None


def final_summary(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """``{"best_on_validation": kind or None, "records": {kind: record}}`` for ``show`` and ``best``."""
    records = final_records(attrs)
    return {"best_on_validation": best_on_validation(records), "records": records}


def record_final(study, record: Mapping[str, Any]) -> None:
    """Store ``record`` as the study's final model of its ``kind``, keeping the other kinds' records."""
    records = final_records(study.user_attrs)
    records[record["kind"]] = dict(record)
    study.set_user_attr(TEST_ATTR, records)
