"""The team service: the study queue, agents, and the worker processes (plan, spawn, supervise).

``Team`` is the one owner of child processes (spawn, supervise, restart, exit code), for
``run``'s workers and ``agent``'s processes alike; the storage URL always travels in their
environment, never on a command line.
"""

from ._agent import serve
from ._child import apply_thread_budget, child_process, interrupted_exit, prepare_worker
from ._layout import WorkerLayoutError, WorkerSlot, available_cpus, default_workers, describe_layout, plan_workers
from ._spawn import agent_args, python_command, python_module, worker_args
from ._team import GAVE_UP_EXIT, RECYCLE_EXIT, Team, child_env, stopping_workers

__all__ = [
    "GAVE_UP_EXIT", "RECYCLE_EXIT", "Team", "WorkerLayoutError", "WorkerSlot", "agent_args", "apply_thread_budget",
    "available_cpus", "child_env", "child_process", "default_workers", "describe_layout", "interrupted_exit",
    "plan_workers", "prepare_worker", "python_command", "python_module", "serve", "stopping_workers", "worker_args",
]
