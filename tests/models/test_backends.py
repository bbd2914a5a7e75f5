"""The same study on another Keras backend than TensorFlow (PyTorch, which CI installs)."""

from __future__ import annotations

import importlib.util

import optuna
import pytest

from conftest import run_cli, write_study
from digitune.search import FINISHED

pytestmark = pytest.mark.slow


@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="PyTorch is not installed (.ci/run installs its CPU build)")
def test_a_short_study_on_the_torch_backend(tmp_path):
    path = write_study(tmp_path, "torchy", trials=4)
    db = f"sqlite:///{tmp_path / 't.db'}"
    result = run_cli("run", str(path), "--storage", db, cwd=tmp_path, env={"KERAS_BACKEND": "torch"})
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="torchy", storage=db)
    trials = study.get_trials(states=FINISHED)
    assert len(trials) == 4 and {t.user_attrs["family"] for t in trials} == {"mlp", "cnn"}
    assert {t.user_attrs["keras_backend"] for t in trials} == {"torch"}
    assert study.user_attrs["manifest"]["keras_backend"] == "torch"
    assert "torch" in study.user_attrs["manifest"]["packages"]
    # A model saved on one backend loads on another: export on TensorFlow what torch trained.
    exported = run_cli("export-model", "torchy", "-o", str(tmp_path / "m.keras"), "--storage", db, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
