"""The final model: export-model --ensemble K and --retrain, their records on the study, and best/show naming them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from conftest import run_cli, write_study
from digitune.models import average_model, evaluate, load_model, predict_proba
from digitune.search import ModelKeeper
from digitune.search.cli import app
from test_portable_models import _plain_keras

pytestmark = pytest.mark.slow
runner = CliRunner()


class Study:
    """The shared study: 4 finished MLP trials of 1-2 epochs on 300 digits, the models of the best 3 kept."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.name = "final"
        self.db = f"sqlite:///{folder / 'studies.db'}"
        self.artifacts = folder / "studies-artifacts"  # beside the SQLite file

    def load(self) -> optuna.Study:
        return optuna.load_study(study_name=self.name, storage=self.db)

    def export(self, path: Path, *options: str) -> None:
        result = runner.invoke(app, ["export-model", self.name, "-o", str(path), "--storage", self.db, *options])
        assert result.exit_code == 0, result.output

    def cli(self, *args: str):
        return run_cli(*args, "--storage", self.db, cwd=self.folder)

    def records(self) -> dict:
        return self.load().user_attrs["test_accuracy"]

    def best_first(self) -> list[int]:
        """The completed trials, best value first."""
        complete = self.load().get_trials(states=(TrialState.COMPLETE,))
        return [t.number for t in sorted(complete, key=lambda t: t.value, reverse=True)]

    def kept_best_first(self) -> list[int]:
        """The trials whose model is kept, best value first."""
        saved = self.load().user_attrs["saved_models"]
        return [n for n in self.best_first() if str(n) in saved]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Study:
    folder = tmp_path_factory.mktemp("ensemble")
    path = write_study(folder, "final", trials=4, family='"mlp"', pruner="none")
    text = path.read_text().replace("seed = 7\n", "seed = 7\nsave_models = 3\n", 1)
    path.write_text(text.replace("epochs = {low = 1, high = 3}", "epochs = {low = 1, high = 2}"))
    shared = Study(folder)
    result = runner.invoke(app, ["run", str(path), "--storage", shared.db])
    assert result.exit_code == 0, result.output
    assert len(shared.kept_best_first()) == 3
    return shared


@pytest.fixture(scope="module")
def data(study, small_digits):
    assert small_digits.info.fingerprint == study.load().user_attrs["dataset"]["fingerprint"]  # the study's data
    return small_digits


def _kept_models(study: Study, numbers: list[int], folder: Path) -> list:
    keeper = ModelKeeper(study.artifacts, 3)
    models = []
    for number in numbers:
        assert keeper.fetch(study.load(), number, folder / f"trial-{number}.keras")
        models.append(load_model(folder / f"trial-{number}.keras"))
    return models


def test_the_ensemble_is_the_mean_of_the_best_saved_models(study, data, tmp_path):
    members = _kept_models(study, study.kept_best_first(), tmp_path)
    outputs = [predict_proba(m, data.x_test) for m in members]
    assert not np.allclose(outputs[0], outputs[1])  # distinct models: the mean is not any one of them
    mean = np.mean(outputs, axis=0)
    np.testing.assert_allclose(predict_proba(average_model(members), data.x_test), mean, rtol=1e-5, atol=1e-6)

    exported = tmp_path / "ensemble.keras"
    study.export(exported, "--ensemble", "3")
    np.testing.assert_allclose(predict_proba(load_model(exported), data.x_test), mean, rtol=1e-5, atol=1e-6)
    record = study.records()["ensemble-3"]
    assert record["trials"] == study.kept_best_first() and record["kind"] == "ensemble-3"
    loss, accuracy = evaluate(load_model(exported), data.x_test, data.y_test)
    assert record["test_accuracy"] == pytest.approx(accuracy) and record["n_test"] == len(data.y_test)
    assert record["validation_accuracy"] == pytest.approx(evaluate(load_model(exported), data.x_val, data.y_val)[1])


def test_the_exported_ensemble_loads_in_plain_keras_and_predicts_the_same(study, data, tmp_path):
    exported = tmp_path / "ensemble.keras"
    study.export(exported, "--ensemble", "2")
    expected = predict_proba(load_model(exported), data.x_test)
    members = _kept_models(study, study.kept_best_first()[:2], tmp_path)
    np.testing.assert_allclose(expected, np.mean([predict_proba(m, data.x_test) for m in members], axis=0),
                               rtol=1e-5, atol=1e-6)
    loaded = _plain_keras(tmp_path / "plain", data.x_test, exported)[str(exported)]
    assert "error" not in loaded, loaded
    np.testing.assert_allclose(loaded["predictions"], expected, rtol=1e-5, atol=1e-6)


def test_retrain_records_its_test_accuracy_beside_the_saved_models(study, data, tmp_path):
    single, retrained = tmp_path / "single.keras", tmp_path / "retrained.keras"
    study.export(single)
    result = study.cli("export-model", study.name, "-o", str(retrained), "--retrain")
    assert result.returncode == 0, result.stderr
    assert "(retrained on train + validation)" in result.stdout and "no validation accuracy" in result.stdout
    records = study.records()
    assert {"single", "retrained"} <= set(records)
    best = study.kept_best_first()[0]
    assert records["single"]["trials"] == records["retrained"]["trials"] == [best]
    assert records["single"]["model"] == "saved" and records["retrained"]["model"] == "retrained on train + validation"
    assert not np.allclose(predict_proba(load_model(single), data.x_test),
                           predict_proba(load_model(retrained), data.x_test))  # trained again, not copied
    assert records["retrained"]["test_accuracy"] == pytest.approx(
        evaluate(load_model(retrained), data.x_test, data.y_test)[1])
    assert records["retrained"]["validation_accuracy"] is None  # it trained on the validation split
    assert "no held-out validation score" in records["retrained"]["validation_note"]
    assert records["single"]["validation_accuracy"] == pytest.approx(
        evaluate(load_model(single), data.x_val, data.y_val)[1])

    both = tmp_path / "both.keras"
    study.export(both, "--ensemble", "2", "--retrain")  # each of the 2 best configs retrained, then averaged
    record = study.records()["retrained-ensemble-2"]
    assert record["trials"] == study.best_first()[:2]
    assert record["validation_accuracy"] is None and len(load_model(both).layers) == 4  # input, 2 members, mean
    assert {"single", "retrained", "retrained-ensemble-2"} <= set(study.records())


def test_best_and_show_name_the_final_model_best_on_validation(study, data, tmp_path):
    study.export(tmp_path / "single.keras")
    study.export(tmp_path / "ensemble.keras", "--ensemble", "3")
    records = study.records()
    scored = {kind: r["validation_accuracy"] for kind, r in records.items() if r["validation_accuracy"] is not None}
    assert {"single", "ensemble-3"} <= set(scored)
    for kind, path in (("single", "single.keras"), ("ensemble-3", "ensemble.keras")):
        assert scored[kind] == pytest.approx(evaluate(load_model(tmp_path / path), data.x_val, data.y_val)[1])
    expected = max(scored, key=scored.get)

    shown = study.cli("show", study.name, "--json")
    assert shown.returncode == 0, shown.stderr
    final = json.loads(shown.stdout)["final_models"]
    assert final["best_on_validation"] == expected
    assert {k: r["test_accuracy"] for k, r in final["records"].items()} == \
        {k: r["test_accuracy"] for k, r in records.items()}
    best = study.cli("best", study.name, "--json")
    assert best.returncode == 0, best.stderr
    result = json.loads(best.stdout)
    assert result["number"] == study.kept_best_first()[0] and result["final_models"] == final
    for command in ("show", "best"):
        table = study.cli(command, study.name)
        assert table.returncode == 0, table.stderr
        assert f"final models ({expected} is best on validation" in table.stdout
        row = next(line for line in table.stdout.splitlines() if line.strip().startswith(f"{expected} *"))
        assert f"{scored[expected]:.4f}" in row and f"{records[expected]['test_accuracy']:.4f}" in row


def _snapshot(study: optuna.Study) -> tuple:
    return study.user_attrs, [(t.number, t.state, t.values, t.user_attrs) for t in study.get_trials()]


@pytest.mark.parametrize("options, message", [
    (["--ensemble", "4"], r"--ensemble 4: study 'final' keeps the saved models of 3 completed feasible trials "
                          r"\(study\.save_models = 3\), fewer than 4; ask for --ensemble 3, or raise save_models "
                          r"to 4 or more .* or add --retrain"),
    (["--ensemble", "5", "--retrain"], r"--ensemble 5 --retrain: study 'final' has 4 completed feasible trials, "
                                       r"fewer than 5; ask for --ensemble 4, or run more trials first"),
    (["--ensemble", "1"], r"invalid value for '--ensemble'.*2"),
    (["--ensemble", "2", "--artifacts", "{tmp}/elsewhere"], r"the saved model of trial \d+ is not in the artifact "
                                                            r"store .*elsewhere; name the folder .* --artifacts"),
])
def test_an_ensemble_larger_than_what_is_kept_is_one_error_line(study, tmp_path, options, message):
    before = _snapshot(study.load())
    target = tmp_path / "model.keras"
    options = [o.format(tmp=tmp_path) for o in options]
    result = study.cli("export-model", study.name, "-o", str(target), *options)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(message, lines[0]), lines
    assert result.stdout == "" and not target.exists()
    assert _snapshot(study.load()) == before


@pytest.mark.parametrize("model, kind", [("saved", "single"), ("retrained on train + validation", "retrained")])
def test_an_older_studys_one_record_still_reads(tmp_path, model, kind):
    db = f"sqlite:///{tmp_path / 'old.db'}"
    old = optuna.create_study(study_name="old", storage=db, direction="maximize")
    old.add_trial(optuna.trial.create_trial(value=0.9))
    old.set_user_attr("test_accuracy", {"trial": 0, "test_accuracy": 0.875, "test_loss": 0.4, "model": model,
                                        "n_test": 8, "exported_to": "/m.keras", "at": "2025-01-01T00:00:00+00:00"})
    shown = run_cli("show", "old", "--storage", db, "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    final = json.loads(shown.stdout)["final_models"]
    assert list(final["records"]) == [kind] and final["records"][kind]["test_accuracy"] == 0.875
    assert final["records"][kind]["trials"] == [0] and final["best_on_validation"] is None  # none was recorded
    table = run_cli("best", "old", "--storage", db, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "final models (none has a validation score" in table.stdout and "0.8750" in table.stdout
