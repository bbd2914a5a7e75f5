"""Ctrl-C and SIGTERM that stop a run at a safe point.

A signal that arrives between trials raises ``KeyboardInterrupt`` at once. One that
arrives while a model trains only sets a flag; the training callback raises at the end of
the current batch, from plain Python, so Optuna marks the trial failed and the database
stays consistent. A second signal raises at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


class Interrupt:
    def __init__(self) -> None:
        self.requested: str | None = None
        self.training = False

    def handle(self, signum: int, frame: object) -> None:
        first = self.requested is None
        self.requested = signal.Signals(signum).name
        if not self.training or not first:
            raise KeyboardInterrupt(self.requested)

    def check(self) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt(self.requested)


@contextlib.contextmanager
def interrupts() -> Iterator[Interrupt]:
    """Route SIGINT and SIGTERM to an ``Interrupt`` while the block runs (main thread only)."""
    interrupt = Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield interrupt
        return
    previous = {sig: signal.signal(sig, interrupt.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield interrupt
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
