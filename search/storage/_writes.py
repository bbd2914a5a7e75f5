"""Every write of a trial's user attributes: in one database transaction where the storage allows."""

from __future__ import annotations

from typing import Any

import optuna


def write_trial_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """``trial.set_user_attr`` for every item, in one database transaction where the storage allows.

    Optuna commits each user attribute on its own: on SQLite that is a write transaction
    (and a lock other workers wait on) per attribute, about a dozen per trial. On an RDB
    storage (plain or behind Optuna's cache) this writes them all in one transaction
    through the storage's own upsert; any other storage, or an Optuna whose internals
    differ, gets one ``set_user_attr`` call per item (as does a single item: one write anyway).
    """
    from .._optuna_private import cache_user_attrs, one_transaction_writer
    from ._reconnect import with_retry

    writer = one_transaction_writer(trial) if len(attrs) > 1 else None
    if writer is None:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        return
    backend, write_all = writer
    with_retry(backend, lambda: write_all(attrs))  # an upsert: the same again after a lost connection
    cache_user_attrs(trial, attrs)
