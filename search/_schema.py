"""The keys digitune stores on a study, and reading them back from any Optuna study.

A study made by plain Optuna (or another tool) may hold user attributes under the same
names with other meanings (a string ``dataset``, say); readers get an empty record for a
value that is not digitune's, never an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SPEC_ATTR = "digitune_spec"
DATASET_ATTR = "dataset"
MANIFEST_ATTR = "manifest"
AGENTS_STUDY = "digitune-agents"  # the agent registry (see _queue): a reserved study, not listed


def stored_record(attrs: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The mapping digitune stored under ``key``; an empty dict when absent or not a mapping."""
    value = attrs.get(key)
    return dict(value) if isinstance(value, Mapping) else {}


def stored_dataset(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The dataset record of a study (name, fingerprint, image shape...), or an empty dict."""
    return stored_record(attrs, DATASET_ATTR)
