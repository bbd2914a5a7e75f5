"""Commands that only read never create or change a database, and read studies plain Optuna made.

Through the CLI: a mistyped SQLite path is an error line (no file appears), a file that is
not an Optuna database is refused and left byte for byte, an empty PostgreSQL database gets
no tables; a study with user attributes digitune did not write is listed and shown.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import optuna
import pytest
import sqlalchemy

from conftest import REPO, run_cli

READERS = [("studies",), ("show", "tiny"), ("best", "tiny"), ("export", "tiny", "--format", "json"), ("queue",),
           ("predict", "tiny", "--data", "x.png", "-o", "out.csv")]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_error_line(result) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("command", READERS, ids=lambda c: c[0])
def test_missing_sqlite_file_is_an_error_not_a_new_database(tmp_path, command):
    line = _one_error_line(run_cli(*command, "--storage", "sqlite:///typo.db", cwd=tmp_path))
    assert "does not exist" in line and "typo.db" in line
    assert not (tmp_path / "typo.db").exists()


@pytest.mark.parametrize("command", READERS, ids=lambda c: c[0])
def test_a_sqlite_file_that_is_not_a_study_database_is_left_as_it_was(tmp_path, command):
    own = tmp_path / "mine.db"
    with sqlite3.connect(own) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    before = _digest(own), _digest(text)
    assert "without Optuna's tables" in _one_error_line(run_cli(*command, "--storage", f"sqlite:///{own}",
                                                                cwd=tmp_path))
    assert "not a SQLite database" in _one_error_line(run_cli(*command, "--storage", f"sqlite:///{text}",
                                                              cwd=tmp_path))
    assert (_digest(own), _digest(text)) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.db", "notes.txt"]


def test_an_optuna_database_without_its_version_row_is_not_written(tmp_path):
    """A database caught between its tables and its version row (another process creating it): left alone."""
    path = tmp_path / "half.db"
    optuna.create_study(study_name="tiny", storage=f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM version_info")
    before = _digest(path)
    assert "still being created" in _one_error_line(run_cli("studies", "--storage", f"sqlite:///{path}",
                                                            cwd=tmp_path))
    assert _digest(path) == before


def test_doctor_reports_but_creates_nothing(tmp_path):
    own = tmp_path / "mine.db"
    with sqlite3.connect(own) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    before = _digest(own)
    result = run_cli("doctor", "--storage", f"sqlite:///{own}", cwd=tmp_path)
    assert "without Optuna's tables" in result.stdout and "Traceback" not in result.stderr
    assert _digest(own) == before
    result = run_cli("doctor", "--storage", "sqlite:///typo.db", cwd=tmp_path)
    assert "no database yet" in result.stdout and not (tmp_path / "typo.db").exists()


@pytest.mark.slow
def test_an_empty_postgres_database_gets_no_tables(postgres_url, tmp_path):
    for command in READERS:
        line = _one_error_line(run_cli(*command, "--storage", postgres_url, cwd=tmp_path))
        assert "holds no Optuna tables yet" in line
    engine = sqlalchemy.create_engine(postgres_url)
    try:
        assert sqlalchemy.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


@pytest.fixture
def plain_optuna_db(tmp_path) -> str:
    """A study made by plain Optuna whose user attributes collide with digitune's names."""
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    study = optuna.create_study(study_name="tiny", storage=url, direction="maximize")
    study.set_user_attr("dataset", "mnist")
    study.set_user_attr("digitune_spec", "not ours")

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("curves", "loss went down")
        return trial.suggest_float("x", 0, 1)

    study.optimize(objective, n_trials=3)
    return url


def test_plain_optuna_study_is_listed_and_shown(plain_optuna_db, tmp_path):
    path = Path(plain_optuna_db.removeprefix("sqlite:///"))
    before = _digest(path)
    listed = run_cli("studies", "--storage", plain_optuna_db, cwd=tmp_path)
    assert listed.returncode == 0 and "tiny" in listed.stdout, listed.stderr
    for command in (("show", "tiny"), ("best", "tiny"), ("export", "tiny", "--format", "csv")):
        result = run_cli(*command, "--storage", plain_optuna_db, cwd=tmp_path)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    predicted = run_cli("predict", "tiny", "--data", "x.png", "-o", "out.csv", "--storage", plain_optuna_db,
                        cwd=tmp_path)
    assert "not created by digitune" in _one_error_line(predicted)
    assert _digest(path) == before


def test_plain_optuna_study_in_the_dashboard(plain_optuna_db, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("DIGITUNE_STORAGE", plain_optuna_db)
    app = str(REPO / "dashboard" / "app.py")
    for query in ({}, {"page": "Study", "study": "tiny"}, {"page": "Trial", "study": "tiny"},
                  {"page": "Compare"}):
        at = AppTest.from_file(app, default_timeout=60)
        at.query_params.update(query)
        at.run(timeout=60)
        assert not at.exception, (query, at.exception)
