"""Launching from the dashboard: fields or a file, submitted to the queue, a local agent, the Queue page."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from digitune.dashboard._launch import (LaunchFolderError, launch_folder, live_agents, start_agent, study_from_fields,
                               submit_definition)
from digitune.search import FINISHED, SpecError, open_storage, queue_entries, queue_entry, stop

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402
from conftest import REPO

pytestmark = pytest.mark.slow
APP = str(REPO / "dashboard" / "app.py")
SMALL = {"study": {"name": "x"}, "data": {"source": "digits", "limit": 300},
         "space": {"epochs": {"low": 1, "high": 2}, "batch_size": 64}}


def _finished(url: str, name: str) -> int:
    try:
        return len(optuna.load_study(study_name=name, storage=url).get_trials(states=FINISHED))
    except KeyError:
        return 0


def test_fields_make_a_valid_study():
    definition = study_from_fields(name="f", dataset="digits", trials=3, sampler="random", pruner="none",
                                   families=["mlp"], base=SMALL)
    assert definition["study"]["name"] == "f" and definition["study"]["trials"] == 3
    assert definition["space"]["family"] == "mlp" and definition["data"]["limit"] == 300
    with pytest.raises(SpecError, match=r"the launch form: \[study\] name is required"):
        study_from_fields(name=" ", dataset="digits", trials=3, sampler="tpe", pruner="none", families=["mlp"])


def test_a_submitted_study_runs_on_a_local_agent_and_stops_at_a_trial_boundary(tmp_path):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    definition = study_from_fields(name="bg", dataset="digits", trials=200, sampler="random", pruner="none",
                                   families=["mlp"], base=SMALL)
    entry = submit_definition(definition, url, folder=tmp_path, priority=3)
    assert (entry.name, entry.state, entry.priority, entry.trials) == ("bg", "queued", 3, 200)
    assert list(tmp_path.glob("bg-*.toml"))[0].read_text().startswith("[study]")
    agent = start_agent(url, folder=tmp_path)
    try:
        deadline = time.monotonic() + 180
        while _finished(url, "bg") < 1:
            assert agent.running and time.monotonic() < deadline, agent.log_tail()
            time.sleep(0.5)
        storage = open_storage(url)
        assert [a["status"] for a in live_agents(storage)] == ["working"]
        stop(storage, "bg")
        deadline = time.monotonic() + 120
        while live_agents(storage)[0]["status"] != "idle":  # it left the study after its running trial
            assert time.monotonic() < deadline, agent.log_tail()
            time.sleep(0.5)
        study = optuna.load_study(study_name="bg", storage=url)
        assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
        assert _finished(url, "bg") < 200
        assert agent.stop() == 130
        assert "agent stopped (SIGINT)" in agent.log_tail(50)
        assert live_agents(storage) == []  # it said goodbye in the registry
    finally:
        agent.stop(timeout=10)


def launch_page(monkeypatch, url: str, launches: Path) -> AppTest:
    """The Launch page on storage ``url``, writing its study files to ``launches``."""
    monkeypatch.setenv("DIGITUNE_STORAGE", url)
    monkeypatch.setenv("DIGITUNE_LAUNCH_DIR", str(launches))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(page="Launch")
    at.run(timeout=60)
    assert not at.exception, at.exception
    return at


def test_the_launch_page_submits_starts_an_agent_and_the_queue_page_shows_them(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'page.db'}"
    at = launch_page(monkeypatch, url, tmp_path)
    at.text_input(key="launch_name").input("from-form")
    at.number_input(key="launch_trials").set_value(2)
    at.selectbox(key="launch_sampler").select("random")
    at.selectbox(key="launch_pruner").select("none")
    at.multiselect(key="launch_families").unselect("cnn")
    at.button(key="launch_button").click()
    at.run(timeout=60)
    assert not at.exception, at.exception
    assert any("Launched study 'from-form' (2 trials): submitted to the queue; no agent was running, so one was "
               "started here (1 process)." in s.value for s in at.success), [s.value for s in at.success]
    storage = open_storage(url)
    try:
        deadline = time.monotonic() + 240
        while _finished(url, "from-form") < 2:
            assert time.monotonic() < deadline, "the launched study did not finish"
            time.sleep(1)
        at.run(timeout=60)  # the launch panel follows the queue
        assert not at.exception, at.exception
        assert any("from-form" in m.value and "2 of 2 trials finished" in m.value for m in at.markdown)

        queue = AppTest.from_file(APP, default_timeout=60)
        queue.query_params.update(page="Queue")
        queue.run(timeout=60)
        assert not queue.exception, queue.exception
        table = queue.dataframe[0].value
        assert list(table["study"]) == ["from-form"] and list(table["trials"]) == ["2/2"]
        assert list(table["state"]) in (["done"], ["running"])  # the agent marks it done after its last trial
        agents = queue.dataframe[1].value
        assert len(agents) == 1 and agents["status"][0] in ("idle", "working")
        assert queue.get("plotly_chart")  # the budget figure

        studies = AppTest.from_file(APP, default_timeout=60)
        studies.run(timeout=60)
        assert list(studies.dataframe[0].value["study"]) == ["from-form"]  # the agent registry is not listed
    finally:
        for agent in live_agents(storage):  # the agent the page started: Ctrl-C, as its Stop button does
            os.kill(agent["pid"], signal.SIGINT)


def test_the_queue_page_stops_and_resumes_a_study(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    monkeypatch.setenv("DIGITUNE_STORAGE", url)
    definition = study_from_fields(name="waiting", dataset="digits", trials=5, sampler="random", pruner="none",
                                   families=["mlp"], base=SMALL)
    submit_definition(definition, url, folder=tmp_path)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(page="Queue")
    at.run(timeout=60)
    assert not at.exception, at.exception
    assert list(at.dataframe[0].value["state"]) == ["queued"]
    assert any("No agent has registered" in i.value for i in at.info)
    at.button(key="queue_stop").click()
    at.run(timeout=60)
    assert any("Stopped 'waiting'" in i.value for i in at.info)
    assert queue_entry(open_storage(url), "waiting").state == "stopped"
    at.run(timeout=60)
    at.button(key="queue_resume").click()
    at.run(timeout=60)
    assert not at.exception, at.exception
    assert queue_entry(open_storage(url), "waiting").state == "queued"


def _private(folder: Path) -> Path:
    folder.mkdir(mode=0o700)
    return folder


def test_a_link_planted_under_the_agent_log_name_is_passed_over_not_followed(tmp_path):
    launches, victim = _private(tmp_path / "launches"), tmp_path / "victim.txt"
    victim.write_text("precious\n")
    now = time.time()
    planted = {f"agent-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now + s))}.log" for s in range(-1, 30)}
    for name in planted:  # the names the agent's log could take in the next half minute
        (launches / name).symlink_to(victim)
    agent = start_agent(f"sqlite:///{tmp_path / 'a.db'}", folder=launches)
    try:
        deadline = time.monotonic() + 120
        while "waiting for studies" not in agent.log_tail():
            assert agent.running and time.monotonic() < deadline, agent.log_tail()
            time.sleep(0.2)
    finally:
        agent.stop(timeout=30)
    assert victim.read_text() == "precious\n"
    assert agent.log_file.parent == launches and agent.log_file.name not in planted
    assert agent.log_file.is_file() and not agent.log_file.is_symlink()
    assert agent.log_file.stat().st_mode & 0o777 == 0o600
    assert "agent stopped (SIGINT)" in agent.log_file.read_text()


def _refused(folder: Path) -> str:
    """Every launch call on ``folder`` is refused (``LaunchFolderError``) and writes nothing there; the message."""
    before = sorted(folder.iterdir())
    with pytest.raises(LaunchFolderError) as refused:
        launch_folder(folder)
    with pytest.raises(LaunchFolderError):
        submit_definition(SMALL, f"sqlite:///{folder.parent / 'r.db'}", folder=folder)
    with pytest.raises(LaunchFolderError):
        start_agent(f"sqlite:///{folder.parent / 'r.db'}", folder=folder)
    assert sorted(folder.iterdir()) == before and not (folder.parent / "r.db").exists()
    return str(refused.value)


def test_a_launch_folder_others_can_write_is_refused(tmp_path):
    shared = _private(tmp_path / "shared")
    shared.chmod(0o777)
    assert _refused(shared) == (f"the launch folder {shared} can be written by other users (mode 0777): they could "
                                f"plant or swap files in it; run chmod go-w {shared}, or set $DIGITUNE_LAUNCH_DIR "
                                f"to a folder of your own (e.g. mkdir -m 700 ~/digitune-launches)")
    shared.chmod(0o770)
    assert "can be written by other users (mode 0770)" in _refused(shared)
    shared.chmod(0o755)
    assert launch_folder(shared) == shared  # readable by others is fine: nothing secret is kept there


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_launch_folder_another_user_owns_is_refused(tmp_path):
    theirs = _private(tmp_path / "theirs")
    os.chown(theirs, 65534, 65534)
    message = _refused(theirs)
    assert message.startswith(f"the launch folder {theirs} belongs to ") and "(uid 65534), not to you (" in message
    assert message.endswith("its owner could plant or swap files in it; set $DIGITUNE_LAUNCH_DIR to a folder of "
                            "your own (e.g. mkdir -m 700 ~/digitune-launches)")


def test_the_default_launch_folder_is_private_to_its_user(tmp_path, monkeypatch):
    monkeypatch.delenv("DIGITUNE_LAUNCH_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # tempfile's own setting for the temp folder
    default = tmp_path / f"digitune-launches-{os.geteuid()}"
    assert launch_folder() == default and default.stat().st_mode & 0o777 == 0o700
    default.rmdir()
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    default.symlink_to(tmp_path / "elsewhere")  # planted by someone else in the shared temp folder
    with pytest.raises(LaunchFolderError, match="is a symbolic link, which anyone could have made"):
        launch_folder()


def test_the_study_submitted_is_the_one_parsed_even_if_its_file_is_swapped(tmp_path, monkeypatch):
    import digitune.dashboard._launch as launch

    url = f"sqlite:///{tmp_path / 's.db'}"
    write = launch._write_atomically

    def write_then_swap(path: Path, text: str) -> None:  # whoever owns the folder, between write and submit
        write(path, text)
        path.write_text('[study]\nname = "swapped"\ntrials = 99\n[data]\nsource = "digits"\n')

    monkeypatch.setattr(launch, "_write_atomically", write_then_swap)
    definition = study_from_fields(name="parsed", dataset="digits", trials=3, sampler="random", pruner="none",
                                   families=["mlp"], base=SMALL)
    entry = submit_definition(definition, url, folder=tmp_path)
    assert (entry.name, entry.trials) == ("parsed", 3)
    assert [e.name for e in queue_entries(open_storage(url))] == ["parsed"]


def test_the_launch_page_says_why_it_refuses_a_launch_folder(tmp_path, monkeypatch):
    shared = _private(tmp_path / "shared")
    shared.chmod(0o777)
    at = launch_page(monkeypatch, f"sqlite:///{tmp_path / 'p.db'}", shared)
    assert [e.value for e in at.error] == [f"Cannot launch: the launch folder {shared} can be written by other "
                                           f"users (mode 0777): they could plant or swap files in it; run chmod "
                                           f"go-w {shared}, or set $DIGITUNE_LAUNCH_DIR to a folder of your own "
                                           f"(e.g. mkdir -m 700 ~/digitune-launches)"]
    assert at.button(key="launch_button").disabled
    shared.chmod(0o700)
    at.run(timeout=60)
    assert not at.error and not at.button(key="launch_button").disabled
    assert not list(shared.iterdir()) and not (tmp_path / "p.db").exists()  # showing the page writes nothing
