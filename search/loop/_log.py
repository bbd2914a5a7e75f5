"""One log line per finished trial."""

from __future__ import annotations

from typing import Any

from optuna.trial import FrozenTrial, TrialState

from .._schema import BASELINE_ATTR, FAIL_ATTR, START_ATTR, STOPPED_ATTR, WARM_ATTR


def describe_trial(trial: FrozenTrial) -> str:
    """One line for the log: trial number, state, value, family, size and time."""
    attrs: dict[str, Any] = trial.user_attrs
    parts = [f"trial {trial.number} {trial.state.name.lower()}"]
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        step = max(trial.intermediate_values)  # under fidelity "time" steps count time; epochs_run, the epochs
        epochs = attrs.get("epochs_run", step + 1)
        parts.append(f"at epoch {epochs} with val_accuracy={trial.intermediate_values[step]:.4f}")
    elif trial.values is not None:
        parts.append("value=" + ", ".join(f"{v:.4g}" for v in trial.values))
    if STOPPED_ATTR in attrs:
        parts.append(f"stopped at the deadline after {attrs[STOPPED_ATTR]} epochs")
    if BASELINE_ATTR in attrs:
        parts.append(f"baseline {attrs[BASELINE_ATTR]}")
    if START_ATTR in attrs:
        parts.append(f"the space's {attrs[START_ATTR]}")
    if WARM_ATTR in attrs:
        parts.append(f"warm start from {attrs[WARM_ATTR]}")
    if "family" in attrs:
        parts.append(f"{attrs['family']}, {attrs.get('params_count', 0):,} params, "
                     f"{attrs.get('train_seconds', 0):.1f} s")
    if FAIL_ATTR in attrs:
        parts.append(attrs[FAIL_ATTR])
    return " ".join(parts[:2]) + ("" if len(parts) <= 2 else " (" + "; ".join(parts[2:]) + ")")
