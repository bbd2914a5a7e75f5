"""The contract suite: the same study tests over a SQLite file and a PostgreSQL server.

Every test takes ``storage_url`` (conftest): once a SQLite file, once a fresh PostgreSQL
database of its own (skipped, with the reason, where no server answers). The main test
runs several ``digitune worker`` processes on one study at once and checks that no trial
was lost, duplicated or left running.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState
from typer.testing import CliRunner

import digitune.search.storage._open
from conftest import digitune_exe, run_cli, write_study
from digitune.search import FINISHED, StorageError, load_spec, open_storage, run_study
from digitune.search.cli import app

pytestmark = pytest.mark.slow

CURVES = ("loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds")
# One thread per worker process: several workers share this machine's cores.
WORKER_ENV = {"DIGITUNE_THREADS": "1", "OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
              "TF_NUM_INTEROP_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}

runner = CliRunner()


# --------------------------------------------------------------------------- helpers (test_proxy uses them too)


def start_workers(count: int, name: str, storage: str, trials: int, cwd: Path) -> list[tuple[subprocess.Popen, Path]]:
    """``count`` ``digitune worker`` processes on study ``name``, started at once; stderr goes to a file each."""
    env = {k: v for k, v in os.environ.items() if k != "DIGITUNE_STORAGE"}
    env.update(WORKER_ENV)
    started = []
    for i in range(count):
        log = cwd / f"worker-{i}.err"
        with log.open("w") as stderr:
            proc = subprocess.Popen([digitune_exe(), "worker", name, "--storage", storage, "--trials", str(trials)],
                                    cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        started.append((proc, log))
    return started


def wait_workers(started: list[tuple[subprocess.Popen, Path]], timeout: float = 240) -> list[str]:
    """Wait for every worker; assert each exited 0; their stderr texts."""
    deadline = time.monotonic() + timeout
    logs = []
    try:
        for proc, log in started:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for proc, _ in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, log in started:
        text = log.read_text()
        logs.append(text)
        assert proc.returncode == 0, f"{log.name} exited {proc.returncode}:\n{text}"
    return logs


def check_shared_study(study: optuna.Study, *, target: int, workers: int, logs: list[str]) -> dict[str, int]:
    """The figures of a study several workers ran to ``target`` finished trials, checked; returns them."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    states = Counter(t.state for t in trials)
    finished = [t for t in trials if t.state in FINISHED]
    figures = {"workers": workers, "target": target, "trials": len(trials), "finished": len(finished),
               "complete": states[TrialState.COMPLETE], "pruned": states[TrialState.PRUNED],
               "failed": states[TrialState.FAIL], "running": states[TrialState.RUNNING],
               "overshoot": len(finished) - target}
    print(f"\nshared study {study.study_name!r}: {figures}")

    for log in logs:
        assert "database is locked" not in log and "Traceback" not in log, log
    # Each worker stops once the study holds `target`; the others finish the trial they hold.
    assert target <= len(finished) <= target + workers - 1, figures
    assert states[TrialState.RUNNING] == 0 and states[TrialState.WAITING] == 0, figures
    assert states[TrialState.FAIL] == 0, [t.user_attrs.get("fail_reason") for t in trials]
    assert [t.number for t in trials] == list(range(len(trials))), "trial numbers are not unique and contiguous"

    for trial in finished:
        attrs = trial.user_attrs
        epochs = attrs["epochs_run"]
        assert trial.params or "baseline" in attrs, trial.number
        assert trial.values is not None and len(trial.values) == 1, trial.number
        for key in CURVES:
            assert len(attrs["curves"][key]) == epochs, (trial.number, key)
        assert attrs["curves"]["val_accuracy"] == [trial.intermediate_values[i] for i in range(epochs)], trial.number
        assert trial.value == attrs["curves"]["val_accuracy"][-1], trial.number
    # No trial ran twice: every searched trial drew its own parameters.
    drawn = [json.dumps(t.params, sort_keys=True) for t in finished if "baseline" not in t.user_attrs]
    assert len(set(drawn)) == len(drawn), "two trials share the same parameters"
    return figures


# --------------------------------------------------------------------------- a study end to end


def test_study_runs_persists_and_resumes(storage_url, tmp_path, small_digits):
    spec = load_spec(write_study(tmp_path, trials=3, sampler="random"))
    summary = run_study(spec, open_storage(storage_url), dataset=small_digits)
    assert summary.finished == 3 and summary.failed == 0

    reopened = optuna.load_study(study_name="tiny", storage=open_storage(storage_url))
    trials = reopened.get_trials(states=FINISHED)
    assert len(trials) == 3
    for trial in trials:
        epochs = trial.user_attrs["epochs_run"]
        assert all(len(trial.user_attrs["curves"][key]) == epochs for key in CURVES)
        assert trial.user_attrs["curves"]["val_accuracy"] == [trial.intermediate_values[i] for i in range(epochs)]
    assert reopened.user_attrs["digitune_spec"]["study"]["name"] == "tiny"
    assert reopened.user_attrs["dataset"]["fingerprint"] == small_digits.info.fingerprint

    before = {t.number: json.dumps(t.params, sort_keys=True) for t in trials}
    summary = run_study(spec, open_storage(storage_url), dataset=small_digits, n_trials=5)
    assert summary.finished == 5 and summary.ran == 2
    after = reopened.get_trials(states=FINISHED)
    assert {t.number: json.dumps(t.params, sort_keys=True) for t in after if t.number in before} == before
    assert not {json.dumps(t.params, sort_keys=True) for t in after if t.number not in before} & set(before.values())
    assert run_study(spec, open_storage(storage_url), dataset=small_digits, n_trials=4).ran == 0


def test_cli_commands_on_the_storage(storage_url, tmp_path, small_digits):
    spec = load_spec(write_study(tmp_path, "clistudy", trials=3, sampler="random"))
    run_study(spec, open_storage(storage_url), dataset=small_digits)

    listing = runner.invoke(app, ["studies", "--storage", storage_url, "--json"])
    assert listing.exit_code == 0, listing.output
    (row,) = json.loads(listing.stdout)
    assert row["name"] == "clistudy" and row["trials"]["complete"] + row["trials"]["pruned"] == 3
    assert row["trials"]["running"] == 0 and 0 < row["best_value"] <= 1

    shown = runner.invoke(app, ["show", "clistudy", "--storage", storage_url])
    assert shown.exit_code == 0, shown.output
    assert "best: trial" in shown.stdout and f"{row['best_value']:.4f}" in shown.stdout

    best = runner.invoke(app, ["best", "clistudy", "--storage", storage_url, "--json"])
    assert best.exit_code == 0, best.output
    assert json.loads(best.stdout)["value"] == row["best_value"]

    exported = runner.invoke(app, ["export", "clistudy", "--format", "csv", "--storage", storage_url])
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [int(r["number"]) for r in rows] == [0, 1, 2] and all(json.loads(r["curves"]) for r in rows)
    as_json = runner.invoke(app, ["export", "clistudy", "-f", "json", "--storage", storage_url])
    assert as_json.exit_code == 0 and len(json.loads(as_json.stdout)["trials"]) == 3

    doctor = runner.invoke(app, ["doctor", "--storage", storage_url, "--json"])
    checks = {c["check"]: c for c in json.loads(doctor.stdout)}
    assert checks["storage"]["status"] == "ok" and "reachable, 1 study" in checks["storage"]["detail"]
    assert checks["schema"]["status"] == "ok" and checks["schema"]["detail"].startswith("current (")

    kept = runner.invoke(app, ["delete", "clistudy", "--storage", storage_url], input="n\n")
    assert kept.exit_code == 0 and "aborted; nothing deleted" in kept.stdout
    deleted = runner.invoke(app, ["delete", "clistudy", "--yes", "--storage", storage_url])
    assert deleted.exit_code == 0, deleted.output
    assert "deleted study 'clistudy' and its 3 trials" in deleted.stdout
    assert optuna.get_all_study_names(storage=open_storage(storage_url, heartbeat=False)) == []
    gone = runner.invoke(app, ["show", "clistudy", "--storage", storage_url])
    assert gone.exit_code == 2 and gone.stderr.startswith("error: no study named 'clistudy'")


@pytest.mark.parametrize(("stamp", "message"), [
    ("older", r"has an older Optuna schema than this Optuna \(.+\) uses; back it up, then upgrade it with "
              r"`optuna storage upgrade --storage {shown}`"),
    ("v99.0.0.a", r"was set up by a newer Optuna than this one \(.+\); upgrade Optuna with `pip install -U optuna`"),
])
def test_a_schema_from_another_optuna_says_how_to_fix_it(storage_url, stamp, message):
    import re

    storage = open_storage(storage_url, heartbeat=False)
    version = storage.get_all_versions()[1] if stamp == "older" else stamp
    with storage.engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE alembic_version SET version_num = :v"), {"v": version})
    storage.engine.dispose()
    shown = digitune.search.storage._open.redact(storage_url)
    with pytest.raises(StorageError, match=message.format(shown=re.escape(shown))) as caught:
        open_storage(storage_url)
    assert isinstance(caught.value.__cause__, RuntimeError)  # doctor tells a schema problem by this
    result = runner.invoke(app, ["studies", "--storage", storage_url])
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: storage {shown} ") and re.search(message.format(shown=re.escape(shown)), line)


# --------------------------------------------------------------------------- several workers on one study


def test_several_workers_share_one_study(storage_url, tmp_path):
    workers, target = (4, 9) if storage_url.startswith("sqlite") else (3, 9)
    path = write_study(tmp_path, "shared", trials=target, family='"mlp"')
    created = run_cli("run", str(path), "--trials", "1", "--storage", storage_url, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    path.unlink()  # the workers need only the database

    logs = wait_workers(start_workers(workers, "shared", storage_url, target, tmp_path))
    study = optuna.load_study(study_name="shared", storage=open_storage(storage_url, heartbeat=False))
    check_shared_study(study, target=target, workers=workers, logs=logs)


# --------------------------------------------------------------------------- an unreachable server


def test_an_unreachable_server_is_one_line_exit_2_and_quick(monkeypatch):
    monkeypatch.setattr(digitune.search.storage._open, "CONNECT_TIMEOUT", 1)
    with socket.socket() as silent:  # accepts connections and never answers: a hung server
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        url = f"postgresql+psycopg://digitune:hunter2@127.0.0.1:{port}/studies"
        for command in (["studies"], ["show", "x"], ["best", "x"], ["export", "x", "-f", "csv"],
                        ["delete", "x", "--yes"], ["worker", "x"]):
            started = time.monotonic()
            result = runner.invoke(app, [*command, "--storage", url])
            assert time.monotonic() - started < 8, command
            assert result.exit_code == 2, (command, result.output)
            (line,) = result.stderr.strip().splitlines()
            assert line.startswith(f"error: cannot open storage postgresql+psycopg://digitune:***@127.0.0.1:{port}"
                                   f"/studies: "), line
            assert "hunter2" not in result.output
        doctor = runner.invoke(app, ["doctor", "--storage", url, "--json"])
        assert doctor.exit_code == 1 and "hunter2" not in doctor.output
        assert {c["check"]: c["status"] for c in json.loads(doctor.stdout)}["storage"] == "fail"
