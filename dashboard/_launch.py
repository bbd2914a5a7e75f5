"""Launching from the dashboard: submit a study to the queue, start a local agent if none runs.

Why it is built this way: docs/internals.md, "dashboard/_launch.py".
"""

from __future__ import annotations

import itertools
import os
import pwd
import re
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from digitune.search.service._spawn import python_command
from digitune.search.storage._open import STORAGE_ENV

LAUNCH_DIR_ENV = "DIGITUNE_LAUNCH_DIR"
DATASETS = ("digits", "fashion-mnist", "mnist")
MAX_FILE_STEM = 80  # characters of the study name kept in its file's name
LOG_TAIL_BYTES = 64 * 1024  # the end of an agent's log that the page reads


class LaunchFolderError(PermissionError):
    """A launch folder that others could write to; the message says why and what to do."""


@dataclass
class LocalAgent:
    """A ``digitune agent`` the dashboard started on this machine."""

    log_file: Path  # shown to the user; the log is read through ``log_fd``, never by this name again
    process: subprocess.Popen
    workers: int = 1
    started: float = field(default_factory=time.time)
    log_fd: int | None = None

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def log_tail(self, lines: int = 12) -> str:
        """The log's last ``lines`` lines (of its last ``LOG_TAIL_BYTES``), read from the file the agent writes."""
        if self.log_fd is None:
            return ""
        try:
            size = os.fstat(self.log_fd).st_size
            text = os.pread(self.log_fd, LOG_TAIL_BYTES, max(0, size - LOG_TAIL_BYTES)).decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

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
    from digitune.search import spec_from_dict

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
    """The launch folder (``folder``, else ``$DIGITUNE_LAUNCH_DIR``, else a private one), made if missing.

    ``LaunchFolderError`` if it is not this user's own or others can write to it.
    """
    path, default = _chosen_folder(folder)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_private(path, default)
    return path


def launch_folder_problem(folder: str | os.PathLike | None = None) -> str | None:
    """Why the launch folder would be refused, or None (also when it does not exist yet); creates nothing."""
    path, default = _chosen_folder(folder)
    try:
        if os.path.lexists(path):
            _check_private(path, default)
    except OSError as exc:
        return str(exc)
    return None


def _chosen_folder(folder: str | os.PathLike | None) -> tuple[Path, bool]:
    """The launch folder's path and whether it is the default one."""
    chosen = folder or os.environ.get(LAUNCH_DIR_ENV, "").strip()
    if chosen:
        return Path(chosen), False
    return Path(tempfile.gettempdir()) / f"digitune-launches-{os.geteuid()}", True


def _check_private(path: Path, default: bool) -> None:
    """``LaunchFolderError`` unless ``path`` is a folder of this user's that no one else can write to.

    A chosen folder may be a link to one; the default, in a folder every user shares, may not.
    """
    info = os.lstat(path) if default else os.stat(path)
    fix = f"set ${LAUNCH_DIR_ENV} to a folder of your own (e.g. mkdir -m 700 ~/digitune-launches)"
    if stat.S_ISLNK(info.st_mode):
        raise LaunchFolderError(f"the launch folder {path} is a symbolic link, which anyone could have made; {fix}")
    if not stat.S_ISDIR(info.st_mode):
        raise LaunchFolderError(f"the launch folder {path} is not a folder; {fix}")
    if info.st_uid != os.geteuid():
        raise LaunchFolderError(f"the launch folder {path} belongs to {_user(info.st_uid)}, not to you "
                                f"({_user(os.geteuid())}): its owner could plant or swap files in it; {fix}")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise LaunchFolderError(f"the launch folder {path} can be written by other users (mode "
                                f"{stat.S_IMODE(info.st_mode):04o}): they could plant or swap files in it; run "
                                f"chmod go-w {path}, or {fix}")


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def submit_definition(definition: dict[str, Any], storage_url: str, *, priority: int = 0,
                      folder: str | os.PathLike | None = None):
    """Submit ``definition`` to the queue, keeping it as a study file in the launch folder; its ``QueueEntry``.

    The spec submitted is the one parsed here; the file is written from it and never read back.
    """
    import tomli_w

    from digitune.search import open_storage, spec_from_dict, submit

    study_file = study_file_path(definition["study"]["name"], folder)
    spec = spec_from_dict(definition, source=str(study_file))
    _write_atomically(study_file, tomli_w.dumps(spec.to_dict()))
    return submit(spec, open_storage(storage_url), priority=priority)


def study_file_path(name: str, folder: str | os.PathLike | None = None) -> Path:
    """A new file in the launch folder for study ``name``, whatever the name holds (``../x``, ``/abs``, ``a\\b``).

    The study keeps its name in the queue; only the file's name is made safe: letters, digits,
    ``-`` and ``_`` (anything else becomes ``_``), at most ``MAX_FILE_STEM`` of them, then the
    time. ``ValueError`` if the path still lands outside the folder (it cannot; checked anyway).
    """
    base = launch_folder(folder).resolve()
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_-")[:MAX_FILE_STEM] or "study"
    path = next(p for p in _new_names(base, stem, ".toml") if not os.path.lexists(p))
    if path.resolve().parent != base:
        raise ValueError(f"study file {path} would lie outside the launch folder {base}")
    return path


def _new_names(folder: Path, stem: str, suffix: str) -> Iterator[Path]:
    """``STEM-TIME.SUFFIX`` in ``folder``, then ``STEM-TIME-2.SUFFIX`` and on (two in one second)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    yield folder / f"{stem}-{stamp}{suffix}"
    for n in itertools.count(2):
        yield folder / f"{stem}-{stamp}-{n}{suffix}"


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
    from digitune.search import list_agents

    return [a for a in list_agents(storage) if a["status"] in ("working", "idle")]


def start_agent(storage_url: str, *, workers: int = 1, folder: str | os.PathLike | None = None) -> LocalAgent:
    """Start ``digitune agent`` in the background on ``storage_url``, with its output in the launch folder.

    The log is a new file (``O_EXCL | O_NOFOLLOW``, mode 0600): a link or file planted under
    its name is passed over, never followed or overwritten.
    """
    log_file, log_fd = _create_log(launch_folder(folder))
    command = python_command("agent", "--poll", "2")
    if workers > 1:
        command += ["--workers", str(workers)]
    try:
        # The storage goes in the environment: a password on the command line would show in the process list.
        process = subprocess.Popen(command, stdout=log_fd, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1", STORAGE_ENV: storage_url})
    except BaseException:
        os.close(log_fd)
        raise
    return LocalAgent(log_file, process, workers, log_fd=log_fd)


def _create_log(folder: Path) -> tuple[Path, int]:
    """A new ``agent-TIME.log`` in ``folder``, open for reading and writing (a name already taken is skipped)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for path in _new_names(folder, "agent", ".log"):
        try:
            return path, os.open(path, flags, 0o600)
        except FileExistsError:
            continue
    raise AssertionError("unreachable: _new_names never ends")
