"""A time budget: one wall-clock end for every process of a run, and the callback that keeps it.

At the deadline no new trial starts, and every running trial stops at its next epoch end:
it completes with the scores of the last epoch it ran, and records how many epochs that was
in the user attribute ``stopped_at_deadline``. Processes share the deadline as a wall-clock
time (``time.time()``: ``digitune worker --deadline``, the queue's start time plus its
budget); each process keeps it on its own monotonic clock, which no clock change moves.
"""

from __future__ import annotations

import time
from typing import Any



def deadline_after(seconds: float | None, *, given: float | None = None) -> float | None:
    """The wall-clock deadline: ``given`` (a parent's) if set, else ``seconds`` from now, else none."""
    if given is not None:
        return given
    return None if seconds is None else time.time() + seconds


def monotonic_deadline(timeout: float | None, deadline: float | None) -> float | None:
    """The earlier of ``timeout`` seconds from now and the wall-clock ``deadline``, on the monotonic clock."""
    ends = [time.monotonic() + s for s in (timeout, None if deadline is None else deadline - time.time())
            if s is not None]
    return min(ends) if ends else None


def stop_at_deadline(deadline: float, stopped: list[int]) -> Any:
    """A Keras callback that ends training at the first epoch end past ``deadline`` (monotonic).

    It appends the epochs run to ``stopped`` when it cut training short (not at the last
    epoch, which ends training anyway). Placed after the pruning callback, a trial pruned at
    that epoch is still pruned: the pruner raises before this runs.
    """
    import keras

    def check(epoch: int, logs: Any = None) -> None:
        if time.monotonic() >= deadline and epoch + 1 < (callback.params or {}).get("epochs", epoch + 2):
            callback.model.stop_training = True
            stopped.append(epoch + 1)

    callback = keras.callbacks.LambdaCallback(on_epoch_end=check)
    return callback
