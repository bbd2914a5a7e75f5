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
