"""Every kind of bad input: one clear line, exit code 2, and nothing stored lost or changed.

docs/bad-input.md lists these rows; keep the two in step.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import optuna
import pytest
from typer.testing import CliRunner

from conftest import write_study
from search.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A study with a few trials in a SQLite file, made once."""
    folder = tmp_path_factory.mktemp("bad")
    path = write_study(folder, "kept", trials=2, family='"mlp"')
    db = folder / "kept.db"
    result = runner.invoke(app, ["run", str(path), "--storage", f"sqlite:///{db}"])
    assert result.exit_code == 0, result.output
    return folder, db


def _snapshot(db: Path) -> str:
    """Everything a user would miss: studies, their attributes, and every trial's state, params, values, attrs."""
    storage = f"sqlite:///{db}"
    dump = []
    for name in sorted(optuna.get_all_study_names(storage=storage)):
        study = optuna.load_study(study_name=name, storage=storage)
        dump.append([name, study.user_attrs, [
            [t.number, t.state.name, t.params, t.values, t.user_attrs, t.intermediate_values] for t in study.trials]])
    return hashlib.sha256(json.dumps(dump, sort_keys=True, default=str).encode()).hexdigest()


def _study_text(folder: Path) -> str:
    return (folder / "kept.toml").read_text()


def _file(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


def _npz(folder: Path, name: str, **arrays) -> str:
    path = folder / name
    np.savez(path, **arrays)
    return str(path)


rng = np.random.default_rng(0)
GOOD_X = rng.integers(0, 255, size=(60, 8, 8), dtype=np.uint8)
GOOD_Y = np.repeat(np.arange(10), 6)

# (id, a function (folder) -> CLI args, the message the one line must match)
CASES = [
    ("malformed TOML", lambda f: ["run", _file(f, "m.toml", "[study\nname = 'x'")], r"m\.toml: not valid TOML"),
    ("unknown key", lambda f: ["run", _file(f, "u.toml", "[study]\nname = 'x'\ntrails = 3")],
     r"u\.toml: unknown key \[study\] 'trails'"),
    ("low > high", lambda f: ["run", _file(f, "l.toml", "[study]\nname = 'x'\n[space.mlp]\nunits = {low = 9, high = 2}")],
     r"l\.toml: space\.mlp\.units: `low <= high` must hold, but got \(low=9, high=2\)"),
    ("empty choices", lambda f: ["run", _file(f, "e.toml", "[study]\nname = 'x'\n[space]\nbatch_size = []")],
     r"e\.toml: space\.batch_size is an empty list of choices"),
    ("unknown sampler", lambda f: ["run", str(f / "kept.toml"), "--sampler", "bayes"],
     r"study\.sampler must be one of tpe, random, grid, qmc, cmaes, gp, nsga2, got 'bayes'"),
    ("unknown start", lambda f: ["run", str(f / "kept.toml"), "--start", "best"],
     r"study\.start must be one of defaults, sampler, got 'best'"),
    ("unknown pruner", lambda f: ["run", _file(f, "p.toml", "[study]\nname = 'x'\npruner = 'asha'")],
     r"p\.toml: study\.pruner must be one of"),
    ("a CNN that cannot fit the image", lambda f: ["run", _file(
        f, "c.toml", "[study]\nname = 'x'\n[space]\nfamily = 'cnn'\n[space.cnn]\nblocks = 4\nkernel_size = 5\n"
                     "padding = 'valid'")], r"c\.toml: \[space\.cnn\] cannot fit 8x8 images"),
    ("a missing dataset", lambda f: ["run", str(f / "kept.toml"), "--dataset", str(f / "no-such-data")],
     r"no-such-data"),
    ("a corrupt dataset", lambda f: ["run", str(f / "kept.toml"), "--dataset", _file(f, "junk.npz", "not a zip")],
     r"junk\.npz"),
    ("images of mixed sizes", lambda f: ["run", str(f / "kept.toml"), "--dataset", _npz(
        f, "ragged.npz", x_train=GOOD_X, y_train=GOOD_Y, x_test=np.zeros((10, 9, 9), np.uint8),
        y_test=np.arange(10))], r"ragged\.npz"),
    ("labels outside 0-9", lambda f: ["run", str(f / "kept.toml"), "--dataset", _npz(
        f, "labels.npz", x_train=GOOD_X, y_train=np.where(GOOD_Y == 3, 12, GOOD_Y))], r"labels\.npz.*12"),
    ("an unreachable storage", lambda f: ["studies", "--storage", "postgresql+psycopg://u:hunter2@127.0.0.1:1/x"],
     r"cannot open storage postgresql\+psycopg://u:\*\*\*@127\.0\.0\.1:1/x"),
    ("a study name that does not exist", lambda f: ["show", "nosuch"], r"no study named 'nosuch' in this storage"),
    ("a study file that disagrees with the stored study", lambda f: ["run", _file(
        f, "kept2.toml", _study_text(f).replace('sampler = "tpe"', 'sampler = "random"'))],
     r"kept2\.toml disagrees with the stored study 'kept' on sampler"),
]


@pytest.mark.parametrize(("case", "args", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(stored, monkeypatch, case, args, message):
    folder, db = stored
    monkeypatch.chdir(folder)
    monkeypatch.setenv("DIGITUNE_STORAGE", f"sqlite:///{db}")
    before = _snapshot(db)
    result = runner.invoke(app, args(folder))
    assert result.exit_code == 2, (case, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (case, result.stderr)
    assert re.search(message, lines[0]), (case, lines[0])
    assert "Traceback" not in result.output and "hunter2" not in result.output
    assert _snapshot(db) == before, f"{case}: the stored studies changed"


def test_the_table_lists_every_case():
    table = (Path(__file__).resolve().parent.parent / "docs" / "bad-input.md").read_text()
    for case, _, _ in CASES:
        assert f"| {case} |" in table, case
