"""A database written by digitune 0.1.0 (tests/fixtures/old-db) opens, lists, exports and continues as before.

The goldens in tests/fixtures/golden/ are what the CLI printed on that database before issue 18's
move (the commands' text, ``--json`` and ``--help``). ``DIGITUNE_UPDATE_GOLDENS=1`` rewrites them;
only do that for a change of output that is meant, and say so in the commit.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import optuna
import pytest
from conftest import REPO, run_cli

FIXTURE = REPO / "tests" / "fixtures" / "old-db"
GOLDEN = REPO / "tests" / "fixtures" / "golden"
UPDATE = os.environ.get("DIGITUNE_UPDATE_GOLDENS") == "1"
STUDIES = ("alpha", "beta", "broken", "late", "front", "queued", "waiting")
COMMANDS = ("run", "worker", "predict", "studies", "show", "best", "export", "delete", "doctor", "export-model",
            "dashboard", "storage-proxy", "submit", "queue", "stop", "resume", "agent", "agent-process")
# The same terminal for every golden: wide, no colour, no rich markup.
TERMINAL = {"COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1"}
# Fields that depend on when the command runs, not on the database.
_AGES = re.compile(r'("(?:seconds_used|heartbeat_age|age_seconds|last_seen_seconds)": )[0-9.e+-]+')

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def old(tmp_path_factory) -> Path:
    """A copy of the fixture (the committed one never changes), with its database URL."""
    folder = tmp_path_factory.mktemp("old") / "old-db"
    shutil.copytree(FIXTURE, folder)
    return folder


def _url(folder: Path) -> str:
    return f"sqlite:///{folder / 'studies.db'}"


def _matches(name: str, text: str) -> None:
    """TEXT equals the golden NAME (or becomes it, with DIGITUNE_UPDATE_GOLDENS=1)."""
    text = _AGES.sub(r"\g<1>0", text)
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden {path}; make it with DIGITUNE_UPDATE_GOLDENS=1 from the code before a move"
    assert text == path.read_text(encoding="utf-8"), f"output of {name} changed"


def _cli(folder: Path, *args: str) -> str:
    """What ``digitune ARGS`` prints in FOLDER, with FOLDER itself written as ``<folder>``."""
    result = run_cli(*args, cwd=folder, env=TERMINAL)
    assert result.returncode == 0, result.stderr
    return result.stdout.replace(str(folder), "<folder>")


def test_every_commands_help_is_unchanged(tmp_path):
    _matches("help/digitune.txt", _cli(tmp_path, "--help"))
    for command in COMMANDS:
        _matches(f"help/{command}.txt", _cli(tmp_path, command, "--help"))


def test_the_old_database_lists_shows_and_exports_as_before(old):
    url = _url(old)
    _matches("studies.txt", _cli(old, "studies", "--storage", url))
    _matches("studies.json", _cli(old, "studies", "--storage", url, "--json"))
    for study in STUDIES:
        for command in ("show", "best"):
            _matches(f"{command}/{study}.txt", _cli(old, command, study, "--storage", url))
            _matches(f"{command}/{study}.json", _cli(old, command, study, "--storage", url, "--json"))
        for fmt in ("json", "csv"):
            _matches(f"export/{study}.{fmt}", _cli(old, "export", study, "--format", fmt, "--storage", url))
    _matches("queue.json", _cli(old, "queue", "--storage", url, "--json"))


def test_the_old_database_holds_every_kind_of_trial(old):
    """The fixture is worth its bytes only if it holds what the goldens are meant to guard."""
    storage = optuna.storages.RDBStorage(_url(old), skip_table_creation=True)
    trials = {s.study_name: optuna.load_study(study_name=s.study_name, storage=storage).trials
              for s in optuna.get_all_study_summaries(storage) if s.study_name in STUDIES}
    states = {t.state.name for ts in trials.values() for t in ts}
    assert {"COMPLETE", "PRUNED", "FAIL"} <= states, states
    alpha = trials["alpha"]
    assert any(t.user_attrs.get("baseline") for t in alpha) and any(t.user_attrs.get("start") for t in alpha)
    violations = [v for t in alpha for k, v in t.system_attrs.items() if k.startswith("constraints")]
    assert any(v > 0 for v in violations) and any(v <= 0 for v in violations), violations
    assert any(t.user_attrs.get("warm_start") for t in trials["beta"])
    assert all(t.user_attrs.get("fail_reason") for t in trials["broken"] if t.state.name == "FAIL")
    assert any(t.user_attrs.get("stopped_at_deadline") for t in trials["late"])
    assert not trials["waiting"]
    storage.engine.dispose()


def test_the_old_database_continues_its_studies_and_exports_their_models(tmp_path):
    folder = tmp_path / "old-db"
    shutil.copytree(FIXTURE, folder)
    url = _url(folder)
    run = run_cli("run", "alpha.toml", "--trials", "14", "--workers", "1", "--storage", url, cwd=folder)
    assert run.returncode == 0, run.stderr
    assert "study 'alpha': 14 finished trials (2 run here, 0 failed)" in run.stderr
    exported = run_cli("export-model", "alpha", "--storage", url, "-o", "final.keras", cwd=folder)
    assert exported.returncode == 0 and (folder / "final.keras").stat().st_size > 0, exported.stderr
    agent = run_cli("agent", "--storage", url, "--workers", "1", "--until-idle", "--poll", "0.5", cwd=folder)
    assert agent.returncode == 0, agent.stderr
    assert "3 trials run on waiting" in agent.stderr
    storage = optuna.storages.RDBStorage(url, skip_table_creation=True)
    waiting = optuna.load_study(study_name="waiting", storage=storage)
    assert len(waiting.trials) == 3 and all(t.state.name == "COMPLETE" for t in waiting.trials)
    storage.engine.dispose()
