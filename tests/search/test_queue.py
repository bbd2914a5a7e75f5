"""The study queue and its agents, over a SQLite file and the real PostgreSQL server.

Agents are real ``digitune agent`` processes through the entry point; studies train small
models on 300 digits. Exact budgets, stop/resume at a trial boundary, a SIGKILLed agent shown
as lost with its trial recovered, and an agent with other data refusing to join.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from conftest import digitune_exe, run_cli, wait_for, write_study
from digitune.search import FINISHED

pytestmark = pytest.mark.slow

FAST_HEARTBEAT = {"DIGITUNE_HEARTBEAT_INTERVAL": "1", "DIGITUNE_GRACE_PERIOD": "4"}
ONE_THREAD = {"DIGITUNE_THREADS": "1", "OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
              "TF_NUM_INTEROP_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def start_agent(url: str, cwd: Path, log: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    full_env = {k: v for k, v in os.environ.items() if k != "DIGITUNE_STORAGE"}
    full_env.update(ONE_THREAD)
    full_env.update(env or {})
    with (cwd / log).open("w") as stderr:
        return subprocess.Popen([digitune_exe(), "agent", "--storage", url, "--poll", "0.5", *args], cwd=cwd,
                                env=full_env, stdout=subprocess.DEVNULL, stderr=stderr, text=True)


def finish(proc: subprocess.Popen, cwd: Path, log: str, timeout: float = 300) -> str:
    proc.wait(timeout=timeout)
    text = (cwd / log).read_text()
    assert proc.returncode == 0, text
    return text


def queue_json(url: str, cwd: Path) -> dict:
    result = run_cli("queue", "--storage", url, "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def finished(url: str, name: str) -> int:
    return len(optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False, states=FINISHED))


def test_two_agents_work_through_three_studies_exactly(storage_url, tmp_path):
    budgets = {"alpha": 3, "beta": 2, "gamma": 2}
    for name, trials in budgets.items():
        path = write_study(tmp_path, name, trials=trials, family='"mlp"')
        priority = ["--priority", "5"] if name == "gamma" else []
        result = run_cli("submit", str(path), "--storage", storage_url, *priority, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert f"submitted study {name!r}" in result.stdout and "queued" in result.stdout
    listed = queue_json(storage_url, tmp_path)
    assert [s["name"] for s in listed["studies"]] == ["gamma", "alpha", "beta"]  # priority, then submission order
    assert {s["state"] for s in listed["studies"]} == {"queued"} and listed["agents"] == []

    agents = [start_agent(storage_url, tmp_path, f"agent-{i}.err", "--until-idle") for i in range(2)]
    logs = [finish(a, tmp_path, f"agent-{i}.err") for i, a in enumerate(agents)]

    for name, trials in budgets.items():
        study = optuna.load_study(study_name=name, storage=storage_url)
        assert len(study.get_trials(states=FINISHED)) == trials, name  # never overshot
        assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
        assert study.user_attrs["dataset"]["name"] == "digits"  # the first agent recorded the data it ran on
        assert sum(t.user_attrs.get("start") == "defaults" for t in study.trials) == 1  # queued by one agent only
    listed = queue_json(storage_url, tmp_path)
    assert {s["name"]: (s["state"], s["finished"]) for s in listed["studies"]} == {
        name: ("done", trials) for name, trials in budgets.items()}
    assert len(listed["agents"]) == 2 and {a["status"] for a in listed["agents"]} == {"exited"}
    assert sum(a["trials_run"] for a in listed["agents"]) == sum(budgets.values())
    assert all("no study has work left" in log for log in logs)
    # The agents' registry is not a study: listings leave it out.
    studies = run_cli("studies", "--storage", storage_url, "--json", cwd=tmp_path)
    assert sorted(s["name"] for s in json.loads(studies.stdout)) == sorted(budgets)


def test_stop_and_resume_take_effect_at_the_next_trial_boundary(storage_url, tmp_path):
    path = write_study(tmp_path, "long", trials=8, family='"mlp"')
    assert run_cli("submit", str(path), "--storage", storage_url, cwd=tmp_path).returncode == 0
    agent = start_agent(storage_url, tmp_path, "agent.err", "--until-idle")
    wait_for(lambda: finished(storage_url, "long") >= 1, what="a first finished trial")
    result = run_cli("stop", "long", "--storage", storage_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "running -> stopped" in result.stdout
    stopped_at = optuna.load_study(study_name="long", storage=storage_url).user_attrs["digitune_queue"]["finished_at"]
    log = finish(agent, tmp_path, "agent.err")  # with nothing else to do it exits
    assert "was stopped; leaving it" in log
    study = optuna.load_study(study_name="long", storage=storage_url)
    done_at_stop = len(study.get_trials(states=FINISHED))
    assert 1 <= done_at_stop < 8
    # No trial started after the stop; the one running then was allowed to finish.
    stop_moment = dt.datetime.fromisoformat(stopped_at).astimezone().replace(tzinfo=None)  # Optuna's local time
    assert max(t.datetime_start for t in study.trials) <= stop_moment + dt.timedelta(seconds=1)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert queue_json(storage_url, tmp_path)["studies"][0]["state"] == "stopped"
    again = run_cli("stop", "long", "--storage", storage_url, cwd=tmp_path)
    assert again.returncode == 0 and "is stopped; nothing to stop" in again.stdout

    result = run_cli("resume", "long", "--storage", storage_url, cwd=tmp_path)
    assert result.returncode == 0 and "stopped -> queued" in result.stdout
    finish(start_agent(storage_url, tmp_path, "agent2.err", "--until-idle"), tmp_path, "agent2.err")
    assert finished(storage_url, "long") == 8
    assert queue_json(storage_url, tmp_path)["studies"][0]["state"] == "done"
    spent = run_cli("resume", "long", "--storage", storage_url, cwd=tmp_path)
    assert spent.returncode == 2 and spent.stderr.strip().splitlines() == [
        "error: study 'long' already has 8 of its 8 trials; to run more, submit its file again with a larger "
        "--trials"]


def test_a_killed_agent_is_shown_lost_and_its_trial_recovered(storage_url, tmp_path):
    path = write_study(tmp_path, "victim", trials=3, family='"mlp"', pruner="none")
    # Long trials (2,000 epochs on all the digits: 15-30 s with the fast epochs) so the kill lands inside one.
    path.write_text(path.read_text().replace("limit = 300", "").replace("epochs = {low = 1, high = 3}", "epochs = 2000"))
    assert run_cli("submit", str(path), "--storage", storage_url, cwd=tmp_path).returncode == 0
    agent = start_agent(storage_url, tmp_path, "victim.err", env=FAST_HEARTBEAT)
    working = wait_for(lambda: [a for a in queue_json(storage_url, tmp_path)["agents"]
                                if a["status"] == "working" and a["trial"] is not None], what="a working agent")
    killed_trial = working[0]["trial"]

    def training() -> bool:  # it has its parameters and model, and is still running
        trial = optuna.load_study(study_name="victim", storage=storage_url).trials[killed_trial]
        return trial.state == TrialState.RUNNING and "model_config" in trial.user_attrs

    wait_for(training, what="the agent's trial to start training")
    time.sleep(2)  # well inside its 2,000 epochs
    agent.send_signal(signal.SIGKILL)
    agent.wait()
    lost = wait_for(lambda: [a for a in queue_json(storage_url, tmp_path)["agents"] if a["status"] == "lost"],
                    timeout=30, what="the agent shown as lost")
    assert lost[0]["id"] == working[0]["id"] and lost[0]["study"] == "victim" and lost[0]["trial"] == killed_trial
    table = run_cli("queue", "--storage", storage_url, cwd=tmp_path)
    assert "lost" in table.stdout

    finish(start_agent(storage_url, tmp_path, "rescuer.err", "--until-idle", env=FAST_HEARTBEAT), tmp_path,
           "rescuer.err", timeout=600)
    study = optuna.load_study(study_name="victim", storage=storage_url)
    assert study.trials[killed_trial].state == TrialState.FAIL
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed_trial]
    assert len(retried) == 1 and retried[0].params == study.trials[killed_trial].params
    assert len(study.get_trials(states=FINISHED)) == 3
    assert queue_json(storage_url, tmp_path)["studies"][0]["state"] == "done"


def test_an_agent_with_other_data_refuses_to_join(storage_url, tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    data = tmp_path / "shared.npz"
    np.savez(data, x_train=digits.images[:300].astype("uint8"), y_train=digits.target[:300])
    path = write_study(tmp_path, "npz", trials=2, family='"mlp"')
    path.write_text(path.read_text().replace('source = "digits"', f'source = "{data}"'))
    assert run_cli("submit", str(path), "--storage", storage_url, cwd=tmp_path).returncode == 0
    finish(start_agent(storage_url, tmp_path, "first.err", "--until-idle"), tmp_path, "first.err")
    recorded = optuna.load_study(study_name="npz", storage=storage_url).user_attrs["dataset"]["fingerprint"]

    # More budget, but this machine's file now holds other images under the same path.
    assert run_cli("submit", str(path), "--storage", storage_url, "--trials", "4", cwd=tmp_path).returncode == 0
    np.savez(data, x_train=digits.images[300:600].astype("uint8"), y_train=digits.target[300:600])
    log = finish(start_agent(storage_url, tmp_path, "other.err", "--until-idle"), tmp_path, "other.err")
    assert f"refuses study 'npz': its data '{data}' here has fingerprint" in log and recorded in log
    assert finished(storage_url, "npz") == 2  # nothing trained on the other data
    # A machine without the file refuses too, saying it cannot load it.
    data.unlink()
    log = finish(start_agent(storage_url, tmp_path, "missing.err", "--until-idle"), tmp_path, "missing.err")
    assert f"refuses study 'npz': cannot load its data '{data}' on this machine" in log
    listed = queue_json(storage_url, tmp_path)
    refusals = [a["refused"].get("npz", "") for a in listed["agents"]]
    assert sum("fingerprint" in r for r in refusals) == 1 and sum("cannot load" in r for r in refusals) == 1
    assert listed["studies"][0]["state"] == "queued" and listed["studies"][0]["finished"] == 2


def test_queue_commands_refuse_bad_input_in_one_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    path = write_study(tmp_path, "plain", trials=1, family='"mlp"')
    assert run_cli("run", str(path), "--storage", url, cwd=tmp_path).returncode == 0
    cases = {
        ("stop", "plain"): "error: study 'plain' was not submitted to the queue (it was started with `digitune run`); "
                           "submit its file with `digitune submit STUDY.toml` to let agents work on it",
        ("resume", "nope"): "error: no study named 'nope' in this storage (studies: plain); check the name or "
                            "--storage",
    }
    for args, line in cases.items():
        result = run_cli(*args, "--storage", url, cwd=tmp_path)
        assert result.returncode == 2 and result.stderr.strip().splitlines() == [line], result.stderr
    reserved = tmp_path / "reserved.toml"
    reserved.write_text(path.read_text().replace('name = "plain"', 'name = "digitune-agents"'))
    result = run_cli("submit", str(reserved), "--storage", url, cwd=tmp_path)
    assert result.returncode == 2 and "reserved for digitune's agent registry" in result.stderr
    changed = tmp_path / "changed.toml"
    changed.write_text(path.read_text().replace("high = 64", "high = 128"))
    result = run_cli("submit", str(changed), "--storage", url, cwd=tmp_path)
    assert result.returncode == 2 and "disagrees with the stored study 'plain'" in result.stderr
    assert finished(url, "plain") == 1  # nothing stored was lost


def test_agent_processes_share_the_queue_and_a_time_budget_ends_a_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    trials = write_study(tmp_path, "by-trials", trials=4, family='"mlp"')
    timed = write_study(tmp_path, "by-time", trials=50, family='"mlp"')
    assert run_cli("submit", str(trials), "--storage", url, "--priority", "1", cwd=tmp_path).returncode == 0
    result = run_cli("submit", str(timed), "--storage", url, "--timeout", "2", cwd=tmp_path)
    assert result.returncode == 0 and "budget 50 trials or 2 s" in result.stdout
    result = run_cli("agent", "--storage", url, "--workers", "2", "--until-idle", "--poll", "0.5", cwd=tmp_path,
                     env=ONE_THREAD, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "2 agent processes (1 thread(s), 1 thread(s))" in result.stderr
    listed = queue_json(url, tmp_path)
    states = {s["name"]: (s["state"], s["finished"]) for s in listed["studies"]}
    assert states["by-trials"] == ("done", 4)
    assert states["by-time"][0] == "done" and 1 <= states["by-time"][1] < 50  # its 2 s ran out
    assert len(listed["agents"]) == 2 and {a["status"] for a in listed["agents"]} == {"exited"}
    assert sum(a["trials_run"] for a in listed["agents"]) == 4 + states["by-time"][1]


def test_an_agent_leaves_a_study_deleted_under_it_and_goes_on(storage_url, tmp_path):
    doomed = write_study(tmp_path, "doomed", trials=1000, family='"mlp"', pruner="none")
    doomed.write_text(doomed.read_text().replace("epochs = {low = 1, high = 3}", "epochs = 15"))
    kept = write_study(tmp_path, "kept", trials=2, family='"mlp"')
    assert run_cli("submit", str(doomed), "--storage", storage_url, "--priority", "5", cwd=tmp_path).returncode == 0
    assert run_cli("submit", str(kept), "--storage", storage_url, cwd=tmp_path).returncode == 0
    agent = start_agent(storage_url, tmp_path, "agent.err", "--until-idle")
    wait_for(lambda: finished(storage_url, "doomed") >= 1 and any(
        a["status"] == "working" and a["study"] == "doomed" and a["trial"] is not None
        for a in queue_json(storage_url, tmp_path)["agents"]), what="the agent working on 'doomed'")
    deleted = run_cli("delete", "doomed", "--yes", "--storage", storage_url, cwd=tmp_path)
    assert deleted.returncode == 0, deleted.stderr
    log = finish(agent, tmp_path, "agent.err")
    assert "Traceback" not in log and "KeyError" not in log, log
    assert log.count("study 'doomed' was deleted; leaving it") == 1, log
    assert finished(storage_url, "kept") == 2
    assert [s["name"] for s in queue_json(storage_url, tmp_path)["studies"]] == ["kept"]


def children_of(pid: int) -> list[int]:
    """The live processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == str(pid) and fields[0] != "Z":
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_agent_processes_end_with_their_parent(tmp_path, signum):
    # SIGTERM: the parent passes it on and waits; SIGKILL: the kernel tells the orphans (PR_SET_PDEATHSIG).
    url = f"sqlite:///{tmp_path / 'p.db'}"
    parent = start_agent(url, tmp_path, "agent.err", "--workers", "2")
    children: list[int] = []
    try:
        wait_for(lambda: len(queue_json(url, tmp_path)["agents"]) == 2 if tmp_path.joinpath("p.db").exists()
                 else False, what="two agent processes registered")
        children = children_of(parent.pid)
        assert len(children) == 2, children
        parent.send_signal(signum)
        parent.wait(timeout=120)
        wait_for(lambda: not any(alive(pid) for pid in children), 60, "the agent processes to end")
    finally:
        for pid in children:  # what a failing run left behind
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    assert parent.returncode == (143 if signum == signal.SIGTERM else -signal.SIGKILL)
    text = (tmp_path / "agent.err").read_text()
    assert text.count("agent stopped (SIGTERM)") == 2 and "Traceback" not in text, text
    assert {a["status"] for a in queue_json(url, tmp_path)["agents"]} == {"exited"}
