"""The Streamlit app driven by ``AppTest``: every page and tab, single- and multi-objective, and an empty storage."""

from __future__ import annotations


import pytest

from _dashboard_db import build_dashboard_db

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402
from conftest import REPO

APP = str(REPO / "dashboard" / "app.py")
CHART_TABS = ("History", "Curves", "MLP vs CNN", "Importance", "Parallel", "Slice", "Contour", "EDF", "Timeline")


@pytest.fixture(scope="session")
def dashboard_db(tmp_path_factory, small_digits):
    return build_dashboard_db(tmp_path_factory.mktemp("dashboard"), small_digits)


@pytest.fixture
def app(dashboard_db, monkeypatch):
    """A fresh app on the prepared studies; pass query parameters to open a page."""
    monkeypatch.setenv("DIGITUNE_STORAGE", dashboard_db.url)

    def start(**query: str) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=60)
        at.query_params.update(query)
        at.run(timeout=60)
        assert not at.exception, at.exception
        return at

    return start


def charts(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


def texts(at: AppTest, kind: str) -> str:
    return " ".join(str(e.value) for e in getattr(at, kind))


def test_studies_page_lists_every_study(app, dashboard_db):
    at = app()
    assert [t.value for t in at.title] == ["Studies"]
    table = at.dataframe[0].value
    assert list(table["study"]) == ["tiny", "pareto", "broken"]
    assert list(table["workers"])[0] in ("running now", "idle")
    assert {m.label: m.value for m in at.metric}["studies"] == "3"
    assert "Running now" in texts(at, "subheader")  # tiny has a trial in its second epoch
    assert at.dataframe[1].value["epoch"].tolist() == [2]
    assert dashboard_db.url.removeprefix("sqlite:///") in texts(at, "caption")


@pytest.mark.parametrize("study", ["tiny", "pareto"])
def test_study_page_every_tab(app, study):
    at = app(page="Study", study=study)
    assert [t.value for t in at.title] == [f"Study {study}"]
    labels = [t.label for t in at.tabs]
    assert ("Pareto" in labels) == (study == "pareto")
    assert charts(at) > 0  # History opens first
    for label in labels:
        at.session_state["tab"] = label
        at.run(timeout=60)
        assert not at.exception, (label, at.exception)
        if label in CHART_TABS + ("Pareto",):
            assert charts(at) > 0 or at.info, label
        if label in ("History", "Curves", "MLP vs CNN", "Timeline", "Pareto"):
            assert charts(at) > 0, label
    assert at.session_state["tab"] == "Trials"
    assert at.dataframe and at.get("download_button")
    states = at.multiselect(key="filter_states")
    states.set_value(["complete"]).run(timeout=60)
    assert set(at.dataframe[-1].value["state"]) == {"complete"}


def test_study_page_of_a_study_without_complete_trials(app):
    at = app(page="Study", study="broken")
    for label in [t.label for t in at.tabs]:
        at.session_state["tab"] = label
        at.run(timeout=60)
        assert not at.exception, (label, at.exception)
    at.session_state["tab"] = "Importance"
    at.run(timeout=60)
    assert "complete trial" in texts(at, "info")


def test_trial_page_shows_parameters_model_curves_and_class_report(app, dashboard_db):
    import optuna

    study = optuna.load_study(study_name="tiny", storage=dashboard_db.url)
    best = study.best_trial
    at = app(page="Trial", study="tiny", trial=str(best.number))
    assert [t.value for t in at.title] == [f"Trial {best.number} of tiny"]
    layers = next(df.value for df in at.dataframe if "layer" in df.value.columns)
    assert layers["params"].sum() == best.user_attrs["params_count"]
    if "confusion_matrix" in best.user_attrs:
        assert charts(at) == 3  # learning curves, confusion matrix, per-class accuracy
    else:
        assert "not recorded" in texts(at, "info")
    pruned = next(t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED)
    at = app(page="Trial", study="tiny", trial=str(pruned.number))
    assert [t.value for t in at.title] == [f"Trial {pruned.number} of tiny"]
    assert charts(at) == 1 and "not recorded" in texts(at, "info")
    at = app(page="Trial", study="broken", trial="0")
    assert "loss became NaN" in texts(at, "error")
    at = app(page="Trial", study="pareto")
    assert not at.exception and charts(at) >= 1


def test_compare_page(app):
    at = app(page="Compare")
    assert [t.value for t in at.title] == ["Compare studies"]
    at.multiselect(key="compare").set_value(["tiny", "pareto"]).run(timeout=60)
    assert not at.exception
    assert charts(at) == 1 and list(at.dataframe[0].value["study"]) == ["tiny", "pareto"]
    at.multiselect(key="compare").set_value(["tiny"]).run(timeout=60)
    assert "two or more" in texts(at, "info")


def test_pages_switch_from_the_sidebar(app):
    at = app()
    for page in ("Study", "Trial", "Compare", "Studies"):
        at.sidebar.radio(key="page").set_value(page).run(timeout=60)
        assert not at.exception, (page, at.exception)
        assert at.title


def test_an_empty_storage_says_there_are_no_studies_yet(tmp_path, monkeypatch):
    path = tmp_path / "empty.db"
    monkeypatch.setenv("DIGITUNE_STORAGE", f"sqlite:///{path}")
    for page in ("Studies", "Study", "Trial", "Compare"):
        at = AppTest.from_file(APP, default_timeout=60)
        at.query_params["page"] = page
        at.run(timeout=60)
        assert not at.exception
        assert "No studies yet" in texts(at, "info") or "none yet" in texts(at, "info"), page
    assert not path.exists()  # reading never creates the database


def test_storage_comes_from_the_arguments_then_the_environment(monkeypatch):
    from digitune.dashboard import storage_url

    monkeypatch.setenv("DIGITUNE_STORAGE", "sqlite:///env.db")
    assert storage_url(["--storage", "sqlite:///x.db"]) == "sqlite:///x.db"
    assert storage_url(["--storage", "studies/y.db"]) == "sqlite:///studies/y.db"
    assert storage_url(["-q", "--storag", "z"]) == "sqlite:///env.db"  # no abbreviations taken from pytest's own
    monkeypatch.delenv("DIGITUNE_STORAGE")
    assert storage_url([]) == "sqlite:///studies/digitune.db"


def test_the_app_never_wrote_to_the_database(dashboard_db):
    dashboard_db.assert_unchanged()
