"""The ``dashboard`` command: starts the Streamlit app in ``dashboard/app.py`` on a storage."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from ._common import StorageOption, err, user_errors
from .._env import TOKEN_ENV
from ..service._spawn import python_module
from ..storage._open import STORAGE_ENV

MAX_UPLOAD_MB = 2


def app_path() -> Path:
    """``dashboard/app.py`` of the installed digitune, found without importing the dashboard."""
    spec = importlib.util.find_spec("digitune.dashboard")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the dashboard package is not installed; run `pip install -e .`")
    return Path(next(iter(spec.submodule_search_locations))) / "app.py"


def streamlit_command(url: str, host: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The ``python -m streamlit run`` command line and its environment for the dashboard on ``url``.

    The URL travels in ``$DIGITUNE_STORAGE``, never on the command line, where any user of
    the machine could read a password in the process list. Uploads are capped at
    ``MAX_UPLOAD_MB`` (the app takes PNGs of 1 MiB and study files at most).
    """
    command = python_module("streamlit", "run", str(app_path()),
                            "--server.address", host, "--server.port", str(port),
                            "--server.headless", "true", "--browser.gatherUsageStats", "false",
                            "--server.maxUploadSize", str(MAX_UPLOAD_MB))
    return command, {**os.environ, STORAGE_ENV: url}


def is_loopback(host: str) -> bool:
    """Whether ``host`` serves this machine only: ``localhost`` or an address in 127.0.0.0/8 or ::1.

    The address is read as the server will bind it (``getaddrinfo``, numeric only, no DNS), so
    the short forms ``127.1`` and ``2130706433`` and the IPv4-mapped ``::ffff:127.0.0.1`` count.
    Any other host name may resolve to a network address: not loopback.
    """
    if host.lower() == "localhost":
        return True
    try:
        found = socket.getaddrinfo(host.strip("[]"), None, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):  # a host name, or nothing (every interface)
        return False
    addresses = [ipaddress.ip_address(info[4][0]) for info in found]
    return bool(addresses) and all((getattr(a, "ipv4_mapped", None) or a).is_loopback for a in addresses)


def access_note(host: str, port: int) -> str | None:
    """A warning for a page served beyond this machine: it has no login unless a token is set."""
    if is_loopback(host):
        return None
    if os.environ.get(TOKEN_ENV, "").strip():
        return (f"note: http://{host}:{port} is served to the network; the page asks for the token in "
                f"${TOKEN_ENV} before it shows anything")
    return (f"warning: http://{host}:{port} is served to the network and the page has no login: anyone who can "
            f"reach it sees every study and can launch, stop and resume them; set ${TOKEN_ENV} to a long "
            f"random token (e.g. export {TOKEN_ENV}=$(python -c 'import secrets; print(secrets.token_urlsafe())')) "
            f"to require it, or serve 127.0.0.1 behind an SSH tunnel")


@user_errors
def dashboard(
    storage: StorageOption = None,
    host: Annotated[str, typer.Option(
        "--host", help="Address to listen on; the default serves this machine only. 0.0.0.0 serves the network.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8501,
) -> None:
    """Open the dashboard on the storage: studies, trials and plots, refreshed live.

    Serves http://HOST:PORT until Ctrl-C. It writes to the study database only to submit, stop
    and resume studies (Launch and Queue pages). With $DIGITUNE_DASHBOARD_TOKEN set, the page
    asks for that token before it shows anything.
    """
    from .. import redact, resolve_storage_url

    if importlib.util.find_spec("streamlit") is None:
        err.print("error: the dashboard needs Streamlit and Plotly; install them with: pip install -e .",
                  markup=False, highlight=False)
        raise typer.Exit(2)
    url = resolve_storage_url(storage)
    command, env = streamlit_command(url, host, port)
    err.print(f"dashboard for {redact(url)} at http://{host}:{port} (Ctrl-C stops it)", markup=False,
              highlight=False)
    note = access_note(host, port)
    if note:
        err.print(note, markup=False, highlight=False, soft_wrap=True)
    sys.stderr.flush()
    sys.stdout.flush()
    # Streamlit takes over this process: Ctrl-C and SIGTERM stop its server cleanly, with no child left behind.
    os.execve(sys.executable, command, env)
