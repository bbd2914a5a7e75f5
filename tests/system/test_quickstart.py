"""The README's study: studies/quickstart.toml as shipped, through the entry point."""

from __future__ import annotations


import optuna
import pytest

from conftest import REPO, run_cli
from digitune.search import FINISHED

pytestmark = pytest.mark.slow
QUICKSTART = REPO / "studies" / "quickstart.toml"


def test_quickstart_persists_ten_trials_of_both_families_with_curves(tmp_path):
    result = run_cli("run", str(QUICKSTART), cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr
    url = f"sqlite:///{tmp_path / 'studies' / 'digitune.db'}"  # the default storage
    study = optuna.load_study(study_name="quickstart", storage=url)
    finished = study.get_trials(states=FINISHED)
    assert len(finished) >= 10
    assert {t.user_attrs["family"] for t in finished} == {"mlp", "cnn"}
    for trial in finished:
        assert len(trial.user_attrs["curves"]["val_accuracy"]) == trial.user_attrs["epochs_run"] >= 1
    listing = run_cli("studies", "--storage", url, cwd=tmp_path)
    assert "quickstart" in listing.stdout
    shown = run_cli("show", "quickstart", "--storage", url, cwd=tmp_path)
    assert shown.returncode == 0 and "best: trial" in shown.stdout
