"""Launching from the dashboard: submit a study to the queue, start a local agent if none runs.

The form's study goes to the queue (``search.submit``) exactly as ``digitune submit`` would
send it, and its file is kept in the launch folder. When no live agent is registered on the
storage, the dashboard starts one here (``digitune agent``, in its own process group, its
output in a log file) and says so. Stopping a study sets its queue state (agents leave it
after the running trial); stopping the local agent sends it SIGINT. Submitting, stopping
and resuming are the only things the dashboard writes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search._storage import STORAGE_ENV

LAUNCH_DIR_ENV = "DIGITUNE_LAUNCH_DIR"
DATASETS = ("digits", "fashion-mnist", "mnist")
MAX_FILE_STEM = 80  # characters of the study name kept in its file's name


@dataclass
class LocalAgent:
    """A ``digitune agent`` the dashboard started on this machine."""

    log_file: Path
    process: subprocess.Popen
    workers: int = 1
    started: float = field(default_factory=time.time)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def log_tail(self, lines: int = 12) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 60) -> int | None:
        """Ctrl-C for the agent and its processes; waits up to ``timeout`` seconds for the running trial's end."""
        if self.running:
            try:
                os.killpg(self.process.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(10)
        return self.returncode


def study_from_fields(*, name: str, dataset: str, trials: int, sampler: str, pruner: str,
                      families: list[str], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A study definition (TOML-shaped dict) from the form's few fields over ``base`` (a quickstart-like space)."""
    from search import spec_from_dict

    data = dict(base or _quickstart())
    data = {key: dict(value) for key, value in data.items()}
    data["study"].update(name=name, trials=trials, sampler=sampler, pruner=pruner)
    data["data"]["source"] = dataset
    space = dict(data.get("space", {}))
    space["family"] = families if len(families) > 1 else families[0]
    data["space"] = space
    spec = spec_from_dict(data, source="the launch form")  # SpecError names what is wrong
    return spec.to_dict()


def _quickstart() -> dict[str, Any]:
    import tomllib

    path = Path(__file__).resolve().parent.parent / "studies" / "quickstart.toml"
    if path.is_file():
        return tomllib.loads(path.read_text())
    return {"study": {"name": "quickstart"}, "data": {"source": "digits"}, "space": {}}


def launch_folder(folder: str | os.PathLike | None = None) -> Path:
    path = Path(folder or os.environ.get(LAUNCH_DIR_ENV) or Path(tempfile.gettempdir()) / "digitune-launches")
    path.mkdir(parents=True, exist_ok=True)
    return path


def submit_definition(definition: dict[str, Any], storage_url: str, *, priority: int = 0,
                      folder: str | os.PathLike | None = None):
    """Write ``definition`` as a study file in the launch folder and submit it to the queue; its ``QueueEntry``."""
    import tomli_w

    from search import load_spec, open_storage, submit

    study_file = study_file_path(definition["study"]["name"], folder)
    _write_atomically(study_file, tomli_w.dumps(definition))
    return submit(load_spec(study_file), open_storage(storage_url), priority=priority)


def study_file_path(name: str, folder: str | os.PathLike | None = None) -> Path:
    """A new file in the launch folder for study ``name``, whatever the name holds (``../x``, ``/abs``, ``a\\b``).

    The study keeps its name in the queue; only the file's name is made safe: letters, digits,
    ``-`` and ``_`` (anything else becomes ``_``), at most ``MAX_FILE_STEM`` of them, then the
    time. ``ValueError`` if the path still lands outside the folder (it cannot; checked anyway).
    """
    base = launch_folder(folder).resolve()
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_-")[:MAX_FILE_STEM] or "study"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = base / f"{stem}-{stamp}.toml"
    for n in range(2, 1000):
        if not path.exists():
            break
        path = base / f"{stem}-{stamp}-{n}.toml"  # two launches of one name in one second
    if path.resolve().parent != base:
        raise ValueError(f"study file {path} would lie outside the launch folder {base}")
    return path


def _write_atomically(path: Path, text: str) -> None:
    """``text`` into ``path`` by a temp file beside it, renamed into place (a reader never sees half a file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def live_agents(storage) -> list[dict[str, Any]]:
    """Registered agents that are alive (working or idle) on ``storage``."""
    from search import list_agents

    return [a for a in list_agents(storage) if a["status"] in ("working", "idle")]


def start_agent(storage_url: str, *, workers: int = 1, folder: str | os.PathLike | None = None) -> LocalAgent:
    """Start ``digitune agent`` in the background on ``storage_url``, with its output in the launch folder."""
    log_file = launch_folder(folder) / f"agent-{time.strftime('%Y%m%d-%H%M%S')}.log"
    command = [sys.executable, "-m", "search.cli", "agent", "--poll", "2"]
    if workers > 1:
        command += ["--workers", str(workers)]
    with log_file.open("w") as log:
        # The storage goes in the environment: a password on the command line would show in the process list.
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1", STORAGE_ENV: storage_url})
    return LocalAgent(log_file, process, workers)
