"""Many machines, for real: agents in network namespaces of their own, one of them cut off mid-trial.

Each agent runs in its own network namespace with its own address (10.77.N.2, .3), joined
to the host by a veth pair on a bridge; a private PostgreSQL server listens on the bridge's
address (10.77.N.1) only, so everything the agents say to it crosses the links. One agent's
link goes down in the middle of a trial. The other agent fails that trial once its heartbeat
is older than the grace period (seconds here) and runs its parameters again; when the link
comes back the cut-off agent, which meanwhile said once that it lost the database, says it is
back, finds its trial failed, goes back to the queue and exits when the budget is spent. The budget stays exact. Skipped where namespaces cannot be made.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from _pgserver import PgServer
from conftest import digitune_exe, run_cli, wait_for, write_study
from digitune.search import FINISHED

pytestmark = pytest.mark.slow

FAST_HEARTBEAT = {"DIGITUNE_HEARTBEAT_INTERVAL": "1", "DIGITUNE_GRACE_PERIOD": "5"}
ONE_THREAD = {"DIGITUNE_THREADS": "1", "OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
              "TF_NUM_INTEROP_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


class Network:
    """A bridge on the host (``.1``) and one namespace per agent (``.2``, ``.3``, ...) linked to it by a veth."""

    def __init__(self, agents: int):
        self.tag = secrets.token_hex(2)
        self.subnet = self._free_subnet()
        self.host = f"{self.subnet}.1"
        self.bridge = f"dtbr{self.tag}"
        self.spaces: list[str] = []
        self.links: list[str] = []  # the host end of each namespace's veth
        try:
            ip("netns", "add", f"dtprobe{self.tag}")
        except (subprocess.CalledProcessError, FileNotFoundError, OSError) as exc:
            reason = getattr(exc, "stderr", None) or exc
            pytest.skip(f"cannot make network namespaces here (ip netns add: {str(reason).strip()})")
        ip("netns", "del", f"dtprobe{self.tag}")
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.host}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for i in range(agents):
            self._add_space(i)

    @staticmethod
    def _free_subnet() -> str:
        used = ip("-4", "addr").stdout
        for third in range(77, 250):
            if f"10.77.{third}." not in used:
                return f"10.77.{third}"
        pytest.skip("no free 10.77.N.0/24 subnet for the test's links")

    def _add_space(self, i: int) -> None:
        space, host_end, inner_end = f"dtns{self.tag}{i}", f"dth{self.tag}{i}", f"dtn{self.tag}{i}"
        ip("netns", "add", space)
        self.spaces.append(space)
        ip("link", "add", host_end, "type", "veth", "peer", "name", inner_end)
        self.links.append(host_end)
        ip("link", "set", inner_end, "netns", space)
        ip("link", "set", host_end, "master", self.bridge, "up")
        ip("-n", space, "addr", "add", f"{self.subnet}.{i + 2}/24", "dev", inner_end)
        ip("-n", space, "link", "set", inner_end, "up")
        ip("-n", space, "link", "set", "lo", "up")

    def cut(self, i: int) -> None:
        ip("link", "set", self.links[i], "down")

    def mend(self, i: int) -> None:
        ip("link", "set", self.links[i], "up")

    def remove(self) -> None:
        for space in self.spaces:  # a namespace takes its veth ends with it
            ip("netns", "del", space, check=False)
        ip("link", "del", self.bridge, check=False)


@pytest.fixture
def network():
    net = Network(agents=2)
    yield net
    net.remove()


@pytest.fixture
def linked_postgres(network):
    """A private PostgreSQL server listening on the bridge's address only, trusting the test's subnet."""
    server = PgServer(host=network.host, subnets=(f"{network.subnet}.0/24",))
    yield server
    server.destroy()


def start_agent(space: str, url: str, cwd: Path, log: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "DIGITUNE_STORAGE"}
    env.update({**ONE_THREAD, **FAST_HEARTBEAT})
    with (cwd / log).open("w") as stderr:
        return subprocess.Popen(["ip", "netns", "exec", space, digitune_exe(), "agent", "--storage", url,
                                 "--until-idle", "--poll", "0.5"],
                                cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True)


def test_an_agent_cut_off_mid_trial_is_recovered_and_rejoins(network, linked_postgres, tmp_path):
    url = linked_postgres.create_database(f"netns_{secrets.token_hex(4)}")
    path = write_study(tmp_path, "spread", trials=8, family='"mlp"', pruner="none")
    # Fast epochs train 60 in a fraction of a second, so a trial could end before the cut: 3,000 is seconds.
    path.write_text(path.read_text().replace("epochs = {low = 1, high = 3}", "epochs = 3000"))
    assert run_cli("submit", str(path), "--storage", url, cwd=tmp_path).returncode == 0
    agents = [start_agent(space, url, tmp_path, f"agent-{i}.err") for i, space in enumerate(network.spaces)]
    try:
        study = optuna.load_study(study_name="spread", storage=url)

        def cut_off_trial():  # agent 0's trial, once it trains (it has its model) and a trial finished
            if agents[0].poll() is not None or not any(t.state in FINISHED for t in study.trials):
                return None
            agent = next((a for a in optuna.load_study(study_name="digitune-agents", storage=url).user_attrs.values()
                          if a["pid"] == agents[0].pid and a.get("trial") is not None), None)
            trial = study.trials[agent["trial"]] if agent else None
            return trial if trial and trial.state == TrialState.RUNNING and "model_config" in trial.user_attrs \
                else None

        victim = wait_for(cut_off_trial, 180, "agent 0 training a trial")
        network.cut(0)
        failed = wait_for(lambda: study.trials[victim.number].state == TrialState.FAIL, 120,
                          "the cut-off agent's trial to be failed after the grace period")
        assert failed and agents[0].poll() is None
        # The cut-off agent notices too (libpq gives up on unacknowledged data after 30 s) and waits.
        wait_for(lambda: "unreachable (" in (tmp_path / "agent-0.err").read_text(), 120,
                 "the cut-off agent to say it lost the database")
        assert agents[0].poll() is None
        network.mend(0)
        for proc in agents:
            proc.wait(timeout=300)
    finally:
        for proc in agents:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    logs = [(tmp_path / f"agent-{i}.err").read_text() for i in range(2)]
    for proc, log in zip(agents, logs):
        assert proc.returncode == 0, log
        assert "Traceback" not in log and "error:" not in log, log
    assert logs[0].count("unreachable (") == 1 and logs[0].count("reachable again after") == 1, logs[0]
    assert "no study has work left" in logs[0]  # back on the queue once the link came back

    trials = optuna.load_study(study_name="spread", storage=url).trials
    assert sum(t.state in FINISHED for t in trials) == 8  # exact: the cut-off trial's slot went to its retry
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    dead = trials[victim.number]
    assert dead.state == TrialState.FAIL and dead.user_attrs["fail_reason"].startswith("no heartbeat for 5 s")
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retried) == 1 and retried[0].params == victim.params and retried[0].state in FINISHED
    assert all(t.user_attrs.get("fail_reason") for t in trials if t.state == TrialState.FAIL)
    print("\ncut-off agent's log:", *[line for line in logs[0].splitlines() if "storage" in line or "trial" in line],
          sep="\n  ")
