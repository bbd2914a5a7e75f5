"""The ``dashboard`` command: starts the Streamlit app in ``dashboard/app.py`` on a storage."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from search._cli_common import StorageOption, app, err, user_errors


def app_path() -> Path:
    """``dashboard/app.py`` of the installed digitune, found without importing the dashboard."""
    spec = importlib.util.find_spec("dashboard")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the dashboard package is not installed; run `pip install -e .`")
    return Path(next(iter(spec.submodule_search_locations))) / "app.py"


def streamlit_command(url: str, host: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The ``python -m streamlit run`` command line and its environment for the dashboard on ``url``.

    A URL with a password travels in ``$DIGITUNE_STORAGE`` rather than on the command
    line, where any user of the machine could read it in the process list.
    """
    from sqlalchemy.engine import make_url

    command = [sys.executable, "-m", "streamlit", "run", str(app_path()),
               "--server.address", host, "--server.port", str(port),
               "--server.headless", "true", "--browser.gatherUsageStats", "false", "--"]
    env = dict(os.environ)
    try:
        secret = make_url(url).password is not None
    except Exception:  # noqa: BLE001 (not a URL SQLAlchemy knows; the app reports it)
        secret = False
    if secret:
        env["DIGITUNE_STORAGE"] = url
    else:
        command += ["--storage", url]
    return command, env


@app.command()
@user_errors
def dashboard(
    storage: StorageOption = None,
    host: Annotated[str, typer.Option(
        "--host", help="Address to listen on; the default serves this machine only. 0.0.0.0 serves the network.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8501,
) -> None:
    """Open the dashboard on the storage: studies, trials and plots, refreshed live, read-only.

    Serves http://HOST:PORT until Ctrl-C. It never writes to the study database.
    """
    from search import redact, resolve_storage_url

    if importlib.util.find_spec("streamlit") is None:
        err.print("error: the dashboard needs Streamlit and Plotly; install them with: pip install -e .",
                  markup=False, highlight=False)
        raise typer.Exit(2)
    url = resolve_storage_url(storage)
    command, env = streamlit_command(url, host, port)
    err.print(f"dashboard for {redact(url)} at http://{host}:{port} (Ctrl-C stops it)", markup=False,
              highlight=False)
    sys.stderr.flush()
    sys.stdout.flush()
    # Streamlit takes over this process: Ctrl-C and SIGTERM stop its server cleanly, with no child left behind.
    os.execve(sys.executable, command, env)
