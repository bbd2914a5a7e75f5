"""``digitune storage-proxy``: Optuna's gRPC storage proxy over a SQLite file, workers on grpc://."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import warnings
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

import digitune.search.storage._open
from conftest import digitune_exe, run_cli, write_study
from digitune.search import StorageError, open_storage, resolve_storage_url
from digitune.search.cli import app
from test_postgres import check_shared_study, start_workers, wait_workers

pytestmark = pytest.mark.slow

runner = CliRunner()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_proxy(storage: str, port: int, cwd: Path) -> tuple[subprocess.Popen, Path]:
    """``digitune storage-proxy`` on 127.0.0.1:``port``, once it answers."""
    log = cwd / "proxy.err"
    env = {k: v for k, v in os.environ.items() if k != "DIGITUNE_STORAGE"}
    with log.open("w") as stderr:
        proc = subprocess.Popen([digitune_exe(), "storage-proxy", "--storage", storage, "--port", str(port)],
                                cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
    deadline = time.monotonic() + 120
    while "listening on" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the storage proxy did not start (exit {proc.poll()}):\n{log.read_text()}")
        time.sleep(0.2)
    return proc, log


def test_grpc_urls_resolve_and_open(monkeypatch):
    assert resolve_storage_url("grpc://127.0.0.1:13000") == "grpc://127.0.0.1:13000"
    monkeypatch.setenv("DIGITUNE_STORAGE", "grpc://10.0.0.5:13001")
    assert resolve_storage_url(None) == "grpc://10.0.0.5:13001"
    assert digitune.search.storage._open.grpc_address("grpc://proxy") == ("proxy", 13000)
    assert digitune.search.storage._open.grpc_address("grpc://[::1]:99") == ("[::1]", 99)
    assert digitune.search.storage._open.grpc_address("sqlite:///x.db") is None
    with pytest.raises(StorageError, match=r"storage URL 'grpc://h:port' has a bad port 'port'; use grpc://HOST:PORT"):
        open_storage("grpc://h:port")

    monkeypatch.setattr(digitune.search.storage._open, "CONNECT_TIMEOUT", 1)
    port = _free_port()  # nothing listens there
    started = time.monotonic()
    result = runner.invoke(app, ["studies", "--storage", f"grpc://127.0.0.1:{port}"])
    assert result.exit_code == 2 and time.monotonic() - started < 8
    (line,) = result.stderr.strip().splitlines()
    assert line == (f"error: cannot open storage grpc://127.0.0.1:{port}: no storage proxy answered at "
                    f"127.0.0.1:{port} within 1 s; start one with `digitune storage-proxy --storage URL "
                    f"--host HOST --port {port}`")


def test_workers_share_a_study_through_the_proxy(tmp_path):
    db = f"sqlite:///{tmp_path / 'proxied.db'}"
    port = _free_port()
    proxy, proxy_log = _start_proxy(db, port, tmp_path)
    grpc_url = f"grpc://127.0.0.1:{port}"
    try:
        assert f"storage proxy for {db} listening on {grpc_url}" in proxy_log.read_text()

        # A second proxy on the same port is refused (gRPC alone would share the port silently).
        taken = runner.invoke(app, ["storage-proxy", "--storage", db, "--port", str(port)])
        assert taken.exit_code == 2 and f"error: cannot listen on 127.0.0.1:{port}: " in taken.stderr
        assert "--port" in taken.stderr

        path = write_study(tmp_path, "proxied", trials=6, family='"mlp"')
        created = run_cli("run", str(path), "--trials", "1", "--storage", grpc_url, cwd=tmp_path)
        assert created.returncode == 0, created.stderr
        assert f"study 'proxied' in {grpc_url}: 0 finished trials, target 1" in created.stderr

        logs = wait_workers(start_workers(3, "proxied", grpc_url, 6, tmp_path))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            through_proxy = optuna.load_study(study_name="proxied", storage=open_storage(grpc_url))
            figures = check_shared_study(through_proxy, target=6, workers=3, logs=logs)

        listing = run_cli("studies", "--storage", grpc_url, "--json", cwd=tmp_path)
        assert listing.returncode == 0, listing.stderr
        assert '"name": "proxied"' in listing.stdout
    finally:
        proxy.terminate()
        try:
            proxy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proxy.kill()
            raise
    text = proxy_log.read_text()
    assert proxy.returncode == 0, text
    assert f"storage proxy on {grpc_url} stopped (SIGTERM)" in text and "Traceback" not in text

    # Everything went through to the database file itself.
    direct = optuna.load_study(study_name="proxied", storage=open_storage(db, heartbeat=False))
    assert len(direct.trials) == figures["trials"]
    assert sum(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
               for t in direct.trials) == figures["finished"]


def test_the_proxy_refuses_to_proxy_a_proxy():
    result = runner.invoke(app, ["storage-proxy", "--storage", "grpc://127.0.0.1:1"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: storage-proxy serves a database, not another proxy (grpc://127.0.0.1:1)")


def test_help_names_the_command():
    result = runner.invoke(app, ["storage-proxy", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "grpc://HOST:PORT" in result.stdout and "--host" in result.stdout and "13000" in result.stdout
