"""One SQLite file reached by two paths (a symlink): one claim lock, one artifact folder, one study.

Two ``digitune run``s of one study at the same time, one through ``c2.db`` and one through
``link2.db`` (a symbolic link to it), must share the claim lock beside the real file (so the
study is created once, its known-good start queued once) and keep models in one folder.
"""

from __future__ import annotations

import os
import subprocess

import optuna
import pytest
from optuna.trial import TrialState

from conftest import digitune_exe, write_study
from digitune.search import FINISHED

pytestmark = pytest.mark.slow


def test_two_runs_through_a_symlink_share_the_lock_and_the_artifacts(tmp_path):
    folder = tmp_path / "x"
    folder.mkdir()
    study_file = write_study(tmp_path, "linked", trials=3, family='"mlp"')
    real, link = folder / "c2.db", folder / "link2.db"
    link.symlink_to(real)  # dangling until the first run creates the file
    env = {k: v for k, v in os.environ.items() if k != "DIGITUNE_STORAGE"}
    procs = [subprocess.Popen([digitune_exe(), "run", str(study_file), "--storage", f"sqlite:///{path}"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for path in (real, link)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
        assert "Traceback" not in err, err

    locks = sorted(p.name for p in folder.iterdir() if p.name.endswith(".lock"))
    assert len(locks) == 1 and locks[0].startswith("c2.db.digitune-"), locks
    folders = sorted(p.name for p in folder.iterdir() if p.is_dir())
    assert folders == ["c2-artifacts"], folders
    trials = optuna.load_study(study_name="linked", storage=f"sqlite:///{real}").get_trials(deepcopy=False)
    starts = [t for t in trials if t.user_attrs.get("start") == "defaults"]
    assert len(starts) == 1, [t.user_attrs for t in trials]  # one family: one known-good model, queued once
    assert sum(t.state in FINISHED for t in trials) == 3
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
