"""Many processes, one new database: opening a fresh storage, and creating one study, at the same moment.

Each process waits for a shared start time, so they reach Optuna's schema creation (or the
study's creation) together; every one must succeed, and the database must hold one schema,
one study and its known-good start queued once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from conftest import run_cli, write_study

pytestmark = pytest.mark.slow

PROCESSES = 6
OPEN_STORAGE = """
import sys, time
from digitune.search import open_storage
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
open_storage(sys.argv[1])
print("opened")
"""
OPEN_STUDY = """
import sys, time
from digitune.models import load_dataset
from digitune.search import load_spec, open_storage, open_study
spec = load_spec(sys.argv[3])
data = load_dataset(spec.data.source, **spec.data.load_kwargs())
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
open_study(spec, open_storage(sys.argv[1]), data)
print("opened")
"""


def _at_once(code: str, *args: str, cwd: Path, lead: float) -> list[subprocess.CompletedProcess]:
    """``PROCESSES`` Pythons running ``code`` with ``args``, all released at the same moment."""
    start = str(time.time() + lead)
    env = {k: v for k, v in os.environ.items() if k != "DIGITUNE_STORAGE"}
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), args[0], start, *args[1:]], cwd=cwd,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(PROCESSES)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def _assert_all_opened(results: list[subprocess.CompletedProcess]) -> None:
    for result in results:
        assert result.returncode == 0 and result.stdout.strip() == "opened", result.stderr[-2000:]


def test_processes_create_the_schema_at_once(storage_url, tmp_path):
    _assert_all_opened(_at_once(OPEN_STORAGE, storage_url, cwd=tmp_path, lead=8))
    engine = sqlalchemy.create_engine(storage_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT count(*) FROM version_info")).scalar() == 1
            assert conn.execute(sqlalchemy.text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        engine.dispose()


def test_processes_create_one_study_at_once(storage_url, tmp_path):
    study_file = write_study(tmp_path, trials=4)
    _assert_all_opened(_at_once(OPEN_STUDY, storage_url, str(study_file), cwd=tmp_path, lead=20))
    study = optuna.load_study(study_name="tiny", storage=storage_url)
    starts = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("start") == "defaults"]
    assert len(starts) == 2  # one known-good model per family, queued once, not once per process
    assert all(t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False))
    assert study.user_attrs["dataset"]["fingerprint"] and study.user_attrs["digitune_spec"]


def test_runs_started_together_on_a_new_database(storage_url, tmp_path):
    """Three `digitune run`s of one study file on a new database: all finish, the budget exactly."""
    study_file = write_study(tmp_path, trials=3)
    env = {k: v for k, v in os.environ.items() if k != "DIGITUNE_STORAGE"}
    procs = [subprocess.Popen([str(Path(sys.executable).parent / "digitune"), "run", str(study_file),
                               "--storage", storage_url], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
        assert "Traceback" not in err
    trials = optuna.load_study(study_name="tiny", storage=storage_url).get_trials(deepcopy=False)
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 3
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    listed = run_cli("studies", "--storage", storage_url, cwd=tmp_path)
    assert listed.returncode == 0 and "tiny" in listed.stdout
