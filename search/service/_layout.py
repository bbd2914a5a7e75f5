"""Worker layouts: how many worker processes, their thread budgets and their GPUs.

``digitune run --workers N`` and ``--gpus`` (and ``agent``) run processes, not threads (Keras
and Python's GIL make threads a poor fit), each with its own thread budget or its own GPU.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from .._env import THREADS_ENV, WORKERS_ENV

MAX_DEFAULT_WORKERS = 8  # each worker holds its own TensorFlow (about 1 GiB); more cores get more threads each


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

    ``$DIGITUNE_WORKERS``; else ``study`` (the file's ``workers``); else one with a GPU; else one
    single-thread worker per core, at most ``MAX_DEFAULT_WORKERS``. Why it is built this way:
    docs/internals.md, "search/service/_layout.py default_workers".
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
