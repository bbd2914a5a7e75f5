"""Launching a study from the dashboard: fields or a file, a background run, a clean stop."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest

from dashboard._launch import launch, study_from_fields
from search import FINISHED, SpecError

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

pytestmark = pytest.mark.slow
APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
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


def test_a_launch_runs_in_the_background_and_stops_cleanly(tmp_path):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    definition = study_from_fields(name="bg", dataset="digits", trials=200, sampler="random", pruner="none",
                                   families=["mlp"], base=SMALL)
    run = launch(definition, url, folder=tmp_path)
    try:
        deadline = time.monotonic() + 180
        while _finished(url, "bg") < 1:
            assert run.running and time.monotonic() < deadline, run.log_tail()
            time.sleep(0.5)
        assert run.stop() == 130
        study = optuna.load_study(study_name="bg", storage=url)
        assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
        assert "interrupted (SIGINT)" in run.log_tail(50)
        assert run.study_file.read_text().startswith("[study]")
    finally:
        run.stop(timeout=10)


def test_the_launch_page_starts_a_study_that_completes_and_is_listed(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'page.db'}"
    monkeypatch.setenv("DIGITUNE_STORAGE", url)
    monkeypatch.setenv("DIGITUNE_LAUNCH_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(page="Launch")
    at.run(timeout=60)
    assert not at.exception, at.exception
    at.text_input(key="launch_name").input("from-form")
    at.number_input(key="launch_trials").set_value(2)
    at.selectbox(key="launch_sampler").select("random")
    at.selectbox(key="launch_pruner").select("none")
    at.multiselect(key="launch_families").unselect("cnn")
    at.button(key="launch_button").click()
    at.run(timeout=60)
    assert not at.exception, at.exception
    assert any("Launched study 'from-form' (2 trials)" in s.value for s in at.success)
    deadline = time.monotonic() + 240
    while _finished(url, "from-form") < 2:
        assert time.monotonic() < deadline, "the launched study did not finish"
        time.sleep(1)
    at.run(timeout=60)  # the launch panel follows the run
    assert not at.exception, at.exception
    assert any("from-form" in m.value and "2 of 2 trials finished" in m.value for m in at.markdown)
    studies = AppTest.from_file(APP, default_timeout=60)
    studies.run(timeout=60)
    assert "from-form" in list(studies.dataframe[0].value["study"])
