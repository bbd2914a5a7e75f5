"""Ctrl-C and SIGTERM that stop a run at a safe point.

The first signal only sets a flag. The run checks it at safe points, in plain Python: after
every training batch (Optuna then marks the running trial failed, "interrupted"), after
every trial, and before a trial starts training. Raising from the signal handler itself
could land anywhere, even in a garbage-collector callback that swallows the exception.
A second signal raises at once, for a user who insists. Code that waits a long time
outside the run's loop (for a lost database, say) asks ``active_interrupt()`` too.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


class Interrupt:
    def __init__(self) -> None:
        self.requested: str | None = None

    def handle(self, signum: int, frame: object) -> None:
        first = self.requested is None
        self.requested = signal.Signals(signum).name
        if not first:
            raise KeyboardInterrupt(self.requested)

    def check(self) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt(self.requested)


_active: list[Interrupt] = []  # the interrupts() blocks now open, innermost last


def active_interrupt() -> Interrupt | None:
    """The innermost ``interrupts()`` block's ``Interrupt``, on the main thread; else None."""
    if threading.current_thread() is not threading.main_thread() or not _active:
        return None
    return _active[-1]


@contextlib.contextmanager
def interrupts() -> Iterator[Interrupt]:
    """Route SIGINT and SIGTERM to an ``Interrupt`` while the block runs (main thread only)."""
    interrupt = Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield interrupt
        return
    previous = {sig: signal.signal(sig, interrupt.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    _active.append(interrupt)
    try:
        yield interrupt
    finally:
        _active.remove(interrupt)
        if interrupt.requested and _active:  # the signal was for the process: an enclosing block stops too
            _active[-1].requested = _active[-1].requested or interrupt.requested
        for sig, handler in previous.items():
            signal.signal(sig, handler)
