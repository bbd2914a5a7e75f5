"""The database blinks: a private PostgreSQL server stopped in the middle of a study, then started again.

``digitune run`` and ``digitune agent`` run real trials against a server of the test's own
(``private_postgres``: the shared server on port 5432 stays up for everyone else). While
the server is down they wait, say so once, and go on once it is back: every trial ends
COMPLETE, PRUNED or FAILED with its reason, none stays RUNNING, the targets are met
exactly. A server that stays down past ``$DIGITUNE_RECONNECT_SECONDS`` ends the run with
one ``error:`` line and exit 2, and the trial it left running is failed and run again later.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import digitune_exe, run_cli, wait_for, write_study
from digitune.search import FINISHED

pytestmark = pytest.mark.slow

OUTAGE_SECONDS = 30
ONE_THREAD = {"DIGITUNE_THREADS": "1", "OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
              "TF_NUM_INTEROP_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def start(args: list[str], cwd: Path, log: str, env: dict[str, str]) -> subprocess.Popen:
    """``digitune ARGS`` in the background, its stderr in ``cwd/log``."""
    full_env = {k: v for k, v in os.environ.items() if k != "DIGITUNE_STORAGE"}
    full_env.update({**ONE_THREAD, **env})
    with (cwd / log).open("w") as stderr:
        return subprocess.Popen([digitune_exe(), *args], cwd=cwd, env=full_env, stdout=subprocess.DEVNULL,
                                stderr=stderr, text=True)


def trials_of(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    except KeyError:
        return []


def wait_while_running(condition, procs: list[subprocess.Popen], what: str) -> None:
    def check() -> bool:
        assert all(p.poll() is None for p in procs), f"a process ended before {what}"
        return bool(condition())

    wait_for(check, 180, what)


def check_study(url: str, name: str, target: int) -> dict[str, int]:
    trials = trials_of(url, name)
    states = {state.name: sum(t.state == state for t in trials) for state in TrialState}
    assert states["RUNNING"] == 0 and states["WAITING"] == 0, states
    assert sum(t.state in FINISHED for t in trials) == target, states
    for trial in trials:
        if trial.state == TrialState.FAIL:
            assert trial.user_attrs.get("fail_reason"), f"trial {trial.number} failed without a reason"
    return states


def down_until_it_ends(server, proc: subprocess.Popen, ready, what: str) -> None:
    """Once ``ready()``, stop ``server`` until ``proc`` ends (180 s at most), then start it again."""
    try:
        wait_while_running(ready, [proc], what)
        server.stop("fast")
        try:
            proc.wait(timeout=180)
        finally:
            server.start()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def assert_gave_up_in_one_line(proc: subprocess.Popen, log: Path, seconds: int) -> str:
    """``proc`` ended with exit 2 and one ``error:`` line: the storage stayed unreachable ``seconds``; its log."""
    text = log.read_text()
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2, text
    assert "Traceback" not in text, text
    assert len(errors) == 1 and f"stayed unreachable for {seconds} s" in errors[0], text
    return text


@pytest.fixture
def blink_url(private_postgres) -> str:
    return private_postgres.create_database(f"blink_{secrets.token_hex(4)}")


def test_a_worker_and_an_agent_wait_out_a_server_restart(private_postgres, blink_url, tmp_path):
    run_file = write_study(tmp_path, "ridden", trials=6, family='"mlp"')
    queued = write_study(tmp_path, "queued", trials=5, family='"mlp"')
    assert run_cli("submit", str(queued), "--storage", blink_url, cwd=tmp_path).returncode == 0
    env = {"DIGITUNE_RECONNECT_SECONDS": "120"}
    worker = start(["run", str(run_file), "--storage", blink_url], tmp_path, "run.err", env)
    agent = start(["agent", "--storage", blink_url, "--until-idle", "--poll", "0.5"], tmp_path, "agent.err", env)
    # Both in the middle of their studies: a trial finished, more to go.
    wait_while_running(lambda: all(sum(t.state in FINISHED for t in trials_of(blink_url, name)) >= 1
                         for name in ("ridden", "queued")), [worker, agent], "a first trial of each study")

    try:
        private_postgres.stop("fast")  # ends every connection, as a restart or failover does
        try:
            time.sleep(OUTAGE_SECONDS)
            gave_up = [p.args[1] for p in (worker, agent) if p.poll() is not None]
        finally:
            private_postgres.start()
        assert not gave_up, f"{gave_up} ended during the outage"
        worker.wait(timeout=300)
        agent.wait(timeout=300)
    finally:
        for proc in (worker, agent):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, log in ((worker, "run.err"), (agent, "agent.err")):
        text = (tmp_path / log).read_text()
        assert proc.returncode == 0, text
        assert "Traceback" not in text and "error:" not in text, text
        assert text.count("unreachable (") == 1 and "retrying for up to 120 s" in text, text
        assert text.count("reachable again after") == 1, text
        print(f"\n{log}:", *[line for line in text.splitlines() if "storage" in line], sep="\n  ")
    print("\nafter the outage:", check_study(blink_url, "ridden", 6), check_study(blink_url, "queued", 5))
    listed = run_cli("queue", "--storage", blink_url, "--json", cwd=tmp_path)
    assert '"state": "done"' in listed.stdout, listed.stdout


def test_a_server_down_past_the_deadline_ends_the_run_in_one_line(private_postgres, blink_url, tmp_path):
    path = write_study(tmp_path, "abandoned", trials=6, family='"mlp"', pruner="none")
    path.write_text(path.read_text().replace("epochs = {low = 1, high = 3}", "epochs = 2000"))  # seconds a trial, with the fast epochs
    env = {"DIGITUNE_RECONNECT_SECONDS": "8", "DIGITUNE_HEARTBEAT_INTERVAL": "1"}
    worker = start(["run", str(path), "--storage", blink_url], tmp_path, "run.err", env)
    wait_while_running(lambda: any(t.state in FINISHED for t in trials_of(blink_url, "abandoned")), [worker],
             "a first finished trial")
    wait_while_running(lambda: any(t.state == TrialState.RUNNING and t.params for t in trials_of(blink_url, "abandoned")),
             [worker], "the next trial to start")

    private_postgres.stop("fast")
    stopped = time.monotonic()
    try:
        worker.wait(timeout=120)
        waited = time.monotonic() - stopped
    finally:
        private_postgres.start()
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    text = assert_gave_up_in_one_line(worker, tmp_path / "run.err", 8)
    assert 8 <= waited < 60, waited
    print(f"\ngave up after {waited:.0f} s:", *[line for line in text.splitlines() if "storage" in line],
          sep="\n  ")
    left = [t for t in trials_of(blink_url, "abandoned") if t.state == TrialState.RUNNING]
    assert len(left) == 1  # the database was gone: nothing could be told

    # Once the database is back, the next worker fails the abandoned trial (with why) and runs it again.
    result = run_cli("worker", "abandoned", "--storage", blink_url, cwd=tmp_path,
                     env={**ONE_THREAD, "DIGITUNE_GRACE_PERIOD": "2"}, timeout=600)
    assert result.returncode == 0, result.stderr
    check_study(blink_url, "abandoned", 6)
    trials = trials_of(blink_url, "abandoned")
    dead = trials[left[0].number]
    assert dead.state == TrialState.FAIL and dead.user_attrs["fail_reason"].startswith("no heartbeat for 2 s")
    assert [t.params for t in trials if t.system_attrs.get("failed_trial") == dead.number] == [dead.params]


def test_a_bad_reconnect_wait_is_refused_in_one_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    path = write_study(tmp_path, "unstarted", trials=1, family='"mlp"')
    for value in ("soon", "-5"):
        result = run_cli("run", str(path), "--storage", url, cwd=tmp_path, env={"DIGITUNE_RECONNECT_SECONDS": value})
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [(
            f"error: $DIGITUNE_RECONNECT_SECONDS must be a number of seconds, 0 or more; got {value!r} "
            f"(unset it to wait up to 300 s for a lost database)")], result.stderr
        assert "Traceback" not in result.stderr
    assert optuna.get_all_study_names(storage=url) == []  # nothing was started


def test_a_trial_no_worker_holds_is_adopted_then_failed_after_the_grace_period(postgres_url, monkeypatch):
    # What a claim whose reply was lost leaves behind: a running trial that never sent a heartbeat.
    import warnings

    from digitune.search import open_storage
    from digitune.search._claim import fail_stale_trials
    from digitune.search.storage._reconnect import adopt_orphans

    monkeypatch.setenv("DIGITUNE_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("DIGITUNE_GRACE_PERIOD", "1")
    storage = open_storage(postgres_url)
    study = optuna.create_study(study_name="orphans", storage=storage)
    with warnings.catch_warnings():  # Optuna: heartbeats are meant for Study.optimize
        warnings.simplefilter("ignore")
        orphan = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    time.sleep(2.5)
    fail_stale_trials(study)
    assert study.trials[orphan.number].state == TrialState.RUNNING  # Optuna never fails a trial without heartbeats

    adopt_orphans(storage, study._study_id)
    adopt_orphans(storage, study._study_id)  # once is enough: a trial with a heartbeat is left alone
    time.sleep(2.5)
    fail_stale_trials(study)
    trials = study.get_trials()
    assert trials[orphan.number].state == TrialState.FAIL
    assert trials[orphan.number].user_attrs["fail_reason"].startswith("no heartbeat for 1 s")
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == orphan.number]
    assert retry.state == TrialState.WAITING and retry.params == orphan.params


def _cut_off(server, proc: subprocess.Popen, log: Path) -> None:
    """Stop ``server`` and wait until ``proc`` says it is waiting for it (the caller starts it again)."""
    server.stop("fast")
    wait_for(lambda: "unreachable (" in log.read_text() or proc.poll() is not None, 120, "the 'unreachable' line")
    assert proc.poll() is None, log.read_text()


@pytest.mark.parametrize("command, signum, code, said", [
    ("run", signal.SIGINT, 130, "interrupted (SIGINT)"),
    ("agent", signal.SIGTERM, 143, "agent stopped (SIGTERM)"),
])
def test_a_signal_stops_the_wait_for_the_database(private_postgres, blink_url, tmp_path, command, signum, code,
                                                  said):
    path = write_study(tmp_path, "waiting", trials=6, family='"mlp"', pruner="none")
    path.write_text(path.read_text().replace("epochs = {low = 1, high = 3}", "epochs = 2000"))  # seconds a trial, with the fast epochs
    if command == "run":
        args = ["run", str(path)]
    else:
        assert run_cli("submit", str(path), "--storage", blink_url, cwd=tmp_path).returncode == 0
        args = ["agent", "--poll", "0.5"]
    proc = start([*args, "--storage", blink_url], tmp_path, "cmd.err", {"DIGITUNE_RECONNECT_SECONDS": "120"})
    log = tmp_path / "cmd.err"
    try:
        wait_while_running(lambda: any(t.state == TrialState.RUNNING and t.params
                                       for t in trials_of(blink_url, "waiting")), [proc], "a trial to start")
        try:
            _cut_off(private_postgres, proc, log)
            proc.send_signal(signum)
            signalled = time.monotonic()
            proc.wait(timeout=90)
            took = time.monotonic() - signalled
        finally:
            private_postgres.start()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert proc.returncode == code, text
    assert took < 30, (took, text)  # not the 120 s the wait would have lasted
    assert said in text and "Traceback" not in text and "error:" not in text, text
    print(f"\n{command} stopped {took:.1f} s after {signum.name}:", text.strip().splitlines()[-1])


def test_a_worker_digitune_starts_during_an_outage_waits_for_the_database(private_postgres, blink_url, tmp_path):
    path = write_study(tmp_path, "late", trials=2, family='"mlp"')
    assert run_cli("submit", str(path), "--storage", blink_url, cwd=tmp_path).returncode == 0
    private_postgres.stop("fast")
    try:
        # Typed by a person: a server that does not answer is one error: line at once (a mistyped URL must not wait).
        typed = run_cli("worker", "late", "--storage", blink_url, cwd=tmp_path,
                        env={"DIGITUNE_RECONNECT_SECONDS": "120"}, timeout=60)
        lines = typed.stderr.strip().splitlines()
        assert typed.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: cannot open storage"), lines
        # Started by digitune (`run --workers`, `agent --workers` set its parent's pid): it waits.
        child = start(["worker", "late", "--storage", blink_url, "--no-progress"], tmp_path, "child.err",
                      {"DIGITUNE_RECONNECT_SECONDS": "120", "DIGITUNE_PARENT_PID": str(os.getpid())})
        try:
            wait_for(lambda: "unreachable (" in (tmp_path / "child.err").read_text() or child.poll() is not None,
                     120, "the child's 'unreachable' line")
            assert child.poll() is None, (tmp_path / "child.err").read_text()
        finally:
            private_postgres.start()
        child.wait(timeout=300)
    finally:
        if not private_postgres.running:
            private_postgres.start()
    text = (tmp_path / "child.err").read_text()
    assert child.returncode == 0, text
    assert "error:" not in text and "Traceback" not in text and text.count("reachable again after") == 1, text
    check_study(blink_url, "late", 2)


def test_workers_that_outlast_the_wait_say_so_in_one_line(private_postgres, blink_url, tmp_path):
    path = write_study(tmp_path, "pair", trials=8, family='"mlp"', pruner="none")
    path.write_text(path.read_text().replace("epochs = {low = 1, high = 3}", "epochs = 2000"))  # seconds a trial, with the fast epochs
    env = {"DIGITUNE_WORKERS": "2", "DIGITUNE_RECONNECT_SECONDS": "8", "DIGITUNE_HEARTBEAT_INTERVAL": "1"}
    run = start(["run", str(path), "--storage", blink_url], tmp_path, "run.err", env)
    down_until_it_ends(private_postgres, run, lambda: sum(t.state == TrialState.RUNNING and bool(t.params)
                                                          for t in trials_of(blink_url, "pair")) == 2,
                       "both workers in a trial")
    text = assert_gave_up_in_one_line(run, tmp_path / "run.err", 8)  # the parent's line, none of its worker's
    assert "stops: the database stayed unreachable" in text, text
    print("\n" + "\n".join(line for line in text.splitlines() if "storage" in line or "stops" in line))


def test_agent_processes_that_outlast_the_wait_say_so_in_one_line(private_postgres, blink_url, tmp_path):
    agent = start(["agent", "--workers", "2", "--poll", "0.5", "--storage", blink_url], tmp_path, "agent.err",
                  {"DIGITUNE_RECONNECT_SECONDS": "8"})
    down_until_it_ends(private_postgres, agent,
                       lambda: (tmp_path / "agent.err").read_text().count("waiting for studies") == 2,
                       "both agent processes registered")
    text = assert_gave_up_in_one_line(agent, tmp_path / "agent.err", 8)  # the parent's, for both processes
    assert text.count("stops: the database stayed unreachable") == 2 and "2 worker process(es) stopped" in text, text
