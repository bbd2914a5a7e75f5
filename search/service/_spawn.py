"""The one place that builds the command line of a digitune child process.

``python -P`` keeps the current folder off the child's import path, so a user's own
``models.py`` or ``search.py`` beside their study file is never imported in its place.
"""

from __future__ import annotations

import sys

CLI_MODULE = "digitune.search.cli"


def python_command(*args: str) -> list[str]:
    """``[python, -P, -m, digitune.search.cli, *args]``: a ``digitune`` command as a child process."""
    return [sys.executable, "-P", "-m", CLI_MODULE, *args]


def python_module(module: str, *args: str) -> list[str]:
    """``[python, -P, -m, module, *args]``: another library's command (``streamlit run``) as a child process."""
    return [sys.executable, "-P", "-m", module, *args]


def worker_args(name: str, *, trials: int, deadline: float | None, artifacts: str | None,
                mixed_precision: bool = False, recycle_after: int = 0) -> list[str]:
    """``digitune worker`` on study ``name``; ``deadline`` is the run's, a wall-clock time shared by every worker."""
    args = ["worker", name, "--trials", str(trials), "--no-progress", "--recycle-after", str(recycle_after)]
    args += ["--deadline", repr(deadline)] if deadline is not None else []
    args += ["--artifacts", artifacts] if artifacts else []
    return args + (["--mixed-precision"] if mixed_precision else [])


def agent_args(*, poll: float, until_idle: bool, artifacts: str | None, mixed_precision: bool,
               recycle_after: int) -> list[str]:
    """``digitune agent-process``: one agent under ``digitune agent --workers N``."""
    args = ["agent-process", "--poll", str(poll), "--recycle-after", str(recycle_after)]
    args += ["--until-idle"] if until_idle else []
    args += ["--artifacts", artifacts] if artifacts else []
    return args + (["--mixed-precision"] if mixed_precision else [])
