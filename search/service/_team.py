"""A team of child processes: spawned with the storage in their environment, supervised, stopped, judged.

``run`` starts ``digitune worker`` processes and ``agent --workers N`` starts agent processes;
both go through ``Team``: one spawn, one supervise loop, one exit code.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from typing import Callable, Iterator, Sequence

from .._env import PARENT_ENV
from .._signals import interrupts
from ..storage._open import STORAGE_ENV, redact
from ..storage._reconnect import StorageUnreachable, reconnect_seconds
from ._layout import WorkerSlot
from ._spawn import python_command

RECYCLE_EXIT = 75  # EX_TEMPFAIL: a worker that stopped after its --recycle-after trials, to be started again
GAVE_UP_EXIT = 69  # EX_UNAVAILABLE: a worker that waited for the database past the deadline (its parent says so)
GAVE_UP_GRACE = 15.0  # seconds a parent that gave up on the database leaves its workers to give up on their own


def child_env(slot: WorkerSlot, storage_url: str) -> dict[str, str]:
    """The environment of a worker or agent process: this one's, the slot's threads and device, the storage.

    The storage URL goes in ``$DIGITUNE_STORAGE``, never on the command line, where any user
    of the machine could read its password in the process list.
    """
    return {**os.environ, **slot.env(), STORAGE_ENV: storage_url, PARENT_ENV: str(os.getpid())}


def spawn(slot: WorkerSlot, storage_url: str, args: Sequence[str]) -> subprocess.Popen:
    """Start the ``digitune`` command ``args`` as a child process for ``slot`` (the storage in its environment)."""
    return subprocess.Popen(python_command(*args), env=child_env(slot, storage_url))


class Team:
    """Child processes running the ``digitune`` command ``args``, one per slot, on the storage ``url``.

    ``start`` spawns those not yet started; ``supervise`` waits for all of them, starting again
    one that exits ``RECYCLE_EXIT``; ``exit_code`` is what their parent ends with.
    """

    def __init__(self, slots: Sequence[WorkerSlot], url: str, args: Sequence[str]) -> None:
        self.slots, self.url, self.args = list(slots), url, list(args)
        self.procs: list[subprocess.Popen] = []
        self.recycled = 0

    def start(self) -> None:
        self.procs.extend(spawn(slot, self.url, self.args) for slot in self.slots[len(self.procs):])

    def stopping(self) -> contextlib.AbstractContextManager:
        """A block on whose Ctrl-C, SIGTERM or lost database the team ends too (``stopping_workers``)."""
        return stopping_workers(self.procs)

    def supervise(self, on_poll: Callable[[], None] | None = None) -> None:
        self.recycled += supervise(self.procs, restart=lambda i: spawn(self.slots[i], self.url, self.args),
                                   on_poll=on_poll)

    @property
    def codes(self) -> list[int | None]:
        return [p.returncode for p in self.procs]

    def exit_code(self) -> int:
        return exit_code(self.procs, self.url)


def stop_workers(procs: list[subprocess.Popen], signum: int = signal.SIGINT, *, grace: float = 3.0) -> None:
    """Stop worker processes after their parent was interrupted, each signalled once.

    A terminal's Ctrl-C reaches the whole process group, so the workers usually stop by
    themselves (their running trial marked failed, "interrupted"); a second signal would make
    them stop at once, mid-write. So only those still running after ``grace`` seconds (the
    signal went to the parent alone: ``kill``, a service manager) get ``signum``.
    """
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(p.poll() is None for p in procs):
        time.sleep(0.1)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signum)
    for p in procs:
        try:
            p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@contextlib.contextmanager
def stopping_workers(procs: list[subprocess.Popen]) -> Iterator[None]:
    """``procs`` (the list may grow inside) end when this block ends on Ctrl-C, SIGTERM or a database given up on.

    Ctrl-C and SIGTERM are passed on (``stop_workers``); workers facing the same lost database
    give up by themselves within moments (those still waiting after ``GAVE_UP_GRACE`` get SIGTERM).
    """
    try:
        yield
    except KeyboardInterrupt as exc:
        stop_workers(procs, signal.SIGTERM if str(exc) == "SIGTERM" else signal.SIGINT)
        raise
    except StorageUnreachable:
        stop_workers(procs, signal.SIGTERM, grace=GAVE_UP_GRACE)
        raise


def supervise(procs: list[subprocess.Popen], restart: Callable[[int], subprocess.Popen] | None = None,
              on_poll: Callable[[], None] | None = None) -> int:
    """Wait for worker processes to end, calling ``on_poll`` every second; how many were restarted.

    One that exits ``RECYCLE_EXIT`` is replaced by ``restart(its index)``. Ctrl-C and SIGTERM
    to this process reach the workers (``stopping_workers``) and raise ``KeyboardInterrupt``.
    """
    recycled = 0
    with stopping_workers(procs), interrupts() as interrupt:
        while True:
            interrupt.check()
            for i, p in enumerate(procs):
                if restart is not None and p.poll() == RECYCLE_EXIT:
                    procs[i] = restart(i)
                    recycled += 1
            if all(p.poll() is not None for p in procs):
                return recycled
            time.sleep(1.0)
            if on_poll is not None:
                on_poll()


def exit_code(procs: list[subprocess.Popen], storage_url: str) -> int:
    """The exit code a parent ends with after its ended workers (0 if all ended well).

    ``StorageUnreachable`` (one ``error:`` line) if one gave up waiting for the database.
    """
    codes = [p.returncode for p in procs]
    if GAVE_UP_EXIT in codes:
        raise StorageUnreachable(
            f"storage {redact(storage_url)} stayed unreachable for {reconnect_seconds():.0f} s, so "
            f"{codes.count(GAVE_UP_EXIT)} worker process(es) stopped; a trial left running is failed after the "
            f"heartbeat grace period and tried again; run the command again once the database is back")
    return next((c for c in codes if c), 0)
