"""Several worker processes on one study: layout, thread budgets, devices, exact trial counts."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import optuna
import pytest

from conftest import digitune_exe, run_cli, write_study
from digitune.search import FINISHED
from digitune.search.service import WorkerLayoutError, available_cpus, plan_workers


def test_cpu_workers_share_the_cores():
    slots = plan_workers(2, None, cpus=2)
    assert [(s.threads, s.gpu) for s in slots] == [(1, None), (1, None)]
    assert plan_workers(1, None, cpus=8)[0].threads == 8
    assert plan_workers(16, None, cpus=2)[0].threads == 1  # never below one thread
    env = slots[0].env()
    assert env["OMP_NUM_THREADS"] == env["TF_NUM_INTRAOP_THREADS"] == env["DIGITUNE_THREADS"] == "1"
    assert env["CUDA_VISIBLE_DEVICES"] == ""  # CPU workers see no GPU


def test_default_layout_is_one_single_thread_worker_per_core(monkeypatch, tmp_path):
    monkeypatch.delenv("DIGITUNE_WORKERS")
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi: a CPU machine
    assert [(s.threads, s.gpu) for s in plan_workers(None, None, cpus=2)] == [(1, None), (1, None)]
    assert [s.threads for s in plan_workers(None, None, cpus=1)] == [1]
    assert [s.threads for s in plan_workers(None, None, cpus=32)] == [4] * 8  # at most 8, more threads each
    monkeypatch.setenv("DIGITUNE_WORKERS", "3")
    assert len(plan_workers(None, None, cpus=2)) == 3
    assert len(plan_workers(1, None, cpus=2)) == 1  # --workers wins over the variable
    monkeypatch.setenv("DIGITUNE_WORKERS", "two")
    with pytest.raises(WorkerLayoutError, match=r"\$DIGITUNE_WORKERS must be a whole number of workers, at least 1; "
                                                r"got 'two' \(unset it for one worker per core\)"):
        plan_workers(None, None)


def test_a_study_files_workers_come_after_the_option_and_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("DIGITUNE_WORKERS")
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi: a CPU machine
    assert [s.threads for s in plan_workers(None, None, cpus=2, study=1)] == [2]  # one worker, both cores
    assert len(plan_workers(2, None, cpus=2, study=1)) == 2  # --workers wins
    monkeypatch.setenv("DIGITUNE_WORKERS", "3")
    assert len(plan_workers(None, None, cpus=2, study=1)) == 3  # and so does the variable


@pytest.mark.slow
def test_run_keeps_the_study_files_workers(tmp_path):
    """``[study] workers = 1``: ``run`` trains alone in its process; ``--workers 2`` still starts a second."""
    if available_cpus() < 2:
        pytest.skip("one core: the default layout is the single in-process worker")
    path = write_study(tmp_path, "alone", trials=3, family='"mlp"')
    path.write_text(path.read_text().replace("[study]\n", "[study]\nworkers = 1\n", 1))
    db = f"sqlite:///{tmp_path / 'alone.db'}"
    result = run_cli("run", str(path), "--storage", db, cwd=tmp_path, timeout=600, env={"DIGITUNE_WORKERS": ""})
    assert result.returncode == 0, result.stderr
    assert "target 3\n" in result.stderr and "more worker(s)" not in result.stderr
    assert len(_workers_of(tmp_path / "alone.db")) == 1
    result = run_cli("run", str(path), "--storage", db, "--trials", "6", "--workers", "2", cwd=tmp_path, timeout=600,
                     env={"DIGITUNE_WORKERS": ""})
    assert result.returncode == 0, result.stderr
    assert "target 6; 2 workers (this process and 1 more: " in result.stderr


def test_default_layout_with_a_gpu_is_one_worker_that_sees_it(monkeypatch, tmp_path):
    monkeypatch.delenv("DIGITUNE_WORKERS")
    # This machine has no GPU: a stand-in nvidia-smi that lists one, as the real one does.
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert len(plan_workers(None, None, cpus=16)) == 1


def test_gpu_workers_get_one_card_each():
    slots = plan_workers(None, "0,2", per_gpu=2, cpus=16)
    assert [s.gpu for s in slots] == ["0", "0", "2", "2"] and {s.threads for s in slots} == {4}
    env = slots[2].env()
    assert env["CUDA_VISIBLE_DEVICES"] == "2"
    assert env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true" and env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert [s.gpu for s in plan_workers(3, "none", cpus=2)] == [None, None, None]


@pytest.mark.parametrize(("gpus", "message"), [("0,x", "distinct GPU indices"), ("1,1", "distinct GPU indices")])
def test_bad_gpu_lists(gpus, message):
    with pytest.raises(WorkerLayoutError, match=message):
        plan_workers(None, gpus)


def _run_mlp_study(tmp_path, name: str, trials: int, *options: str):
    """``digitune run`` on a small MLP study with ``options``; its result (exit 0 asserted) and its study."""
    path = write_study(tmp_path, name, trials=trials, family='"mlp"')
    db = f"sqlite:///{tmp_path / (name + '.db')}"
    result = run_cli("run", str(path), "--storage", db, *options, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    return result, optuna.load_study(study_name=name, storage=db)


@pytest.mark.slow
def test_workers_finish_exactly_the_requested_trials(tmp_path):
    result, study = _run_mlp_study(tmp_path, "par", 7, "--workers", "3")
    assert "3 workers (this process and 2 more: 1 thread(s), 1 thread(s), 1 thread(s))" in result.stderr
    assert "database is locked" not in result.stderr
    trials = study.trials
    assert len(study.get_trials(states=FINISHED)) == 7
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING))
    assert [t.number for t in trials] == list(range(len(trials)))
    params = [json.dumps(t.params, sort_keys=True) for t in study.get_trials(states=FINISHED)]
    assert len(set(params)) == len(params), "two workers ran the same parameters"


@pytest.mark.slow
def test_run_defaults_to_one_worker_per_core(tmp_path):
    """Without --workers, `run` is the first of one single-thread worker per core; the others join it."""
    cores = available_cpus()
    if cores < 2:
        pytest.skip("one core: the default layout is the single in-process worker")
    expected = min(cores, 8)
    path = write_study(tmp_path, "auto", trials=30, family='"mlp"')
    db = f"sqlite:///{tmp_path / 'auto.db'}"
    result = run_cli("run", str(path), "--storage", db, cwd=tmp_path, timeout=600, env={"DIGITUNE_WORKERS": ""})
    assert result.returncode == 0, result.stderr
    assert f"target 30; {expected} workers (this process and {expected - 1} more: " in result.stderr
    assert f"{expected - 1} more worker(s), exit codes {[0] * (expected - 1)}" in result.stderr
    study = optuna.load_study(study_name="auto", storage=db)
    finished = study.get_trials(states=FINISHED)
    assert len(finished) == 30 and len(study.trials) == 30
    workers = {t.user_attrs["worker"] for t in finished}
    assert len(workers) >= 2, f"only {workers} ran trials"  # the workers beside this process joined in


def _workers_of(db: Path) -> set[str]:
    """The ``host:pid`` of every worker that ran a trial in the SQLite file ``db``."""
    if not db.exists():
        return set()
    with sqlite3.connect(db) as conn:
        try:
            rows = conn.execute("SELECT value_json FROM trial_user_attributes WHERE key = 'worker'").fetchall()
        except sqlite3.OperationalError:  # the tables are not there yet
            return set()
    return {json.loads(value) for (value,) in rows}


def _run_with_two_workers(tmp_path: Path, name: str) -> tuple[subprocess.Popen, Path]:
    """`digitune run` of a long study, once this process and a worker beside it both ran trials."""
    if available_cpus() < 2:
        pytest.skip("one core: no worker beside the in-process one")
    path = write_study(tmp_path, name, trials=500, family='"mlp"')
    db = tmp_path / f"{name}.db"
    env = {k: v for k, v in os.environ.items() if k not in ("DIGITUNE_STORAGE", "DIGITUNE_WORKERS")}
    proc = subprocess.Popen([digitune_exe(), "run", str(path), "--storage", f"sqlite:///{db}"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while len(_workers_of(db)) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.2)
    return proc, db


def _alive(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_sigterm_to_run_alone_stops_the_workers_beside_it(tmp_path):
    """A service manager signals `run` only; it passes the signal on and no trial is left running."""
    proc, db = _run_with_two_workers(tmp_path, "term")
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 143, stderr
    assert "interrupted (SIGTERM)" in stderr and "Traceback" not in stderr
    for worker in _workers_of(db):  # every worker process has ended
        assert not _alive(worker.split(':')[1]), f"worker {worker} still runs"
    study = optuna.load_study(study_name="term", storage=f"sqlite:///{db}")
    assert optuna.trial.TrialState.RUNNING not in [t.state for t in study.trials]
    assert len(study.get_trials(states=FINISHED)) < 500


@pytest.mark.slow
def test_workers_beside_a_killed_run_end_with_it(tmp_path):
    """`run` killed outright (SIGKILL, the OOM killer): the kernel signals its workers (PR_SET_PDEATHSIG)."""
    proc, db = _run_with_two_workers(tmp_path, "orphaned")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    others = [w.split(":")[1] for w in _workers_of(db) if w.split(":")[1] != str(proc.pid)]
    deadline = time.monotonic() + 120
    while any(_alive(pid) for pid in others):
        assert time.monotonic() < deadline, f"workers {others} outlived the run that started them"
        time.sleep(0.3)
    study = optuna.load_study(study_name="orphaned", storage=f"sqlite:///{db}")
    running = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    # At most the killed process's own trial is left running (it may have died before recording its worker).
    assert len(running) <= 1, [t.user_attrs.get("worker") for t in running]
    assert all(t.user_attrs.get("worker") in (None, f"{os.uname().nodename}:{proc.pid}") for t in running)


def test_a_bad_workers_variable_is_a_user_error(tmp_path):
    path = write_study(tmp_path, "badenv", trials=1, family='"mlp"')
    result = run_cli("run", str(path), "--storage", f"sqlite:///{tmp_path / 'b.db'}", cwd=tmp_path,
                     env={"DIGITUNE_WORKERS": "0"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: $DIGITUNE_WORKERS must be a whole number of workers, at least 1; got '0' "
        "(unset it for one worker per core)")
    assert not (tmp_path / "b.db").exists()


def test_gpus_all_without_a_gpu_is_a_user_error(tmp_path):
    path = write_study(tmp_path, "gpu", trials=1, family='"mlp"')
    result = run_cli("run", str(path), "--storage", f"sqlite:///{tmp_path / 'g.db'}", "--gpus", "all",
                     cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --gpus all: no NVIDIA GPU found (nvidia-smi lists none); drop --gpus to run on the CPU")


@pytest.mark.slow
def test_workers_are_recycled_after_k_trials(tmp_path):
    result, study = _run_mlp_study(tmp_path, "recycle", 5, "--recycle-after", "2")
    assert "worker exit codes [0], 2 recycled" in result.stderr
    assert len(study.get_trials(states=FINISHED)) == 5 and len(study.trials) == 5


@pytest.mark.slow
def test_mixed_precision_is_applied_and_recorded(tmp_path):
    path = write_study(tmp_path, "mixed", trials=2, family='"mlp"')
    db = f"sqlite:///{tmp_path / 'm.db'}"
    result = run_cli("run", str(path), "--storage", db, "--mixed-precision", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="mixed", storage=db)
    trials = study.get_trials(states=FINISHED)
    assert len(trials) == 2 and {t.user_attrs["dtype_policy"] for t in trials} == {"mixed_float16"}
    plain = run_cli("worker", "mixed", "--storage", db, "--trials", "3", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert optuna.load_study(study_name="mixed", storage=db).trials[-1].user_attrs["dtype_policy"] == "float32"
