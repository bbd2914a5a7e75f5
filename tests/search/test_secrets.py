"""Secrets stay secret: no storage URL or password on any child's command line, none in a message."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from sqlalchemy.engine import make_url

from conftest import digitune_exe, run_cli, write_study
from digitune.search import FINISHED, redact

pytestmark = pytest.mark.slow
PASSWORD = "S3cr@t:p/w#x"  # '@', ':', '/' and '#': percent-encoded in the URL, raw in what a parser gives back


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql+psycopg://u:Secr3t@Pw@host/db", "postgresql+psycopg://u:***@host/db"),
    ("postgresql+psycopg://u:a:b/c#d@host:5432/db?x=1", "postgresql+psycopg://u:***@host:5432/db?x=1"),
    ("postgresql+psycopg://u:p@ss?w@[::1]:5432/db", "postgresql+psycopg://u:***@[::1]:5432/db"),
    ("postgresql+psycopg://u:S3cr%40t@host/db", "postgresql+psycopg://u:***@host/db"),
    ("postgresql://u@host/db?sslmode=require&password=hunter2", "postgresql://u@host/db?sslmode=require&password=***"),
    ("grpc://u:pw@proxy:13000", "grpc://u:***@proxy:13000"),
    ("postgresql+psycopg://alice@db.example:5432/studies", "postgresql+psycopg://alice@db.example:5432/studies"),
    ("sqlite:////tmp/a:b@c.db", "sqlite:////tmp/a:b@c.db"),  # a SQLite path is shown as it is
])
def test_redact_hides_the_whole_password(url, shown):
    assert redact(url) == shown


def test_an_at_sign_in_a_raw_password_is_refused_before_any_connection(tmp_path):
    # SQLAlchemy would read `Pw@127.0.0.1` as the host and look it up, password tail and all.
    result = run_cli("studies", "--storage", "postgresql+psycopg://u:Secr3t@Pw@127.0.0.1:1/db", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: storage URL 'postgresql+psycopg://u:***@127.0.0.1:1/db' has an '@' in "
                                     "its password; write it as %40 (percent-encode the password, e.g. with "
                                     "urllib.parse.quote(password, safe=''))")
    assert "Secr3t" not in result.stdout + result.stderr and "Pw" not in result.stdout + result.stderr


@pytest.fixture
def secret_url(postgres_url) -> str:
    """A fresh PostgreSQL database's URL with a password (the local server trusts any)."""
    return make_url(postgres_url).set(password=PASSWORD).render_as_string(hide_password=False)


def _cmdline(pid: int) -> str:
    """``pid``'s command line, arguments joined by spaces ("" once it has ended)."""
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _family(pid: int) -> dict[int, str]:
    """``pid`` and every live descendant of it: its command line, arguments joined by spaces."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # it ended meanwhile
                continue
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found, frontier = {pid: _cmdline(pid)}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = _cmdline(child)
                frontier.append(child)
    return found


def _assert_no_secret(cmdlines, url: str) -> None:
    encoded = make_url(url).render_as_string(hide_password=False).split("//", 1)[1].split("@")[0].split(":", 1)[1]
    for pid, cmdline in cmdlines.items():
        for secret in (PASSWORD, encoded, "S3cr", url, "postgresql"):
            assert secret not in cmdline, f"pid {pid}: {cmdline}"


def _watch(proc: subprocess.Popen, url: str, wanted: str, count: int, timeout: float = 180) -> dict[int, str]:
    """Poll ``proc`` and its descendants until ``count`` run ``wanted``; every one seen is checked for secrets."""
    deadline = time.monotonic() + timeout
    while True:
        seen = _family(proc.pid)
        _assert_no_secret(seen, url)
        if sum(wanted in c for c in seen.values()) >= count:
            return seen
        assert proc.poll() is None, f"it ended ({proc.returncode}) before {count} '{wanted}' processes ran"
        assert time.monotonic() < deadline, f"no {count} '{wanted}' processes in {timeout} s: {seen}"
        time.sleep(0.2)


def _kill_family(proc: subprocess.Popen) -> None:
    """After a failed check: no process of the test's is left running."""
    if proc.poll() is None:
        for pid in _family(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(30)


def _env(url: str) -> dict[str, str]:
    env = {**os.environ, "DIGITUNE_STORAGE": url}
    env.pop("DIGITUNE_WORKERS", None)
    return env


def _run_watched(args: list[str], cwd: Path, url: str, wanted: str, count: int) -> tuple[int, str]:
    """Run ``digitune ARGS`` with the storage in its environment, checking its processes while they run."""
    proc = subprocess.Popen([digitune_exe(), *args], cwd=cwd, env=_env(url), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        _watch(proc, url, wanted, count)
        output, _ = proc.communicate(timeout=300)
    finally:
        _kill_family(proc)
    return proc.returncode, output


def _finished(url: str, name: str) -> int:
    return len(optuna.load_study(study_name=name, storage=url).get_trials(states=FINISHED))


def test_run_workers_get_the_storage_in_their_environment(tmp_path, secret_url):
    study = write_study(tmp_path, "secret_run", trials=3, family='"mlp"', pruner="none")
    code, output = _run_watched(["run", str(study), "--workers", "2"], tmp_path, secret_url,
                                "search.cli worker secret_run", 1)
    assert code == 0, output
    assert _finished(secret_url, "secret_run") == 3  # the worker found the storage in its environment
    assert "S3cr" not in output and "postgres:***@127.0.0.1" in output


def test_agent_processes_get_the_storage_in_their_environment(tmp_path, secret_url):
    study = write_study(tmp_path, "secret_queue", trials=2, family='"mlp"', pruner="none")
    submitted = run_cli("submit", str(study), cwd=tmp_path, env={"DIGITUNE_STORAGE": secret_url})
    assert submitted.returncode == 0, submitted.stderr
    assert "S3cr" not in submitted.stdout + submitted.stderr and "postgres:***@127.0.0.1" in submitted.stdout
    code, output = _run_watched(["agent", "--workers", "2", "--until-idle", "--poll", "0.5"], tmp_path, secret_url,
                                "search.cli agent-process", 2)
    assert code == 0, output
    assert _finished(secret_url, "secret_queue") == 2  # the agent processes found the storage in their environment
    assert "S3cr" not in output and "2 agent processes" in output
    queue = run_cli("queue", cwd=tmp_path, env={"DIGITUNE_STORAGE": secret_url})
    assert queue.returncode == 0 and "S3cr" not in queue.stdout + queue.stderr


def test_an_agent_the_dashboard_starts_keeps_the_storage_off_command_lines(tmp_path, secret_url):
    from digitune.dashboard._launch import start_agent

    agent = start_agent(secret_url, workers=2, folder=tmp_path)
    try:
        _watch(agent.process, secret_url, "search.cli agent-process", 2)
    finally:
        agent.stop(timeout=60)
    assert "S3cr" not in agent.log_tail(200)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_dashboard_server_gets_the_storage_in_its_environment(tmp_path, secret_url):
    log = tmp_path / "dashboard.log"
    with log.open("w") as handle:
        proc = subprocess.Popen([digitune_exe(), "dashboard", "--port", str(_free_port())], cwd=tmp_path,
                                env=_env(secret_url), stdout=handle, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "streamlit" not in (cmdline := _cmdline(proc.pid)):  # digitune execs Streamlit in its place
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        _assert_no_secret({proc.pid: cmdline}, secret_url)
        assert "--storage" not in cmdline
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert "S3cr" not in log.read_text() and "postgres:***@127.0.0.1" in log.read_text()
