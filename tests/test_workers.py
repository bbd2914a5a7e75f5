"""Several worker processes on one study: layout, thread budgets, devices, exact trial counts."""

from __future__ import annotations

import json

import optuna
import pytest

from conftest import run_cli, write_study
from search import FINISHED
from search._workers import WorkerLayoutError, plan_workers


def test_cpu_workers_share_the_cores():
    slots = plan_workers(2, None, cpus=2)
    assert [(s.threads, s.gpu) for s in slots] == [(1, None), (1, None)]
    assert plan_workers(1, None, cpus=8)[0].threads == 8
    assert plan_workers(16, None, cpus=2)[0].threads == 1  # never below one thread
    env = slots[0].env()
    assert env["OMP_NUM_THREADS"] == env["TF_NUM_INTRAOP_THREADS"] == env["DIGITUNE_THREADS"] == "1"
    assert env["CUDA_VISIBLE_DEVICES"] == ""  # CPU workers see no GPU


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


@pytest.mark.slow
def test_workers_finish_exactly_the_requested_trials(tmp_path):
    path = write_study(tmp_path, "par", trials=7, family='"mlp"')
    db = f"sqlite:///{tmp_path / 'par.db'}"
    result = run_cli("run", str(path), "--storage", db, "--workers", "3", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "3 workers (1 thread(s), 1 thread(s), 1 thread(s))" in result.stderr
    assert "database is locked" not in result.stderr
    study = optuna.load_study(study_name="par", storage=db)
    trials = study.trials
    assert len(study.get_trials(states=FINISHED)) == 7
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING))
    assert [t.number for t in trials] == list(range(len(trials)))
    params = [json.dumps(t.params, sort_keys=True) for t in study.get_trials(states=FINISHED)]
    assert len(set(params)) == len(params), "two workers ran the same parameters"


def test_gpus_all_without_a_gpu_is_a_user_error(tmp_path):
    path = write_study(tmp_path, "gpu", trials=1, family='"mlp"')
    result = run_cli("run", str(path), "--storage", f"sqlite:///{tmp_path / 'g.db'}", "--gpus", "all",
                     cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --gpus all: no NVIDIA GPU found (nvidia-smi lists none); drop --gpus to run on the CPU")


@pytest.mark.slow
def test_workers_are_recycled_after_k_trials(tmp_path):
    path = write_study(tmp_path, "recycle", trials=5, family='"mlp"')
    db = f"sqlite:///{tmp_path / 'r.db'}"
    result = run_cli("run", str(path), "--storage", db, "--recycle-after", "2", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "worker exit codes [0], 2 recycled" in result.stderr
    study = optuna.load_study(study_name="recycle", storage=db)
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
