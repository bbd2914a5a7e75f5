"""Launching a study from the dashboard: the only thing the dashboard writes.

A launch writes a study file and starts ``digitune run FILE --storage URL [--workers N]`` as a
background process in its own process group, with its output in a log file. Stopping sends
it SIGINT, which digitune turns into a clean stop at the end of the running batch (its
workers get the signal too). Launches live in the dashboard process; their study files and
logs stay in the launch folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LAUNCH_DIR_ENV = "DIGITUNE_LAUNCH_DIR"
DATASETS = ("digits", "fashion-mnist", "mnist")


@dataclass
class Launch:
    name: str
    study_file: Path
    log_file: Path
    process: subprocess.Popen
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
        """Ctrl-C for the launched run and its workers; waits up to ``timeout`` seconds for them to finish."""
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


def launch(definition: dict[str, Any], storage_url: str, *, workers: int = 1,
           folder: str | os.PathLike | None = None) -> Launch:
    """Write ``definition`` as a study file and start ``digitune run`` on it in the background."""
    import tomli_w

    folder = Path(folder or os.environ.get(LAUNCH_DIR_ENV) or Path(tempfile.gettempdir()) / "digitune-launches")
    folder.mkdir(parents=True, exist_ok=True)
    name = definition["study"]["name"]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    study_file = folder / f"{name}-{stamp}.toml"
    study_file.write_text(tomli_w.dumps(definition))
    log_file = folder / f"{name}-{stamp}.log"
    # The storage goes in the environment: a password on the command line would show in the process list.
    command = [sys.executable, "-m", "search.cli", "run", str(study_file)]
    if workers > 1:
        command += ["--workers", str(workers)]
    with log_file.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1", "DIGITUNE_STORAGE": storage_url})
    return Launch(name, study_file, log_file, process)
