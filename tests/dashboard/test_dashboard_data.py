"""The dashboard's data and figure functions on real studies, checked against Optuna; it never writes.

The studies are built once per test session (``dashboard_db``, shared with the app and
browser tests): "tiny" (single objective, MLP and CNN, the seven tutorial baselines, pruned
trials and one trial still running), "pareto" (val_accuracy:max and params:min with a
parameter budget, so some trials are infeasible) and "broken" (every trial failed, with
its reason, as digitune records a NaN loss).
"""

from __future__ import annotations

import datetime as dt
import warnings

import optuna
import pytest
from optuna.trial import TrialState

from digitune.search import open_storage

from _dashboard_db import FAIL_REASON, DashboardDB, build_dashboard_db


@pytest.fixture(scope="session")
def dashboard_db(tmp_path_factory, small_digits) -> DashboardDB:
    return build_dashboard_db(tmp_path_factory.mktemp("dashboard"), small_digits)


@pytest.fixture(scope="module")
def reader(dashboard_db):
    from digitune.dashboard import Reader

    return Reader.open(dashboard_db.url)


def _optuna(dashboard_db, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=dashboard_db.url)


# --------------------------------------------------------------------------- records


def test_studies_rows_match_optuna(reader, dashboard_db):
    rows = {r["name"]: r for r in reader.studies()}
    assert set(rows) == {"tiny", "pareto", "broken"}
    for name, row in rows.items():
        study = _optuna(dashboard_db, name)
        trials = study.trials
        assert row["n_trials"] == len(trials)
        assert row["trials"] == {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
        assert row["directions"] == [d.name.lower() for d in study.directions]
        assert row["dataset"] == study.user_attrs["dataset"]["name"] and row["digitune"]
        activity = max(t.datetime_complete or t.datetime_start for t in trials if t.datetime_start)
        assert row["last_activity"] == activity.isoformat(timespec="seconds")
    tiny, pareto, broken = rows["tiny"], rows["pareto"], rows["broken"]
    assert tiny["objectives"] == ["val_accuracy:max"] and tiny["dataset"] == "digits"
    assert tiny["best_value"] == _optuna(dashboard_db, "tiny").best_value
    assert tiny["best_trial"] == _optuna(dashboard_db, "tiny").best_trial.number
    assert tiny["trials"]["running"] == 1 and tiny["trials"]["pruned"] >= 1
    assert [r["epoch"] for r in tiny["running"]] == [2] and tiny["running"][0]["last_value"] == 0.4
    assert tiny["running_now"] == tiny["running"][0]["alive"]
    assert pareto["objectives"] == ["val_accuracy:max", "params:min"] and pareto["best_value"] is None
    assert pareto["pareto_size"] == len(_optuna(dashboard_db, "pareto").best_trials)
    assert broken["trials"]["fail"] == broken["n_trials"] > 0 and broken["best_value"] is None
    assert not broken["running_now"] and not pareto["running_now"]


def test_trial_records_match_optuna(reader, dashboard_db):
    for name in ("tiny", "pareto", "broken"):
        data = reader.study(name)
        trials = _optuna(dashboard_db, name).trials
        assert [r["number"] for r in data.records] == [t.number for t in trials]
        for record, trial in zip(data.records, trials):
            assert record["state"] == trial.state.name.lower()
            assert record["values"] == trial.values
            assert record["params"] == trial.params
            assert record["intermediate_values"] == trial.intermediate_values
            assert record["curves"] == trial.user_attrs.get("curves", {})
            assert record["family"] == trial.user_attrs.get("family")
            assert record["baseline"] == trial.user_attrs.get("baseline")
            assert record["fail_reason"] == trial.user_attrs.get("fail_reason")
            assert record["confusion_matrix"] == trial.user_attrs.get("confusion_matrix")
            assert record["datetime_start"] == trial.datetime_start
            assert record["feasible"] == all(v <= 0 for v in trial.constraints.values())
    tiny = reader.study("tiny")
    assert {r["baseline"] for r in tiny.records if r["baseline"]} == {
        "tutorial-mlp-50", "tutorial-wide-500", "tutorial-deep-5x50", "tutorial-deep-dropout",
        "tutorial-deep-50-epochs", "tutorial-deep-wide-5x500", "tutorial-cnn"}
    broken = reader.study("broken")
    assert [r["fail_reason"] for r in broken.records] == [FAIL_REASON] * 2
    pareto = reader.study("pareto")
    assert pareto.pareto_numbers == sorted(t.number for t in _optuna(dashboard_db, "pareto").best_trials)
    assert any(not r["feasible"] for r in pareto.records), "expected an infeasible trial over max_params"


def test_learning_curves_come_from_the_stored_curves_or_the_reported_epochs(reader):
    from digitune.dashboard import learning_curves

    data = reader.study("tiny")
    curves = {c["number"]: c for c in learning_curves(data)}
    for record in data.records:
        if record["state"] == "running":
            assert curves[record["number"]]["values"] == [0.3, 0.4]
        else:
            assert curves[record["number"]]["values"] == record["curves"]["val_accuracy"]
    losses = learning_curves(data, "val_loss")
    assert all(c["best"] == min(c["values"]) for c in losses)


def test_refresh_reads_only_unfinished_and_new_trials(tmp_path):
    from digitune.dashboard import Reader

    url = f"sqlite:///{tmp_path / 'live.db'}"
    study = optuna.create_study(study_name="live", storage=open_storage(url, heartbeat=False))
    study.add_trials([optuna.trial.create_trial(params={"x": float(i)}, value=float(i),
                                                distributions={"x": optuna.distributions.FloatDistribution(0, 99)})
                      for i in range(5)])
    running = study.ask({"x": optuna.distributions.FloatDistribution(0, 99)})
    reader = Reader.open(url)
    first = reader.study("live")
    assert len(first.records) == 6 and reader.reads == 6
    again = reader.study("live")
    assert again is first and reader.reads == 7  # only the running trial was read again
    running.report(0.5, 0)
    study.tell(running, 7.0)
    study.add_trial(optuna.trial.create_trial(params={"x": 1.0}, value=1.0,
                                              distributions={"x": optuna.distributions.FloatDistribution(0, 99)}))
    fresh = reader.study("live")
    assert reader.reads == 9 and fresh.version == first.version + 1
    assert [r["state"] for r in fresh.records] == ["complete"] * 7
    assert fresh.records[5]["value"] == 7.0 and fresh.records[5]["intermediate_values"] == {0: 0.5}
    assert [r["value"] for r in fresh.records] == [t.value for t in study.trials]


def test_workers_count_as_running_by_heartbeat_else_by_a_recent_start(tmp_path):
    from digitune.dashboard import RECENT_START_SECONDS, Reader, trial_alive

    now = dt.datetime(2030, 1, 1, 12, 0, 0)
    minutes = lambda m: now - dt.timedelta(minutes=m)  # noqa: E731
    assert trial_alive(minutes(1), None, now=now, db_now=None)
    assert not trial_alive(minutes(RECENT_START_SECONDS / 60 + 1), None, now=now, db_now=None)
    assert trial_alive(minutes(60), minutes(0.5), now=now, db_now=now)  # long trial, fresh heartbeat
    assert not trial_alive(minutes(1), minutes(5), now=now, db_now=now)  # its worker stopped beating

    url = f"sqlite:///{tmp_path / 'beat.db'}"
    storage = open_storage(url, heartbeat=False)
    study = optuna.create_study(study_name="beat", storage=storage)
    fresh = study.ask()
    storage.record_heartbeat(fresh._trial_id)
    old = optuna.trial.create_trial(state=TrialState.RUNNING)
    old.datetime_start = dt.datetime.now() - dt.timedelta(hours=1)
    study.add_trial(old)
    row = Reader.open(url).studies()[0]
    assert [(r["number"], r["alive"]) for r in row["running"]] == [(0, True), (1, False)]
    assert row["running_now"]


def test_a_missing_sqlite_file_is_empty_and_not_created(tmp_path):
    from digitune.dashboard import Reader

    path = tmp_path / "nothing" / "here.db"
    reader = Reader.open(f"sqlite:///{path}")
    assert reader.studies() == [] and reader.study_names() == []
    with pytest.raises(KeyError):
        reader.study("x")
    assert not path.exists() and not path.parent.exists()


def test_passwords_are_never_shown():
    from digitune.dashboard import Reader

    reader = Reader(None, url="postgresql+psycopg://alice:s3cret@db.example/studies")
    assert "s3cret" not in reader.display_url and "***" in reader.display_url


def test_model_layers_rebuild_the_trials_model(reader):
    from digitune.dashboard import model_layers

    data = reader.study("tiny")
    one_per_family = {r["family"]: r for r in data.records if r["model_config"] and r["state"] == "complete"}
    assert set(one_per_family) == {"mlp", "cnn"}
    for record in one_per_family.values():
        summary = model_layers(record["model_config"], data.image_shape)
        assert summary["total_params"] == record["params_count"]
        assert sum(layer["params"] for layer in summary["layers"]) == record["params_count"]
        assert summary["layers"][0]["output shape"] == "(None, 8, 8)"
        assert summary["layers"][-1]["output shape"] == "(None, 10)"


# --------------------------------------------------------------------------- figures


def test_history_marks_baselines_best_line_and_log_axis(reader):
    from digitune.dashboard import history_figure

    data = reader.study("tiny")
    fig = history_figure(data)
    traces = {t.name: t for t in fig.data}
    complete = [r for r in data.records if r["state"] == "complete"]
    baseline = traces["tutorial baselines"]
    assert len(baseline.x) == 7 and baseline.marker.symbol == "star" and "tutorial-cnn" in baseline.text
    searched = sum(len(t.x) for name, t in traces.items() if name in ("mlp", "cnn"))
    assert searched + len(baseline.x) == len(complete)
    best = traces["best so far"]
    assert len(best.x) == len(complete) and best.y[-1] == reader.study("tiny").best["value"]
    assert list(best.y) == sorted(best.y)
    assert fig.layout.yaxis.type != "log"
    assert history_figure(data, log_y=True).layout.yaxis.type == "log"
    pareto = reader.study("pareto")
    by_params = history_figure(pareto, objective=1)
    assert "infeasible" in {t.name for t in by_params.data}
    assert list(next(t for t in by_params.data if t.name == "best so far").y) == \
        sorted(next(t for t in by_params.data if t.name == "best so far").y, reverse=True)


def test_curves_style_pruned_and_running_trials_apart_and_filter_top_k(reader):
    from digitune.dashboard import curves_figure, learning_curves

    data = reader.study("tiny")
    curves = learning_curves(data)
    fig = curves_figure(curves)
    assert len(fig.data) == len(curves)
    for trace, curve in zip(fig.data, curves):
        assert len(trace.y) == len(curve["values"]) and trace.name.startswith(f"#{curve['number']} ")
        if curve["state"] == "pruned":
            assert trace.line.dash == "dash" and "pruned" in trace.name and trace.line.color == "#b0b0b0"
        elif curve["state"] == "running":
            assert trace.line.dash == "dot" and "running" in trace.name
        else:
            assert trace.line.dash is None and trace.line.color != "#b0b0b0"
    top = curves_figure(curves, top_k=3)
    best3 = sorted(curves, key=lambda c: c["best"], reverse=True)[:3]
    assert {int(t.name[1:].split()[0]) for t in top.data} == {c["number"] for c in best3}
    assert all("pruned" not in t.name for t in curves_figure(curves, show_pruned=False).data)


def test_families_and_accuracy_vs_params(reader):
    from digitune.dashboard import families_figure, params_figure

    data = reader.study("tiny")
    complete = [r for r in data.records if r["state"] == "complete"]
    boxes = [t for t in families_figure(data).data if t.type == "box"]
    assert sorted(t.name for t in boxes) == ["cnn", "mlp"]
    assert sum(len(t.y) for t in boxes) == len(complete)
    fig = params_figure(data)
    assert fig.layout.xaxis.type == "log"
    baseline = next(t for t in fig.data if t.name == "tutorial baselines")
    assert baseline.marker.symbol == "star" and len(baseline.x) == 7 and "tutorial-wide-500" in baseline.text
    assert sum(len(t.x) for t in fig.data) == len(complete)
    assert any(shape.x0 == 3000 for shape in params_figure(reader.study("pareto")).layout.shapes)  # the budget


def test_pareto_front_greys_infeasible_trials(reader):
    from digitune.dashboard import pareto_figure

    data = reader.study("pareto")
    traces = {t.name: t for t in pareto_figure(data).data}
    assert sorted(traces["Pareto front"].x) == sorted(data.record(n)["values"][1] for n in data.pareto_numbers)
    assert traces["infeasible"].marker.color == "#b0b0b0"
    assert len(traces["infeasible"].x) == sum(not r["feasible"] for r in data.records)
    assert pareto_figure(data).layout.xaxis.type == "log"  # parameter counts
    assert not pareto_figure(reader.study("tiny")).data  # single objective: a message instead


def test_timeline_has_a_bar_per_started_trial_coloured_by_state(reader):
    from digitune.dashboard import timeline_figure

    data = reader.study("tiny")
    fig = timeline_figure(data)
    assert {t.name: len(t.y) for t in fig.data} == {
        s: sum(r["state"] == s for r in data.records) for s in {r["state"] for r in data.records}}
    assert fig.layout.xaxis.type == "date"


def test_trials_table_filters_and_csv(reader):
    import csv
    import io

    from digitune.dashboard import table_csv, trials_table

    data = reader.study("tiny")
    rows = trials_table(data)
    assert len(rows) == len(data.records) and rows[0]["val_accuracy"] == data.records[0]["values"][0]
    assert {r["state"] for r in trials_table(data, states=["pruned"])} == {"pruned"}
    assert {r["family"] for r in trials_table(data, families=["cnn"])} == {"cnn"}
    best = data.best["value"]
    assert [r["number"] for r in trials_table(data, value_range=(best, 1.0))] == [
        r["number"] for r in data.records if r["state"] in ("complete", "pruned") and r["values"][0] >= best]
    parsed = list(csv.DictReader(io.StringIO(table_csv(rows).decode())))
    assert len(parsed) == len(rows) and "param_learning_rate" in parsed[0]


def test_optuna_plots_or_a_friendly_message(reader):
    from digitune.dashboard import OPTUNA_PLOTS, optuna_figure

    for name in ("tiny", "pareto"):
        data = reader.study(name)
        for kind in OPTUNA_PLOTS:
            fig, message = optuna_figure(kind, data.optuna_study, objective_name=data.objectives[0],
                                         params=["learning_rate", "epochs"] if kind == "contour" else None)
            assert (fig is None) != (message is None)
            assert fig is None or len(fig.data) > 0
    broken = reader.study("broken")
    for kind in OPTUNA_PLOTS:
        fig, message = optuna_figure(kind, broken.optuna_study)
        assert fig is None and "complete trial" in message


def test_importances_within_a_family_use_only_its_trials(reader):
    from digitune.dashboard import family_importances

    data = reader.study("pareto")
    for family in {r["family"] for r in data.records if r["state"] == "complete"}:
        try:
            importances = family_importances(data, family)
        except ValueError as exc:
            assert "trials" in str(exc) or "parameter" in str(exc)
            continue
        other = "cnn" if family == "mlp" else "mlp"
        assert importances and "family" not in importances
        assert not any(name.startswith(f"{other}_") for name in importances)
        assert abs(sum(importances.values()) - 1) < 1e-6


def test_class_report_figures():
    from digitune.dashboard import confusion_figure, per_class_figure

    matrix = [[5 if i == j else 0 for j in range(10)] for i in range(10)]
    heat = confusion_figure(matrix).data[0]
    assert heat.type == "heatmap" and len(heat.z) == 10
    assert list(per_class_figure([0.5] * 10).data[0].y) == [0.5] * 10


def test_every_page_function_leaves_the_database_untouched(reader, dashboard_db):
    from digitune.dashboard import (OPTUNA_PLOTS, compare_figure, compare_rows, curves_figure, families_figure,
                           history_figure, learning_curves, optuna_figure, params_figure, pareto_figure,
                           study_summary, timeline_figure, trial_curves_figure, trials_table)

    reader.studies()
    studies = [reader.study(name) for name in ("tiny", "pareto", "broken")]
    for data in studies:
        study_summary(data)
        history_figure(data)
        curves_figure(learning_curves(data))
        families_figure(data)
        params_figure(data)
        pareto_figure(data)
        timeline_figure(data)
        trials_table(data)
        for kind in OPTUNA_PLOTS:
            optuna_figure(kind, data.optuna_study)
        for record in data.records:
            trial_curves_figure(record)
    compare_figure(studies)
    compare_rows(studies)
    dashboard_db.assert_unchanged()


def test_in_memory_copy_for_optuna_plots(reader, dashboard_db):
    data = reader.study("tiny")
    study = data.optuna_study
    trials = study.get_trials(deepcopy=False)
    assert [(t.number, t.state, t.values, t.params) for t in trials] == \
        [(t.number, t.state, t.values, t.params) for t in data.trials]
    assert all(t.user_attrs == {} for t in trials)  # curves and configs stay out of the copy
    assert study.trials[0] is study.trials[0]  # handed out without a deep copy each time...
    assert study.trials[0] is not data.trials[0]  # ...but a copy of the reader's trial all the same
    pareto = reader.study("pareto")
    assert pareto.pareto_numbers == sorted(t.number for t in pareto.optuna_study.best_trials)
    assert pareto.pareto_numbers == sorted(t.number for t in _optuna(dashboard_db, "pareto").best_trials)


def test_parallel_plot_sample_is_evenly_spaced_complete_trials(reader):
    data = reader.study("tiny")
    complete = [t for t in data.trials if t.state == TrialState.COMPLETE]
    whole, count = data.optuna_sample(len(complete))
    assert whole is data.optuna_study and count == len(complete)
    sample, count = data.optuna_sample(3)
    assert count == len(complete)
    step = len(complete) / 3
    assert [t.params for t in sample.trials] == [complete[int(i * step)].params for i in range(3)]
    assert {t.state for t in sample.trials} == {TrialState.COMPLETE}
    assert data.optuna_sample(3)[0] is sample  # made once per version of the study


def test_importance_figure_ranks_optuna_importances(reader):
    from digitune.dashboard import optuna_figure

    data = reader.study("tiny")
    fig, message = optuna_figure("importance", data.optuna_study, objective_name="val_accuracy")
    assert message is None and fig.data[0].type == "bar" and fig.data[0].orientation == "h"
    with warnings.catch_warnings():  # a few trials per regime: Optuna warns
        warnings.simplefilter("ignore")
        ranked = optuna.importance.get_param_importances(data.optuna_study)
    assert set(fig.data[0].y) == set(ranked)
    assert abs(sum(fig.data[0].x) - 1) < 1e-6 and list(fig.data[0].x) == sorted(fig.data[0].x)
    assert "val_accuracy" in fig.layout.title.text
