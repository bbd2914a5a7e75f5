"""A child process digitune started (a worker or an agent process): its end with the parent, threads, exits."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from typing import Iterator

from .._env import PARENT_ENV, THREADS_ENV
from ..storage._reconnect import StorageUnreachable
from ._team import GAVE_UP_EXIT

PR_SET_PDEATHSIG = 1  # Linux prctl(2)


@contextlib.contextmanager
def child_process() -> Iterator[bool]:
    """The body of ``digitune worker`` and ``agent-process``; yields whether digitune started this process.

    A process digitune started (``child_env``) ends with its parent, and leaves a database
    that stayed away to its parent to report (one ``error:`` line in all, not one a process):
    here a log line and exit ``GAVE_UP_EXIT``.
    """
    spawned = _end_with_parent()
    try:
        yield spawned
    except StorageUnreachable:
        if not spawned:
            raise
        logging.getLogger("digitune").warning("process %d stops: the database stayed unreachable", os.getpid())
        raise SystemExit(GAVE_UP_EXIT) from None


def _end_with_parent() -> bool:
    """If digitune started this process, have it sent SIGTERM when its parent dies; whether it did.

    Linux's ``PR_SET_PDEATHSIG`` (through ctypes: no library offers it) has the kernel signal
    the child the moment its parent dies, even by SIGKILL, whatever the child is doing:
    importing TensorFlow, training, waiting for the database. SIGTERM then stops it at its
    next safe point like any signalled worker. (A poll of ``os.getppid()`` would notice
    only between trials.) The kernel watches the thread that started the child: digitune
    starts workers from its main thread. A parent gone before this ran shows in ``getppid``.
    """
    parent = os.environ.pop(PARENT_ENV, "")
    if not parent.isdigit():
        return False
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != int(parent):  # the parent died before the line above ran
        os.kill(os.getpid(), signal.SIGTERM)
    return True


def apply_thread_budget() -> None:
    """Give this process's backend the thread budget its launcher set in ``$DIGITUNE_THREADS``."""
    threads = os.environ.get(THREADS_ENV)
    if not threads:
        return
    import keras

    if keras.backend.backend() == "tensorflow":
        import importlib

        config = importlib.import_module("tensorflow").config.threading
        config.set_intra_op_parallelism_threads(int(threads))
        config.set_inter_op_parallelism_threads(1)
    elif keras.backend.backend() == "torch":
        import importlib

        importlib.import_module("torch").set_num_threads(int(threads))


def prepare_worker(*, mixed_precision: bool) -> None:
    """A worker's or agent's process before it trains: its thread budget, and mixed float16 if asked."""
    apply_thread_budget()
    if mixed_precision:
        import keras

        keras.mixed_precision.set_global_policy("mixed_float16")


def interrupted_exit(signal_name: str) -> int:
    """The exit code after Ctrl-C or SIGTERM: 143 for SIGTERM, else 130 (as a shell reports them)."""
    return 143 if signal_name == "SIGTERM" else 130
