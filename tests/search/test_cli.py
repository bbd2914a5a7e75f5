"""The CLI through its entry point, as a user runs it, and the database through other Optuna tools."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from conftest import digitune_exe, run_cli, write_study
from digitune.search import open_storage
from digitune.search.cli import app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    """A tiny study run once through `digitune run`, shared by the read-only tests below."""
    folder = tmp_path_factory.mktemp("cli")
    path = write_study(folder, "clistudy", trials=5)
    db = folder / "cli.db"
    result = run_cli("run", str(path), "--storage", f"sqlite:///{db}", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder, db, result


def test_run_reports_progress_and_persists(finished_study):
    folder, db, result = finished_study
    assert "data: digits 8x8" in result.stderr
    assert "trial 0 " in result.stderr and "trials" in result.stderr
    assert "study 'clistudy': 5 finished trials" in result.stderr
    assert "Traceback" not in result.stderr
    study = optuna.load_study(study_name="clistudy", storage=f"sqlite:///{db}")
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))) == 5


def test_studies_and_show(finished_study):
    folder, db, _ = finished_study
    storage = f"sqlite:///{db}"
    listing = run_cli("studies", "--storage", storage, cwd=folder)
    assert listing.returncode == 0, listing.stderr
    line = next(line for line in listing.stdout.splitlines() if line.strip().startswith("clistudy"))
    assert "digits" in line

    rows = json.loads(run_cli("studies", "--storage", storage, "--json", cwd=folder).stdout)
    (row,) = rows
    assert row["name"] == "clistudy" and row["trials"]["complete"] + row["trials"]["pruned"] == 5
    assert 0 < row["best_value"] <= 1

    shown = run_cli("show", "clistudy", "--storage", storage, cwd=folder)
    assert shown.returncode == 0, shown.stderr
    assert "best: trial" in shown.stdout and "top " in shown.stdout
    assert f"{row['best_value']:.4f}" in shown.stdout
    detail = json.loads(run_cli("show", "clistudy", "--storage", storage, "--json", cwd=folder).stdout)
    assert detail["best"]["value"] == row["best_value"]
    values = [t["value"] for t in detail["top"]]
    assert values == sorted(values, reverse=True)


def test_default_storage_and_environment(tmp_path):
    path = write_study(tmp_path, "envstudy", trials=1, family='"mlp"')
    result = run_cli("run", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "studies" / "digitune.db").is_file()  # the default: studies/digitune.db
    env = {"DIGITUNE_STORAGE": f"sqlite:///{tmp_path / 'studies' / 'digitune.db'}"}
    listing = run_cli("studies", "--json", cwd=Path("/"), env=env)
    assert [r["name"] for r in json.loads(listing.stdout)] == ["envstudy"]


def test_optuna_cli_opens_the_database(finished_study):
    folder, db, _ = finished_study
    optuna_exe = Path(sys.executable).parent / "optuna"
    result = subprocess.run([str(optuna_exe), "trials", "--study-name", "clistudy", "--storage",
                             f"sqlite:///{db}", "-f", "json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    trials = json.loads(result.stdout)
    assert len(trials) == 5 and {"number", "value", "state"} <= set(trials[0])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_optuna_dashboard_opens_the_database(finished_study):
    folder, db, _ = finished_study
    port = _free_port()
    exe = Path(sys.executable).parent / "optuna-dashboard"
    server = subprocess.Popen([str(exe), f"sqlite:///{db}", "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as response:
                    studies = json.load(response)["study_summaries"]
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.5)
        (summary,) = studies
        assert summary["study_name"] == "clistudy"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{summary['study_id']}?after=0",
                                    timeout=10) as response:
            detail = json.load(response)
        assert len(detail["trials"]) == 5
        assert any(t["intermediate_values"] for t in detail["trials"])
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_help_lists_the_commands():
    result = subprocess.run([digitune_exe(), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("run", "studies", "show"):
        assert command in result.stdout


runner = CliRunner()

USER_ERRORS = [
    (["run", "{tmp}/missing.toml"], r"missing\.toml: no such study file"),
    (["run", "{tmp}/broken.toml"], r"broken\.toml: not valid TOML"),
    (["run", "{tmp}/study.toml", "--dataset", "{tmp}/no-such-data"], r"no-such-data"),
    (["show", "nosuch"], r"no study named 'nosuch' in this storage"),
    (["studies", "--storage", "postgresql+psycopg://digitune:hunter2@127.0.0.1:1/nowhere"],
     r"cannot open storage postgresql\+psycopg://digitune:\*\*\*@127\.0\.0\.1:1/nowhere"),
    (["studies", "--storage", "nosuchdialect://x/y"], r"cannot open storage nosuchdialect://x/y"),
]


@pytest.mark.parametrize(("args", "message"), USER_ERRORS)
def test_user_errors_are_one_line_and_exit_2(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIGITUNE_STORAGE", f"sqlite:///{tmp_path / 'x.db'}")
    open_storage(f"sqlite:///{tmp_path / 'x.db'}", heartbeat=False)  # a database without the study asked for
    (tmp_path / "broken.toml").write_text("[study\n")
    write_study(tmp_path, "study", trials=1)
    result = runner.invoke(app, [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr
    import re
    assert re.search(message, lines[0]), lines[0]


def _finished(db: Path) -> int:
    """Finished trials in ``db``; 0 while the new database has no trials table yet."""
    with sqlite3.connect(db) as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'trials'").fetchone():
            return 0
        return conn.execute("SELECT COUNT(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')").fetchone()[0]


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_stops_cleanly_and_the_same_command_continues(tmp_path, signum, code):
    path = write_study(tmp_path, "interrupted", trials=200, family='"mlp"')
    db = tmp_path / "int.db"
    args = [digitune_exe(), "run", str(path), "--storage", f"sqlite:///{db}"]
    env = {k: v for k, v in os.environ.items() if k != "DIGITUNE_STORAGE"}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not (db.exists() and _finished(db) >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.2)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert f"interrupted ({signal.Signals(signum).name})" in stderr and "run the same command again" in stderr
    assert "Traceback" not in stderr
    study = optuna.load_study(study_name="interrupted", storage=f"sqlite:///{db}")
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.RUNNING not in states
    done = _finished(db)
    assert done >= 2

    # The same command (with a reachable target) continues the same study.
    result = run_cli("run", str(path), "--storage", f"sqlite:///{db}", "--trials", str(done + 2), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{done} finished trials, target {done + 2}" in result.stderr
    assert _finished(db) == done + 2
