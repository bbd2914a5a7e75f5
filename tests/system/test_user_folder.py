"""digitune in a folder full of the user's own modules: no process it starts imports them.

Each decoy exits 97 when imported. Before the ``digitune`` import root, workers started as
``python -m search.cli`` imported the user's ``models.py`` and the run lost its second worker.
"""

from __future__ import annotations

import optuna
import pytest

from conftest import run_cli, write_study

DECOYS = ("models", "search", "dashboard", "digitune", "optuna", "keras", "streamlit")

pytestmark = pytest.mark.slow


@pytest.fixture
def user_folder(tmp_path):
    for name in DECOYS:
        (tmp_path / f"{name}.py").write_text("raise SystemExit(97)  # the user's own module, not digitune's\n")
    return tmp_path


def _worker_pids(url: str, name: str) -> set[str]:
    storage = optuna.storages.RDBStorage(url, skip_table_creation=True)
    try:
        trials = optuna.load_study(study_name=name, storage=storage).trials
        assert trials and all(t.state.name == "COMPLETE" for t in trials), [t.state for t in trials]
        return {t.user_attrs["worker"] for t in trials}
    finally:
        storage.engine.dispose()


def test_run_with_two_workers_beside_the_users_own_modules(user_folder):
    path = write_study(user_folder, "mine", trials=20, family='"mlp"', pruner="none")
    url = f"sqlite:///{user_folder / 'mine.db'}"
    result = run_cli("run", str(path), "--storage", url, "--workers", "2", cwd=user_folder)
    assert result.returncode == 0, result.stderr
    assert "1 more worker(s), exit codes [0]" in result.stderr  # a decoy imported would exit 97
    assert len(_worker_pids(url, "mine")) >= 1


def test_an_agent_with_two_workers_beside_the_users_own_modules(user_folder):
    path = write_study(user_folder, "theirs", trials=20, family='"mlp"', pruner="none")
    url = f"sqlite:///{user_folder / 'queue.db'}"
    assert run_cli("submit", str(path), "--storage", url, cwd=user_folder).returncode == 0
    result = run_cli("agent", "--storage", url, "--workers", "2", "--until-idle", "--poll", "0.5", cwd=user_folder)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("agent done: ") == 2, result.stderr  # both agent processes ran to the end
    assert len(_worker_pids(url, "theirs")) >= 1


def test_python_dash_m_digitune_is_the_command(user_folder):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-P", "-m", "digitune", "--help"], cwd=user_folder,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Hyperparameter search for Keras digit classifiers" in result.stdout
