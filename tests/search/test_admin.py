"""export, delete and doctor: real SQLite studies, the CLI in-process and once through its entry point."""

from __future__ import annotations

import csv
import datetime
import io
import json
import sqlite3
from pathlib import Path

import optuna
import pytest
from conftest import run_cli
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState, create_trial
from typer.testing import CliRunner

from digitune.search import (
    Check,
    delete_study,
    export_data,
    open_storage,
    run_checks,
    write_export,
)
from digitune.search.cli import app

runner = CliRunner()

PASSWORD_URL = "postgresql+psycopg://u:hunter2@127.0.0.1:1/x"
DISTRIBUTIONS = {
    "family": CategoricalDistribution(["mlp", "cnn"]),
    "learning_rate": FloatDistribution(1e-4, 1e-1, log=True),
    "mlp_units": IntDistribution(8, 64),
    "cnn_filters": IntDistribution(4, 8),
}


def _trial(state: TrialState, params: dict, attrs: dict, *, value: float | None = None,
           intermediate: dict | None = None):
    return create_trial(
        state=state, value=value, params=params, distributions={k: DISTRIBUTIONS[k] for k in params},
        user_attrs=attrs, intermediate_values=intermediate or {}
    )


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A storage with study 'alpha' (complete, pruned and failed trials) and an empty study 'beta'."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = open_storage(url, heartbeat=False)
    study = optuna.create_study(study_name="alpha", storage=storage, direction="maximize")
    study.add_trial(_trial(
        TrialState.COMPLETE, {"family": "mlp", "learning_rate": 0.01, "mlp_units": 32},
        {"family": "mlp", "params_count": 1234, "train_seconds": 1.5, "epochs_run": 2,
         "curves": {"loss": [1.0, 0.5], "val_accuracy": [0.8, 0.9]}},
        value=0.9, intermediate={0: 0.8, 1: 0.9}))
    study.add_trial(_trial(
        TrialState.PRUNED, {"family": "cnn", "learning_rate": 0.02, "cnn_filters": 6},
        {"family": "cnn", "params_count": 999, "train_seconds": 0.7, "epochs_run": 1,
         "curves": {"loss": [float("nan")], "val_accuracy": [0.1]}},
        intermediate={0: 0.1}))
    study.add_trial(_trial(
        TrialState.FAIL, {"family": "mlp", "learning_rate": 0.05, "mlp_units": 8},
        {"family": "mlp", "fail_reason": "TrainingError: loss became NaN at epoch 1", "curves": {}}))
    optuna.create_study(study_name="beta", storage=storage)
    return url


def _names(url: str) -> list[str]:
    return sorted(optuna.get_all_study_names(storage=open_storage(url, heartbeat=False)))


# --------------------------------------------------------------------------- export


def test_export_csv_has_a_row_per_trial_that_parses_back(db):
    result = runner.invoke(app, ["export", "alpha", "--format", "csv", "--storage", db])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == [
        "number", "state", "value", "param_cnn_filters", "param_family", "param_learning_rate", "param_mlp_units",
        "datetime_start", "datetime_complete", "duration_seconds", "family", "params_count", "train_seconds",
        "epochs_run", "fail_reason", "intermediate_values", "curves"]
    assert [(r["number"], r["state"]) for r in rows] == [("0", "complete"), ("1", "pruned"), ("2", "fail")]
    done, pruned, failed = rows
    assert float(done["value"]) == 0.9 and pruned["value"] == "" and failed["value"] == ""
    assert float(done["param_learning_rate"]) == 0.01 and int(done["param_mlp_units"]) == 32
    assert done["param_cnn_filters"] == "" and int(pruned["param_cnn_filters"]) == 6
    assert int(done["params_count"]) == 1234 and float(done["train_seconds"]) == 1.5 and done["epochs_run"] == "2"
    assert json.loads(done["curves"]) == {"loss": [1.0, 0.5], "val_accuracy": [0.8, 0.9]}
    assert json.loads(pruned["curves"]) == {"loss": [None], "val_accuracy": [0.1]}  # NaN becomes null
    assert json.loads(done["intermediate_values"]) == {"0": 0.8, "1": 0.9}
    assert failed["fail_reason"] == "TrainingError: loss became NaN at epoch 1"
    start, complete = (datetime.datetime.fromisoformat(done[k]) for k in ("datetime_start", "datetime_complete"))
    assert float(done["duration_seconds"]) == pytest.approx((complete - start).total_seconds())


def test_export_json_to_a_file_and_to_stdout(db, tmp_path):
    target = tmp_path / "out" / "alpha.json"
    target.parent.mkdir()
    result = runner.invoke(app, ["export", "alpha", "--format", "json", "-o", str(target), "--storage", db])
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "exported 3 trials" in result.stderr
    data = json.loads(target.read_text())
    assert data["study"] == "alpha" and data["directions"] == ["maximize"]
    trials = data["trials"]
    assert [t["state"] for t in trials] == ["complete", "pruned", "fail"]
    assert trials[0]["value"] == 0.9 and trials[0]["values"] == [0.9] and trials[1]["value"] is None
    assert trials[0]["params"] == {"family": "mlp", "learning_rate": 0.01, "mlp_units": 32}
    assert trials[0]["curves"]["val_accuracy"] == [0.8, 0.9] and trials[1]["curves"]["loss"] == [None]
    assert trials[2]["fail_reason"].startswith("TrainingError")

    piped = runner.invoke(app, ["export", "alpha", "-f", "json", "--storage", db])
    assert piped.exit_code == 0, piped.output
    assert json.loads(piped.stdout) == data


def test_export_library_of_an_empty_study(db):
    data = export_data("beta", open_storage(db, heartbeat=False))
    assert data["trials"] == [] and data["directions"] == ["minimize"]
    stream = io.StringIO()
    write_export(data, "csv", stream)
    header = ("number,state,value,datetime_start,datetime_complete,duration_seconds,family,params_count,"
              "train_seconds,epochs_run,fail_reason,intermediate_values,curves")
    assert stream.getvalue().splitlines() == [header]


@pytest.mark.parametrize("args", [
    ["export", "nosuch", "--format", "csv"],
    ["delete", "nosuch", "--yes"],
    ["delete", "nosuch"],
])
def test_unknown_study_is_one_line_and_exit_2(db, args):
    result = runner.invoke(app, [*args, "--storage", db])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no study named 'nosuch'"), result.stderr


def test_export_bad_format_or_unwritable_file_exit_2(db, tmp_path):
    bad = runner.invoke(app, ["export", "alpha", "--format", "xml", "--storage", db])
    assert bad.exit_code == 2 and "xml" in bad.stderr
    unwritable = runner.invoke(app, ["export", "alpha", "-f", "csv", "-o", str(tmp_path / "no" / "x.csv"),
                                     "--storage", db])
    assert unwritable.exit_code == 2
    assert unwritable.stderr.strip().startswith("error: cannot write") and "Traceback" not in unwritable.stderr


# --------------------------------------------------------------------------- delete


def test_delete_yes_removes_the_study(db):
    result = runner.invoke(app, ["delete", "alpha", "--yes", "--storage", db])
    assert result.exit_code == 0, result.output
    assert "deleted study 'alpha' and its 3 trials" in result.stdout
    assert _names(db) == ["beta"]


@pytest.mark.parametrize(("answer", "left"), [("n\n", ["alpha", "beta"]), ("\n", ["alpha", "beta"]),
                                              ("", ["alpha", "beta"]), ("y\n", ["beta"])])
def test_delete_asks_first(db, answer, left):
    result = runner.invoke(app, ["delete", "alpha", "--storage", db], input=answer)
    assert result.exit_code == 0, result.output
    assert "Delete study alpha with 3 trials? [y/N]" in result.stdout
    assert ("aborted; nothing deleted" in result.stdout) == (len(left) == 2)
    assert _names(db) == left


def test_delete_library_counts_trials(db):
    storage = open_storage(db, heartbeat=False)
    assert delete_study("beta", storage) == 0
    assert _names(db) == ["alpha"]


# --------------------------------------------------------------------------- doctor


def _expected_names() -> list[str]:
    import keras

    return ["python", "digitune", "keras", keras.backend.backend(), "optuna", "optuna-integration", "numpy",
            "scikit-learn", "sqlalchemy", "backend", "devices", "storage", "schema", "data: digits",
            "data: fashion-mnist", "data: mnist"]


def test_doctor_on_a_good_storage(db):
    result = runner.invoke(app, ["doctor", "--storage", db])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for name in _expected_names():
        assert any(line.strip().startswith(name + " ") for line in lines), (name, result.stdout)
    assert "reachable, 2 studies" in result.stdout and "current (" in result.stdout


def test_doctor_json(db, tmp_path, monkeypatch):
    import digitune.models._data

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(digitune.models._data, "FASHION_MNIST_DIR", tmp_path / "no-fashion")
    result = runner.invoke(app, ["doctor", "--storage", db, "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["check"] for r in rows] == _expected_names()
    assert all(set(r) == {"check", "status", "detail"} and r["status"] in ("ok", "warn", "fail") for r in rows)
    by_name = {r["check"]: r for r in rows}
    assert by_name["data: digits"]["status"] == "ok"
    assert by_name["data: fashion-mnist"]["status"] == "warn"
    assert "apt-get install dataset-fashion-mnist" in by_name["data: fashion-mnist"]["detail"]
    assert by_name["data: mnist"]["status"] == "warn" and "downloaded on first use" in by_name["data: mnist"]["detail"]

    (tmp_path / "keras" / "datasets").mkdir(parents=True)
    (tmp_path / "keras" / "datasets" / "mnist.npz").write_bytes(b"")
    checks = {c.name: c for c in run_checks(db)}
    assert checks["data: mnist"] == Check("data: mnist", "ok", str(tmp_path / "keras" / "datasets" / "mnist.npz"))


def test_doctor_warns_about_an_old_schema_and_creates_no_database(db, tmp_path):
    storage = open_storage(db, heartbeat=False)
    older = storage.get_all_versions()[1]
    storage.engine.dispose()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (older,))
    checks = {c.name: c for c in run_checks(db)}
    assert checks["storage"].status == "ok"
    assert checks["schema"].status == "warn"
    assert f"run `optuna storage upgrade --storage {db}`" in checks["schema"].detail

    missing = tmp_path / "new" / "x.db"
    checks = {c.name: c for c in run_checks(f"sqlite:///{missing}")}
    assert checks["storage"].status == "ok" and "no database yet" in checks["storage"].detail
    assert not missing.exists() and not missing.parent.exists()


def test_doctor_unreachable_storage_fails_without_the_password():
    result = runner.invoke(app, ["doctor", "--storage", PASSWORD_URL])
    assert result.exit_code == 1, result.output
    assert "hunter2" not in result.output
    rows = {c.name: c for c in run_checks(PASSWORD_URL)}
    assert rows["storage"].status == "fail" and "u:***@127.0.0.1:1/x" in rows["storage"].detail
    assert all("hunter2" not in c.detail for c in rows.values())


# --------------------------------------------------------------------------- entry point


def test_export_and_delete_through_the_entry_point(db, tmp_path):
    exported = run_cli("export", "alpha", "--format", "csv", "--storage", db, cwd=tmp_path, timeout=120)
    assert exported.returncode == 0, exported.stderr
    assert len(list(csv.DictReader(io.StringIO(exported.stdout)))) == 3
    deleted = run_cli("delete", "alpha", "--yes", "--storage", db, cwd=tmp_path, timeout=120)
    assert deleted.returncode == 0, deleted.stderr
    assert _names(db) == ["beta"]
