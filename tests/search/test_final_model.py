"""Saved models, export-model and predict, on data in every supported layout."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from conftest import run_cli, write_study
from digitune.search.cli import app
from _datafiles import make_identify, make_idx_dir, make_kaggle_dir, make_npz

runner = CliRunner()


def _study_on(tmp_path: Path, source: Path, *, save_models: int = 3, trials: int = 3) -> tuple[str, str]:
    """Run a tiny MLP study on ``source`` through the CLI (in process); returns (name, storage URL)."""
    path = write_study(tmp_path, "layout", trials=trials, family='"mlp"', pruner="none")
    text = path.read_text().replace('source = "digits"\nlimit = 300', f'source = "{source}"')
    text = text.replace("seed = 7\n", f"seed = 7\nsave_models = {save_models}\n", 1)
    path.write_text(text)
    db = f"sqlite:///{tmp_path / 'studies.db'}"
    result = runner.invoke(app, ["run", str(path), "--storage", db])
    assert result.exit_code == 0, result.output
    return "layout", db


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


LAYOUTS = {
    # name: (make the data, where to predict from, expected header, expected rows)
    "idx": (lambda root: make_idx_dir(root / "idx"), lambda root: root / "idx", ["ImageId", "Label"], 30),
    "npz": (lambda root: make_npz(root / "data.npz"), lambda root: root / "data.npz", ["ImageId", "Label"], 30),
    "identify": (lambda root: make_identify(root / "identify"), lambda root: root / "identify",
                 ["filename", "label"], 10),
    "kaggle": (lambda root: make_kaggle_dir(root / "kaggle"), lambda root: root / "kaggle" / "test.csv",
               ["ImageId", "Label"], 20),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_export_model_and_predict_on_each_layout(tmp_path, layout):
    make, predict_from, header, rows = LAYOUTS[layout]
    source = make(tmp_path)
    name, db = _study_on(tmp_path, source)

    model_path = tmp_path / "out" / "model.keras"
    result = runner.invoke(app, ["export-model", name, "-o", str(model_path), "--storage", db])
    assert result.exit_code == 0, result.output
    assert model_path.is_file()
    assert re.search(r"exported trial \d+ \(saved\) to .*model\.keras; held-out test accuracy 0\.\d{4}", result.output)
    study = optuna.load_study(study_name=name, storage=db)
    recorded = study.user_attrs["test_accuracy"]["single"]  # one record per kind of final model
    assert recorded["trial"] == study.best_trial.number and 0 <= recorded["test_accuracy"] <= 1
    assert recorded["model"] == "saved"

    submission = tmp_path / "submission.csv"
    result = runner.invoke(app, ["predict", name, "--data", str(predict_from(tmp_path)), "-o", str(submission),
                                 "--storage", db])
    assert result.exit_code == 0, result.output
    table = _rows(submission)
    assert table[0] == header
    assert len(table) == rows + 1
    assert all(0 <= int(label) <= 9 for _, label in table[1:])
    if header[0] == "ImageId":
        assert [int(r[0]) for r in table[1:]] == list(range(1, rows + 1))
    else:
        expected = [line.strip() for line in (predict_from(tmp_path) / "test.csv").read_text().splitlines()[1:]]
        assert [r[0] for r in table[1:]] == expected

    # The exported file predicts the same labels.
    again = tmp_path / "again.csv"
    result = runner.invoke(app, ["predict", name, "--data", str(predict_from(tmp_path)), "-o", str(again),
                                 "--model", str(model_path), "--storage", db])
    assert result.exit_code == 0, result.output
    assert _rows(again) == table


def test_best_models_are_kept_as_artifacts_with_class_reports(tmp_path, small_digits):
    source = make_npz(tmp_path / "data.npz")
    name, db = _study_on(tmp_path, source, save_models=2, trials=5)
    study = optuna.load_study(study_name=name, storage=db)
    saved = study.user_attrs["saved_models"]
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 5 and len(saved) == 2
    top2 = sorted(complete, key=lambda t: t.value, reverse=True)[:2]
    assert {t.value for t in top2} == {study.trials[int(n)].value for n in saved}
    folder = tmp_path / "studies-artifacts"  # beside the SQLite file
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == sorted(saved.values())
    assert (folder / ".digitune-storages").read_text() == f"sqlite:///{(tmp_path / 'studies.db').resolve()}\n"
    for number, artifact_id in saved.items():
        metas = optuna.artifacts.get_all_artifact_meta(study.trials[int(number)], storage=study._storage)
        assert [m.artifact_id for m in metas] == [artifact_id] and metas[0].filename.endswith(".keras")
    for trial in complete:
        matrix = trial.user_attrs["confusion_matrix"]
        assert len(matrix) == 10 and sum(map(sum, matrix)) == 18  # 30 % of the 60 training images
        per_class = trial.user_attrs["per_class_accuracy"]
        assert all(0 <= v <= 1 for v in per_class)


def test_export_retrains_when_no_model_was_kept(tmp_path):
    source = make_npz(tmp_path / "data.npz")
    name, db = _study_on(tmp_path, source, save_models=0, trials=1)
    model_path = tmp_path / "model.keras"
    result = run_cli("export-model", name, "-o", str(model_path), "--storage", db, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "(retrained on train + validation)" in result.stdout and model_path.is_file()
    study = optuna.load_study(study_name=name, storage=db)
    assert study.user_attrs["test_accuracy"]["retrained"]["model"] == "retrained on train + validation"


def test_prediction_errors_are_one_line(tmp_path):
    source = make_npz(tmp_path / "data.npz")
    name, db = _study_on(tmp_path, source, trials=1)
    cases = [
        (["predict", name, "--data", str(tmp_path / "nothing"), "-o", str(tmp_path / "s.csv")], r"nothing"),
        (["predict", name, "--data", str(source), "-o", str(tmp_path / "s.csv"), "--model", str(source)],
         r"data\.npz: not a loadable Keras 3 model"),
        (["export-model", name, "-o", str(tmp_path / "model.h5")], r"model\.h5: a model file must end in \.keras"),
        (["export-model", "nosuch", "-o", str(tmp_path / "m.keras")], r"no study named 'nosuch'"),
    ]
    for args, message in cases:
        result = runner.invoke(app, [*args, "--storage", db])
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and re.search(message, lines[0]), lines


def test_predict_refuses_images_of_another_size(tmp_path):
    name, db = _study_on(tmp_path, make_npz(tmp_path / "data.npz"))  # 10x10 images
    from PIL import Image
    import numpy as np

    (tmp_path / "big").mkdir()
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(tmp_path / "big" / "a.png")
    result = runner.invoke(app, ["predict", name, "--data", str(tmp_path / "big"), "-o", str(tmp_path / "s.csv"),
                                 "--storage", db])
    assert result.exit_code == 2
    assert "images are 28x28 but the model was trained on 10x10 images" in result.stderr


def test_delete_removes_saved_models(tmp_path):
    name, db = _study_on(tmp_path, make_npz(tmp_path / "data.npz"), trials=2)
    folder = tmp_path / "studies-artifacts"
    assert any(p for p in folder.iterdir() if not p.name.startswith("."))
    result = runner.invoke(app, ["delete", name, "--yes", "--storage", db])
    assert result.exit_code == 0, result.output
    assert [p.name for p in folder.iterdir()] == [".digitune-storages"]
    assert optuna.get_all_study_names(storage=db) == []
