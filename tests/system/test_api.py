"""``import digitune``: the notebook user's API, on a real tiny study."""

from __future__ import annotations

import subprocess
import sys

import pytest

import digitune
from conftest import write_study

pytestmark = pytest.mark.slow


def test_importing_digitune_loads_nothing_heavy():
    code = ("import sys, digitune\n"
            "heavy = [m for m in ('keras', 'tensorflow', 'optuna', 'sklearn', 'streamlit') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "assert callable(digitune.run) and 'optuna' in sys.modules\n")
    result = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_run_read_and_export_a_study_from_python(tmp_path):
    path = write_study(tmp_path, "notebook", trials=3, family='"mlp"', pruner="none")
    url = f"sqlite:///{tmp_path / 'nb.db'}"
    summary = digitune.run(path, storage=url)
    assert summary.finished == 3 and summary.failed == 0
    more = digitune.run(digitune.load_spec(path), storage=url, trials=4)  # a spec continues the same study
    assert more.finished == 4 and more.ran == 1

    records = digitune.trials("notebook", storage=url)
    assert [r["number"] for r in records] == [0, 1, 2, 3] and {r["state"] for r in records} == {"complete"}
    frame = digitune.trials_frame("notebook", storage=url)
    assert list(frame.index) == [0, 1, 2, 3] and frame["value"].between(0, 1).all()
    assert digitune.load_study("notebook", storage=url).best_value == frame["value"].max()

    result = digitune.export_model("notebook", tmp_path / "best.keras", storage=url)
    assert (tmp_path / "best.keras").stat().st_size > 0 and 0 <= result.test_accuracy <= 1


def test_a_dict_spec_and_a_dataset_override(tmp_path):
    spec = digitune.load_spec(write_study(tmp_path, "as_dict", trials=2, family='"mlp"', pruner="none"))
    tables = spec.to_dict()
    summary = digitune.run(tables, storage=f"sqlite:///{tmp_path / 'd.db'}", dataset="digits")
    assert summary.finished == 2
    with pytest.raises(digitune.DataError, match=r"no-such-source: no such file or folder"):
        digitune.run(tables, storage=f"sqlite:///{tmp_path / 'd.db'}", dataset="no-such-source")


def test_reading_a_missing_database_creates_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'absent.db'}"
    with pytest.raises(digitune.StorageError):
        digitune.trials("anything", storage=url)
    with pytest.raises(digitune.StorageError):
        digitune.load_study("anything", storage=url)
    assert not list(tmp_path.iterdir())
    with pytest.raises(digitune.SpecError, match="takes a study file's path"):
        digitune.run(42)
