"""Every key digitune stores on a study and its trials, and reading them back from any Optuna study.

The one owner of the stored schema: modules that write or read a key take its name from
here. A study made by plain Optuna (or another tool) may hold user attributes under the same
names with other meanings (a string ``dataset``, say); readers get an empty record for a
value that is not digitune's, never an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Study user attributes.
SPEC_ATTR = "digitune_spec"  # the StudySpec, as its to_dict()
DATASET_ATTR = "dataset"  # the data's DatasetInfo (name, source, fingerprint, shapes)
MANIFEST_ATTR = "manifest"  # the libraries and backend the study's first run used
SAVED_ATTR = "saved_models"  # trial number -> artifact id of its kept .keras model
QUEUE_ATTR = "digitune_queue"  # a submitted study's queue entry (state, priority, budget)
TEST_ATTR = "test_accuracy"  # the final models export-model recorded (with their test accuracy), by kind
AGENTS_STUDY = "digitune-agents"  # the agent registry (see _queue): a reserved study, not listed

# Trial user attributes with a meaning of their own.
BASELINE_ATTR = "baseline"  # a tutorial preset's name
START_ATTR = "start"  # a trial queued with the space's known-good defaults
WARM_ATTR = "warm_start"  # on a queued trial: "STUDY:NUMBER", the earlier trial it came from
STOPPED_ATTR = "stopped_at_deadline"  # a trial the deadline stopped: the epochs it ran
STEPS_ATTR = "pruning_steps"  # "epochs" or "time": what a trial's reported steps count
COST_ATTR = "epoch_cost"  # under "time": the study's typical epoch times the steps were measured against
MODEL_ATTR = "model_artifact"  # the artifact id of the trial's saved model
FAIL_ATTR = "fail_reason"  # why a trial failed, one line
CURVES_ATTR = "curves"  # the per-epoch curves: loss, accuracy, val_accuracy, epoch_seconds...
# What every trial records besides (search/_objective.py), read by reports, exports and the dashboard.
TRIAL_ATTRS = ("family", "model_config", "train_config", CURVES_ATTR, "params_count", "train_seconds", "epochs_run",
               "latency_ms", "keras_backend", "device", "dtype_policy", "worker", "cuda_visible_devices",
               "confusion_matrix", "per_class_accuracy")

# What a changed data set is told, by where it is found.
_DATA_CHANGED = {
    "resume": "study {study!r} was run on data with fingerprint {recorded}, but {source} has fingerprint "
              "{fingerprint}; use the same data or a new study name",
    "export": "study {study!r} was run on data with fingerprint {recorded}, but {source} now has {fingerprint}; "
              "restore the study's data to export or predict",
    "agent": "its data {source!r} here has fingerprint {fingerprint}, but the study was run on {recorded}; "
             "give this machine the same data",
}


def stored_record(attrs: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The mapping digitune stored under ``key``; an empty dict when absent or not a mapping."""
    value = attrs.get(key)
    return dict(value) if isinstance(value, Mapping) else {}


def stored_dataset(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The dataset record of a study (name, fingerprint, image shape...), or an empty dict."""
    return stored_record(attrs, DATASET_ATTR)


def data_changed(attrs: Mapping[str, Any], fingerprint: str, *, study: str, source: str, context: str) -> str | None:
    """What to say when a study's recorded data fingerprint differs from ``fingerprint``; None when it matches.

    A study with no fingerprint yet (submitted, not run) matches any data. ``context`` is
    ``resume``, ``export`` or ``agent``: where the data is being checked, which sets the remedy.
    """
    recorded = stored_dataset(attrs).get("fingerprint")
    if not recorded or recorded == fingerprint:
        return None
    return _DATA_CHANGED[context].format(study=study, recorded=recorded, source=source, fingerprint=fingerprint)
