"""Several worker processes on one study: their layout, thread budgets and devices.

``digitune run --workers N`` and ``--gpus`` start ``digitune worker`` processes (processes,
not threads: Keras and Python's GIL make threads a poor fit), each with its own thread
budget or its own GPU, all on the same study in the same storage.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from .._env import PARENT_ENV, THREADS_ENV, WORKERS_ENV
from ..storage._reconnect import StorageUnreachable, reconnect_seconds
from .._signals import interrupts
from ._spawn import python_command
from ..storage._open import STORAGE_ENV, redact

MAX_DEFAULT_WORKERS = 8  # each worker holds its own TensorFlow (about 1 GiB); more cores get more threads each
RECYCLE_EXIT = 75  # EX_TEMPFAIL: a worker that stopped after its --recycle-after trials, to be started again
GAVE_UP_EXIT = 69  # EX_UNAVAILABLE: a worker that waited for the database past the deadline (its parent says so)
GAVE_UP_GRACE = 15.0  # seconds a parent that gave up on the database leaves its workers to give up on their own
PR_SET_PDEATHSIG = 1  # Linux prctl(2)


class WorkerLayoutError(ValueError):
    """A --workers / --gpus request that cannot be met; the message says how to fix it."""


@dataclass(frozen=True)
class WorkerSlot:
    index: int
    threads: int
    gpu: str | None  # the CUDA device index this worker sees as its only GPU, or None for CPU

    def env(self) -> dict[str, str]:
        """Environment variables that give this worker its threads and device."""
        threads = str(self.threads)
        env = {
            THREADS_ENV: threads,
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads,
            "TF_NUM_INTRAOP_THREADS": threads,
            "TF_NUM_INTEROP_THREADS": "1",
            # Take GPU memory as needed instead of grabbing the whole card (TensorFlow, JAX).
            "TF_FORCE_GPU_ALLOW_GROWTH": "true",
            "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        }
        env["CUDA_VISIBLE_DEVICES"] = self.gpu if self.gpu is not None else ""
        return env


def detect_gpus() -> list[str]:
    """The NVIDIA GPU indices on this machine (from ``nvidia-smi -L``), or none."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(l for l in listing.splitlines() if l.startswith("GPU "))]


def available_cpus() -> int:
    """The cores this process may run on (its affinity mask, as a container or ``taskset`` limits it)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers(cpus: int | None = None, study: int | None = None) -> int:
    """How many workers ``digitune run`` and ``digitune agent`` start when ``--workers`` is not given.

    ``$DIGITUNE_WORKERS`` if set; else ``study`` (``run``: the study file's ``workers``); else
    one process that sees every GPU when there is one (``--gpus`` spreads work over cards
    instead); else one single-thread worker per core, at most ``MAX_DEFAULT_WORKERS``: on two
    cores two single-thread workers train 1.6x (digits) and 1.4x (Fashion-MNIST CNNs) the
    epochs per second of one two-thread worker (docs/benchmarks.md).
    """
    value = os.environ.get(WORKERS_ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise WorkerLayoutError(f"${WORKERS_ENV} must be a whole number of workers, at least 1; got {value!r} "
                                    f"(unset it for one worker per core)")
        return int(value)
    if study is not None:
        return study
    if detect_gpus():
        return 1
    return max(1, min(cpus or available_cpus(), MAX_DEFAULT_WORKERS))


def plan_workers(workers: int | None, gpus: str | None, per_gpu: int = 1, cpus: int | None = None, *,
                 study: int | None = None) -> list[WorkerSlot]:
    """The worker slots for ``--workers`` and ``--gpus`` (``all``, ``none`` or ``0,1,...``).

    With GPUs: ``per_gpu`` workers per listed GPU. Without: ``workers`` CPU workers
    (``default_workers(cpus, study)`` when None) sharing the cores evenly, each with at least one thread.
    """
    cpus = cpus or available_cpus()
    if gpus and gpus != "none":
        if gpus == "all":
            indices = detect_gpus()
            if not indices:
                raise WorkerLayoutError("--gpus all: no NVIDIA GPU found (nvidia-smi lists none); "
                                        "drop --gpus to run on the CPU")
        else:
            indices = [g.strip() for g in gpus.split(",")]
            if not all(g.isdigit() for g in indices) or len(set(indices)) != len(indices):
                raise WorkerLayoutError(f"--gpus expects all, none or distinct GPU indices like 0,1; got {gpus!r}")
        if per_gpu < 1:
            raise WorkerLayoutError(f"--trials-per-gpu must be at least 1, got {per_gpu}")
        count = len(indices) * per_gpu
        threads = max(1, cpus // count)
        return [WorkerSlot(i, threads, indices[i // per_gpu]) for i in range(count)]
    workers = default_workers(cpus, study) if workers is None else workers
    if workers < 1:
        raise WorkerLayoutError(f"--workers must be at least 1, got {workers}")
    threads = max(1, cpus // workers)
    return [WorkerSlot(i, threads, None) for i in range(workers)]


def describe_layout(slots: list[WorkerSlot]) -> str:
    """The slots as a person reads them, e.g. ``1 thread(s), 1 thread(s)`` or ``GPU 0, GPU 1``."""
    return ", ".join(f"GPU {s.gpu}" if s.gpu is not None else f"{s.threads} thread(s)" for s in slots)


def child_env(slot: WorkerSlot, storage_url: str) -> dict[str, str]:
    """The environment of a worker or agent process: this one's, the slot's threads and device, the storage.

    The storage URL goes in ``$DIGITUNE_STORAGE``, never on the command line, where any user
    of the machine could read its password in the process list.
    """
    return {**os.environ, **slot.env(), STORAGE_ENV: storage_url, PARENT_ENV: str(os.getpid())}


def start_worker(slot: WorkerSlot, name: str, storage_url: str, *, trials: int, deadline: float | None,
                 artifacts: str | None, mixed_precision: bool = False, recycle_after: int = 0) -> subprocess.Popen:
    """Start one ``digitune worker`` process for ``slot`` on study ``name`` (the storage in its environment).

    ``deadline`` is the run's time budget as a wall-clock time (``time.time()``): every worker,
    one restarted after ``recycle_after`` trials too, stops at the same moment.
    """
    cmd = python_command("worker", name, "--trials", str(trials), "--no-progress",
                         "--recycle-after", str(recycle_after))
    if deadline is not None:
        cmd += ["--deadline", repr(deadline)]
    if artifacts:
        cmd += ["--artifacts", artifacts]
    if mixed_precision:
        cmd.append("--mixed-precision")
    return subprocess.Popen(cmd, env=child_env(slot, storage_url))


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
