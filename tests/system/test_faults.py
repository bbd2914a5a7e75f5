"""Faults: a worker killed with SIGKILL in the middle of a trial, a trial that runs out of memory."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import optuna
import pytest
from optuna.trial import TrialState

from conftest import digitune_exe, run_cli, write_study
from digitune.search import FINISHED

pytestmark = pytest.mark.slow

# Heartbeats every second, a dead worker's trial failed after 4 s (the defaults are 10 s and 60 s).
FAST_HEARTBEAT = {"DIGITUNE_HEARTBEAT_INTERVAL": "1", "DIGITUNE_GRACE_PERIOD": "4"}


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DIGITUNE_STORAGE"}
    env.update(extra)
    return env


def test_a_worker_killed_mid_trial_is_recovered_and_its_config_retried(tmp_path):
    # Long trials (2,000 epochs on the full digits: 15-30 s with the fast epochs) so the kill lands inside one.
    path = write_study(tmp_path, "killed", trials=3, family='"mlp"', pruner="none")
    text = path.read_text().replace("limit = 300", "").replace("epochs = {low = 1, high = 3}", "epochs = 2000")
    path.write_text(text)
    db = tmp_path / "k.db"
    url = f"sqlite:///{db}"
    victim = subprocess.Popen([digitune_exe(), "run", str(path), "--storage", url], cwd=tmp_path,
                              env=_env(FAST_HEARTBEAT), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    running = []
    while not running:
        assert victim.poll() is None and time.monotonic() < deadline, victim.communicate()[1]
        time.sleep(0.5)
        if db.exists():
            try:
                study = optuna.load_study(study_name="killed", storage=url)
                # once it has its parameters (it is running a moment before it samples them)
                running = [t for t in study.get_trials(states=(TrialState.RUNNING,)) if t.params]
            except KeyError:
                pass
    time.sleep(2)  # well inside the trial's 2,000 epochs
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed = running[0]

    result = run_cli("worker", "killed", "--storage", url, cwd=tmp_path, env=FAST_HEARTBEAT, timeout=600)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="killed", storage=url)
    dead = study.trials[killed.number]
    # Marked failed once its heartbeat went stale: Optuna only finds trials stale that sent heartbeats,
    # so this also shows the runner records them.
    assert dead.state == TrialState.FAIL
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retried) == 1 and retried[0].params == killed.params
    assert retried[0].state in FINISHED
    assert len(study.get_trials(states=FINISHED)) == 3  # the study still reaches its target



def _limit_address_space() -> None:
    """12 GiB of address space: an allocation beyond it fails at once instead of waking the OOM killer."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (12 << 30, 12 << 30))


def test_a_trial_that_runs_out_of_memory_fails_alone(tmp_path):
    # One choice of width needs a 64 x 2**30 float kernel (256 GiB): that trial cannot be built.
    path = write_study(tmp_path, "oom", trials=3, family='"mlp"', sampler="random", pruner="none")
    text = path.read_text().replace("units = {low = 16, high = 64, log = true}", "units = [32, 1073741824]")
    text = text.replace("hidden_layers = {low = 1, high = 2}", "hidden_layers = 1")
    path.write_text(text)
    url = f"sqlite:///{tmp_path / 'o.db'}"
    result = subprocess.run([digitune_exe(), "run", str(path), "--storage", url], cwd=tmp_path, env=_env({}),
                            capture_output=True, text=True, timeout=600, preexec_fn=_limit_address_space)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="oom", storage=url)
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert failed, "expected the 2**30-unit trials to fail"
    for trial in failed:
        assert trial.params["mlp_units"] == 1073741824
        assert trial.user_attrs["fail_reason"].startswith("TrainingError: out of memory while building the model")
    finished = study.get_trials(states=FINISHED)
    assert len(finished) == 3 and all(t.params["mlp_units"] == 32 for t in finished)


def test_deleting_a_study_under_its_running_worker_stops_it_in_one_line(storage_url, tmp_path):
    path = write_study(tmp_path, "doomed", trials=1000, family='"mlp"', pruner="none")
    path.write_text(path.read_text().replace("epochs = {low = 1, high = 3}", "epochs = 15"))
    with (tmp_path / "run.err").open("w") as stderr:
        worker = subprocess.Popen([digitune_exe(), "run", str(path), "--storage", storage_url], cwd=tmp_path,
                                  env=_env({}), stdout=subprocess.DEVNULL, stderr=stderr, text=True)

    def trials() -> list:
        try:
            return optuna.load_study(study_name="doomed", storage=storage_url).trials
        except KeyError:
            return []

    deadline = time.monotonic() + 180
    while not (any(t.state in FINISHED for t in trials()) and any(t.state == TrialState.RUNNING for t in trials())):
        assert worker.poll() is None and time.monotonic() < deadline, (tmp_path / "run.err").read_text()
        time.sleep(0.3)
    deleted = run_cli("delete", "doomed", "--yes", "--storage", storage_url, cwd=tmp_path)
    assert deleted.returncode == 0 and "deleted study 'doomed'" in deleted.stdout, deleted.stderr
    _assert_stopped_as_deleted(worker, tmp_path / "run.err", "doomed", storage_url)


def _assert_stopped_as_deleted(proc: subprocess.Popen, log, name: str, url: str) -> None:
    """``proc`` ends with one error: line saying study ``name`` was deleted, exit 2; nothing came back."""
    proc.wait(timeout=120)
    text = log.read_text()
    assert proc.returncode == 2, text
    assert "Traceback" not in text and "KeyError" not in text, text
    assert [line for line in text.splitlines() if line.startswith("error:")] == [
        f"error: study {name!r} was deleted while this process worked on it; nothing left to run"], text
    assert optuna.get_all_study_names(storage=url) == []


def test_a_study_deleted_while_it_is_created_stops_its_run_in_one_line(storage_url, tmp_path):
    path = write_study(tmp_path, "del", trials=4, family='"mlp"', pruner="none")
    with (tmp_path / "run.err").open("w") as stderr:
        run = subprocess.Popen([digitune_exe(), "run", str(path), "--storage", storage_url], cwd=tmp_path,
                               env=_env({}), stdout=subprocess.DEVNULL, stderr=stderr, text=True)
    deadline = time.monotonic() + 180
    while True:  # as a user would: again and again until the study is there to delete
        deleted = run_cli("delete", "del", "--yes", "--storage", storage_url, cwd=tmp_path)
        if deleted.returncode == 0:
            break
        assert deleted.returncode == 2 and deleted.stderr.startswith("error: "), deleted.stderr
        assert run.poll() is None and time.monotonic() < deadline, (tmp_path / "run.err").read_text()
    _assert_stopped_as_deleted(run, tmp_path / "run.err", "del", storage_url)


def test_a_study_deleted_right_after_its_creation_is_a_deleted_study(storage_url, small_digits, tmp_path,
                                                                      monkeypatch):
    # The moment between the creator releasing the study's lock and writing the study's manifest:
    # `digitune delete` comes in while the manifest is made (it imports the backend: seconds).
    from digitune.search import delete_study, load_spec, open_storage, open_study
    from digitune.search.study import StudyDeletedError, _open

    storage = open_storage(storage_url)
    spec = load_spec(write_study(tmp_path, "gone", family='"mlp"'))
    made = _open.manifest

    def deleted_meanwhile(dataset):
        delete_study("gone", storage)
        return made(dataset)

    monkeypatch.setattr(_open, "manifest", deleted_meanwhile)
    with pytest.raises(StudyDeletedError, match="'gone' was deleted while this process worked on it"):
        open_study(spec, storage, small_digits)


def _waits_for_the_study_lock(proc: subprocess.Popen, url: str) -> bool:
    """Whether ``proc`` is waiting for a study's claim lock: a lock file open (SQLite), an ungranted advisory lock."""
    if url.startswith("sqlite"):
        fds = f"/proc/{proc.pid}/fd"
        return any(os.readlink(f"{fds}/{fd}").endswith(".lock") for fd in os.listdir(fds))
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return bool(conn.execute(sqlalchemy.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")).scalar())
    finally:
        engine.dispose()


def test_delete_waits_while_a_study_is_being_created(storage_url, tmp_path):
    from digitune.search import open_storage
    from digitune.search._claim import study_lock

    storage = open_storage(storage_url)
    optuna.create_study(study_name="making", storage=storage)
    with study_lock(storage, "making"):  # as the process creating the study holds it until the study is whole
        delete = subprocess.Popen([digitune_exe(), "delete", "making", "--yes", "--storage", storage_url],
                                  cwd=tmp_path, env=_env({}), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        deadline = time.monotonic() + 120
        while not _waits_for_the_study_lock(delete, storage_url):
            assert delete.poll() is None and time.monotonic() < deadline, delete.communicate()
            time.sleep(0.2)
        time.sleep(1.0)
        assert delete.poll() is None
        assert optuna.get_all_study_names(storage=storage_url) == ["making"]
    out, err = delete.communicate(timeout=120)
    assert delete.returncode == 0 and "deleted study 'making'" in out, err
    assert optuna.get_all_study_names(storage=storage_url) == []
