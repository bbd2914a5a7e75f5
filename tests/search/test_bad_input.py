"""Every kind of bad input: one clear line, exit code 2, and nothing stored lost or changed.

docs/bad-input.md lists these rows; keep the two in step.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import optuna
import pytest
from typer.testing import CliRunner

from conftest import REPO, digitune_exe, run_cli, write_study
from digitune.search.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A study with a few trials in a SQLite file, made once."""
    folder = tmp_path_factory.mktemp("bad")
    path = write_study(folder, "kept", trials=2, family='"mlp"')
    db = folder / "kept.db"
    result = runner.invoke(app, ["run", str(path), "--storage", f"sqlite:///{db}"])
    assert result.exit_code == 0, result.output
    # The run's pooled connections close when the collector reaches them; the last one to close
    # moves the write-ahead log into kept.db, which would change its bytes in the middle of a case.
    gc.collect()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0, "a connection of the fixture's run still holds kept.db"
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


def _own_db(folder: Path) -> Path:
    """A SQLite database of the user's own, with no Optuna tables."""
    path = folder / "mine.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS notes (body TEXT)")
    return path


def _spec(folder: Path, name: str, study: str = "", data: str = "", space: str = "") -> str:
    """A study file of one MLP trial on the tiny digits, with these lines added to its tables."""
    return _file(folder, name, f"[study]\nname = 'new'\ntrials = 1\n{study}\n[data]\nsource = 'digits'\n"
                               f"limit = 300\n{data}\n[space]\nfamily = 'mlp'\nepochs = 1\n{space}\n")


def _damaged(folder: Path) -> str:
    """A copy of the stored database whose table of trials is overwritten with garbage (the rest reads)."""
    import sqlite3

    path = folder / "damaged.db"
    path.unlink(missing_ok=True)
    with sqlite3.connect(folder / "kept.db") as kept, sqlite3.connect(path) as copy:
        kept.backup(copy)  # what the file and its write-ahead log hold, in one file
        page_size = copy.execute("PRAGMA page_size").fetchone()[0]
        root = copy.execute("SELECT rootpage FROM sqlite_master WHERE name = 'trials'").fetchone()[0]
    kept.close(), copy.close()
    data = bytearray(path.read_bytes())
    data[(root - 1) * page_size:root * page_size] = b"\xde\xad\xbe\xef" * (page_size // 4)
    path.write_bytes(data)
    return f"sqlite:///{folder / 'damaged.db'}"


def _gzip_bomb(folder: Path) -> str:
    """An IDX folder whose 60 8x8 images come gzipped with 64 MB of zeros after them (200 KB on disk)."""
    bomb = folder / "bomb"
    bomb.mkdir(exist_ok=True)
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [packer.compress(struct.pack(">4I", 2051, 60, 8, 8) + GOOD_X.tobytes())]
    parts += [packer.compress(bytes(1 << 20)) for _ in range(64)]
    (bomb / "train-images-idx3-ubyte.gz").write_bytes(b"".join(parts) + packer.flush())
    (bomb / "train-labels-idx1-ubyte").write_bytes(struct.pack(">2I", 2049, 60) + GOOD_Y.astype(np.uint8).tobytes())
    return str(bomb)


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
    # the command line's own mistakes: one line naming the fix, not click's usage and boxed panel
    ("a bad option value", lambda f: ["run", str(f / "kept.toml"), "--trials", "-5"],
     r"^error: invalid value for '--trials': .*greater than or equal to 1; see 'digitune run --help'$"),
    ("a bad option value", lambda f: ["show", "kept", "--top", "abc"],
     r"^error: invalid value for '--top': .*valid integer.*; see 'digitune show --help'$"),
    ("a bad option value", lambda f: ["export", "kept", "--format", "xml"],
     r"^error: invalid value for '--format' / '-f': .*'xml' is not one of 'csv', 'json'; see 'digitune export --help'$"),
    ("a missing argument", lambda f: ["run"], r"^error: missing argument 'study_file'; see 'digitune run --help'$"),
    ("a missing argument", lambda f: ["run", str(f / "kept.toml"), "--gpus"],
     r"^error: option '--gpus' requires an argument; see 'digitune run --help'$"),
    ("an unknown option", lambda f: ["run", str(f / "kept.toml"), "--bogus"],
     r"^error: no such option: --bogus.*; see 'digitune run --help'$"),
    ("an unknown command", lambda f: ["nosuch"], r"^error: no such command 'nosuch'; see 'digitune --help'$"),
    # numbers the libraries reject: refused in the study file, before a study is created
    ("a seed out of range", lambda f: ["run", _spec(f, "s.toml", study="seed = 4294967296")],
     r"s\.toml: study\.seed must be an integer from 0 to 4294967295, got 4294967296"),
    ("a seed out of range", lambda f: ["run", _spec(f, "s.toml", study="seed = -1")], r"study\.seed .* got -1"),
    ("a seed out of range", lambda f: ["run", _spec(f, "s.toml", data="seed = 4294967296")],
     r"s\.toml: data\.seed must be an integer from 0 to 4294967295"),
    ("a fractional step on an integer", lambda f: ["run", _spec(
        f, "st.toml", space="[space.mlp]\nunits = {low = 16, high = 64, step = 0.5}")],
     r"st\.toml: space\.mlp\.units expects integer ends and step, got \(low=16, high=64, step=0\.5\)"),
    ("a grid of no points", lambda f: ["run", _spec(f, "g.toml", study="sampler = 'grid'\nsampler_options = {points = 0}")],
     r"g\.toml: study\.sampler_options\.points must be an integer >= 1, got 0"),
    ("a study name too long", lambda f: ["run", _file(f, "n.toml", f"[study]\nname = '{'n' * 600}'")],
     r"n\.toml: \[study\] name is 600 characters long; the storage keeps names of at most 512"),
    ("a study name with a control character", lambda f: ["run", _file(f, "c.toml", '[study]\nname = "a\\u001b[31mb"')],
     r"c\.toml: \[study\] name .* holds a control character; use printable characters only"),
    ("a study name with a control character", lambda f: ["run", _file(f, "z.toml", '[study]\nname = "a\\u0000b"')],
     r"holds a control character"),
    # storages that are not what they seem
    ("a mistyped storage URL", lambda f: ["studies", "--storage", "postgres:hunter2@127.0.0.1/x"],
     r"looks like a database URL with a typo \(not shown: it may hold a password\)"),
    ("a mistyped storage URL", lambda f: ["run", str(f / "kept.toml"), "--storage", "postgresql+psycopg:/u:hunter2@h/x"],
     r"looks like a database URL with a typo"),
    ("a folder as the database", lambda f: ["run", str(f / "kept.toml"), "--storage", "sqlite:///newdir/"],
     r"sqlite:///newdir/ names a folder, not a database file; give a file in it"),
    ("a SQLite file of your own for run", lambda f: ["run", str(f / "kept.toml"), "--storage", f"sqlite:///{_own_db(f)}"],
     r"mine\.db, a SQLite database of other tables \(notes...\), not a study database"),
    ("an output that is not a regular file", lambda f: ["export", "kept", "--format", "csv", "-o", "/dev/null"],
     r"cannot write /dev/null: a device, named pipe or socket, not a regular file"),
    # storages that cannot keep what a run makes
    ("a damaged database", lambda f: ["studies", "--storage", _damaged(f)],
     r"storage sqlite:///.*damaged\.db is damaged \(database disk image is malformed\); restore .* \.recover"),
    ("a damaged database", lambda f: ["run", str(f / "kept.toml"), "--storage", _damaged(f)],
     r"damaged\.db is damaged \(database disk image is malformed\)"),
    ("a database in memory", lambda f: ["run", str(f / "kept.toml"), "--storage", "sqlite:///:memory:"],
     r"storage sqlite:///:memory: is a database in memory: its trials would be lost"),
    ("a database in memory", lambda f: ["worker", "kept", "--storage", "sqlite://"], r"sqlite:// is a database in memory"),
    ("a database in memory", lambda f: ["agent", "--storage", "sqlite://"], r"sqlite:// is a database in memory"),
    ("a gzip file that inflates to gigabytes", lambda f: ["run", str(f / "kept.toml"), "--dataset", _gzip_bomb(f)],
     r"train-images-idx3-ubyte\.gz: IDX file has trailing bytes: header says 60x8x8 \(3840 bytes of data\) but the "
     r"file has more"),
]


@pytest.mark.parametrize(("case", "args", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(stored, monkeypatch, case, args, message):
    folder, db = stored
    monkeypatch.chdir(folder)
    monkeypatch.setenv("DIGITUNE_STORAGE", f"sqlite:///{db}")
    argv = args(folder)
    before, files = _snapshot(db), _database_files(folder)
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, (case, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (case, result.stderr)
    assert re.search(message, lines[0]), (case, lines[0])
    assert "Traceback" not in result.output and "hunter2" not in result.output
    assert _snapshot(db) == before, f"{case}: the stored studies changed"
    assert _database_files(folder) == files, f"{case}: a database file was made or changed"


def _database_files(folder: Path) -> dict[str, str]:
    """Every database file in the folder (and what is in it), so that none is made, changed or removed."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.db"))}


def test_the_table_lists_every_case():
    table = (REPO / "docs" / "bad-input.md").read_text()
    for case, _, _ in CASES:
        assert f"| {case} |" in table, case


# --------------------------------------------------------------------------- through the entry point itself

USAGE = [
    (["run", "x.toml", "--trials", "-5"], r"invalid value for '--trials': .*; see 'digitune run --help'"),
    (["run"], r"missing argument 'study_file'; see 'digitune run --help'"),
    (["studies", "--bogus"], r"no such option: --bogus; see 'digitune studies --help'"),
    (["nosuch"], r"no such command 'nosuch'; see 'digitune --help'"),
]


@pytest.mark.parametrize(("args", "message"), USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_usage_errors_through_the_entry_point_are_one_line(tmp_path, args, message):
    result = run_cli(*args, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result
    assert re.fullmatch(f"error: {message}\n", result.stderr), result.stderr
    assert result.stdout == "" and not list(tmp_path.iterdir())


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"]], ids=["digitune", "run"])
def test_help_still_exits_0(tmp_path, args):
    result = run_cli(*args, cwd=tmp_path, timeout=120)
    assert result.returncode == 0 and "Usage: digitune" in result.stdout and result.stderr == "", result


@pytest.mark.parametrize("command", ["run", "predict"])
def test_a_named_pipe_as_data_is_refused_not_waited_on(stored, tmp_path, command):
    folder, db = stored
    fifo = tmp_path / "digits.npz"
    os.mkfifo(fifo)  # reading it would wait for a writer that never comes
    args = ["run", str(folder / "kept.toml"), "--dataset", str(fifo)] if command == "run" else \
        ["predict", "kept", "--data", str(fifo), "-o", str(tmp_path / "out.csv")]
    before = _snapshot(db)
    result = run_cli(*args, "--storage", f"sqlite:///{db}", cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result
    assert re.fullmatch(r"error: .*digits\.npz: not a regular file or folder \(a named pipe.*\n", result.stderr)
    assert _snapshot(db) == before and not (tmp_path / "out.csv").exists()


def test_a_full_disk_is_one_line_and_changes_nothing(stored, tmp_path):
    """A real full file system: a tmpfs just larger than the database, in a mount namespace of its own."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) to mount a small tmpfs")
    import sqlite3

    folder, _ = stored
    source = tmp_path / "kept.db"
    with sqlite3.connect(folder / "kept.db") as kept, sqlite3.connect(source) as copy:
        kept.backup(copy)
    kept.close(), copy.close()
    disk = tmp_path / "disk"
    disk.mkdir()
    script = """set -e
mount -t tmpfs -o size=$SIZE tmpfs "$DISK"; cp "$SOURCE" "$DISK/kept.db"; sha256sum "$DISK/kept.db"
set +e; "$EXE" run "$STUDY" --storage "sqlite:///$DISK/kept.db" 2> "$ERR"; echo "rc=$?"
sha256sum "$DISK/kept.db"; "$EXE" studies --json --storage "sqlite:///$DISK/kept.db"
"""
    env = {k: v for k, v in os.environ.items() if k != "DIGITUNE_STORAGE"}
    env.update(SIZE=str(source.stat().st_size + (48 << 10)), DISK=str(disk), SOURCE=str(source), EXE=digitune_exe(),
               STUDY=_spec(tmp_path, "new.toml"), ERR=str(tmp_path / "stderr"))
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], env=env,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and "mount" in done.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    before, rc, after, listing = done.stdout.split("\n", 3)
    stderr = (tmp_path / "stderr").read_text()
    assert rc == "rc=2", (done.stdout, stderr)
    assert re.fullmatch(r"error: storage sqlite:///.*kept\.db cannot be written \(database or disk is full\); free "
                        r"space on its disk.*\n", stderr), stderr
    assert before.split()[0] == after.split()[0], "the database file changed"
    assert [s["name"] for s in json.loads(listing)] == ["kept"], "a study was stored"
