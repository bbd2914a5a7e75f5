"""Nothing lost on disk: files for the user appear whole or not at all; a full disk fails a trial with why.

A full disk is a real one: a small tmpfs mounted for the test (root only; skipped otherwise).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from conftest import digitune_exe, run_cli, write_study
from digitune.models import atomic_open, atomic_path, is_temporary, load_model, predict_proba
from digitune.search.loop import MAX_CONSECUTIVE_FAILURES
from digitune.search.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()
FULL = "No space left on device"


def _study(folder: Path, name: str = "disk", *, url: str | None = None, artifacts: Path | None = None) -> str:
    """Run a tiny MLP study of 2 trials, both models kept (in process; default: ``folder``/studies.db); its URL."""
    path = write_study(folder, name, trials=2, family='"mlp"', pruner="none")
    path.write_text(path.read_text().replace("seed = 7\n", "seed = 7\nsave_models = 2\n", 1))
    url = url or f"sqlite:///{folder / 'studies.db'}"
    folder_option = ["--artifacts", str(artifacts)] if artifacts else []
    result = runner.invoke(app, ["run", str(path), "--storage", url, *folder_option])
    assert result.exit_code == 0, result.output
    return url


@pytest.fixture(scope="module")
def study_url(tmp_path_factory) -> str:
    return _study(tmp_path_factory.mktemp("study"))


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 1 MiB tmpfs mounted at tmp_path/disk, unmounted afterwards."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def _fill(folder: Path, leave: int = 0) -> None:
    """Fill ``folder``'s file system, leaving about ``leave`` bytes free."""
    slack = folder / "slack"
    slack.write_bytes(b"\0" * leave)
    with open(folder / "filler", "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == 28, exc
    slack.unlink()


def _temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if is_temporary(p)]


# --------------------------------------------------------------------------- the helper


def test_a_write_that_fails_midway_leaves_the_old_file(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old,complete\n")
    for error in (OSError(28, FULL), KeyboardInterrupt()):
        with pytest.raises(type(error)):
            with atomic_open(target, "w") as handle:
                handle.write("new,half")
                handle.flush()
                assert target.read_text() == "old,complete\n"  # not yet in place
                raise error
        assert target.read_text() == "old,complete\n"
        assert _temporaries(tmp_path) == []
    with atomic_path(tmp_path / "model.keras") as temp:
        assert temp.parent == tmp_path and temp.name.startswith(".model.keras.tmp-") and temp.suffix == ".keras"
        temp.write_bytes(b"new")
    assert (tmp_path / "model.keras").read_bytes() == b"new" and _temporaries(tmp_path) == []


# --------------------------------------------------------------------------- export-model, predict, export


def test_a_link_is_written_through_and_a_device_is_refused(tmp_path):
    target, link = tmp_path / "real.csv", tmp_path / "link.csv"
    target.write_text("old\n")
    link.symlink_to(target)
    with atomic_open(link) as handle:
        handle.write("new\n")
    assert link.is_symlink() and target.read_text() == "new\n"  # the link stays a link
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for node in (fifo, Path("/dev/null")):
        with pytest.raises(OSError, match="not a regular file"):
            with atomic_open(node) as handle:
                handle.write("x")
        assert not node.is_file()  # the node itself was not replaced by a file
    assert [p.name for p in tmp_path.iterdir() if is_temporary(p)] == []


def test_writes_onto_a_full_disk_keep_the_previous_files(tmp_path, tiny_disk, study_url):
    model = tiny_disk / "model.keras"
    result = run_cli("export-model", "disk", "-o", str(model), "--storage", study_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    submission, export = tiny_disk / "submission.csv", tiny_disk / "trials.csv"
    images = tmp_path / "digit.png"
    from PIL import Image

    Image.fromarray(np.full((8, 8), 200, dtype=np.uint8)).save(images)
    for args in (["predict", "disk", "--data", str(images), "-o", str(submission), "--model", str(model)],
                 ["export", "disk", "-f", "csv", "-o", str(export)]):
        result = run_cli(*args, "--storage", study_url, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    before = {p: p.read_bytes() for p in (model, submission, export)}
    expected = predict_proba(load_model(model), np.zeros((3, 8, 8)))

    _fill(tiny_disk, leave=16 * 1024)  # room for a part of a model, not for all of it
    result = run_cli("export-model", "disk", "-o", str(model), "--storage", study_url, cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: cannot write {model}: {FULL}"), lines
    (tiny_disk / "filler").unlink()
    _fill(tiny_disk)  # not even a small CSV fits now
    for args, target in ((["predict", "disk", "--data", str(images), "-o", str(submission), "--model", str(model)],
                          submission),
                         (["export", "disk", "-f", "csv", "-o", str(export)], export)):
        result = run_cli(*args, "--storage", study_url, cwd=tmp_path)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert lines[0].startswith(f"error: cannot write {target}: {FULL}"), lines

    assert {p: p.read_bytes() for p in before} == before
    assert np.allclose(predict_proba(load_model(model), np.zeros((3, 8, 8))), expected)
    assert _temporaries(tiny_disk) == []


def test_export_model_killed_at_any_point_leaves_the_old_model_whole(tmp_path, study_url):
    model = tmp_path / "model.keras"
    started = time.monotonic()
    result = run_cli("export-model", "disk", "-o", str(model), "--storage", study_url, cwd=tmp_path)
    duration = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    old = model.read_bytes()
    expected = predict_proba(load_model(model), np.zeros((3, 8, 8)))
    killed_while_writing = 0
    # Killed at spread-out times over a run's length, and once the moment its temporary file appears.
    for delay in [duration * f for f in (0.6, 0.75, 0.85, 0.92, 0.97)] + [None]:
        victim = subprocess.Popen([digitune_exe(), "export-model", "disk", "-o", str(model), "--storage", study_url],
                                  cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + (delay if delay is not None else 120)
        while victim.poll() is None and time.monotonic() < deadline:
            if delay is None and _temporaries(tmp_path):
                break
            time.sleep(0.001)
        killed_while_writing += bool(_temporaries(tmp_path))
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=60)
        assert model.read_bytes() == old or np.allclose(predict_proba(load_model(model), np.zeros((3, 8, 8))),
                                                        expected)
        for leftover in _temporaries(tmp_path):  # what a killed process leaves: hidden, beside the model
            (tmp_path / leftover).unlink()
    assert killed_while_writing >= 1  # at least one kill landed while the new file was being written
    assert np.allclose(predict_proba(load_model(model), np.zeros((3, 8, 8))), expected)


# --------------------------------------------------------------------------- the artifact store


def test_a_full_artifact_store_fails_each_trial_with_the_reason(tmp_path, tiny_disk):
    _fill(tiny_disk, leave=16 * 1024)
    path = write_study(tmp_path, "full", trials=3, family='"mlp"', pruner="none")
    path.write_text(path.read_text().replace("seed = 7\n", "seed = 7\nsave_models = 3\n", 1))
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    result = run_cli("run", str(path), "--storage", url, "--artifacts", str(tiny_disk), cwd=tmp_path)
    assert "Traceback" not in result.stderr, result.stderr
    # Each trial fails alone and the study goes on, until the runner stops after so many failures in a row.
    trials = optuna.load_study(study_name="full", storage=url).trials
    assert len(trials) == MAX_CONSECUTIVE_FAILURES and all(t.state == TrialState.FAIL for t in trials)
    assert f"{MAX_CONSECUTIVE_FAILURES} trials in a row failed" in result.stderr
    for trial in trials:
        reason = trial.user_attrs["fail_reason"]
        assert reason == (f"ArtifactError: cannot save the model of trial {trial.number} in the artifact store "
                          f"{tiny_disk}: {FULL}"), reason
        assert trial.user_attrs["curves"]["loss"]  # it trained; only the save failed
    assert sorted(p.name for p in tiny_disk.iterdir()) == [".digitune-storages", "filler"]
    assert (tiny_disk / ".digitune-storages").stat().st_size > 0


def test_delete_removes_orphaned_models_in_a_folder_of_its_own(tmp_path, storage_url):
    folder = tmp_path / "artifacts"
    for name in ("kept", "orphaned", "deleted"):
        _study(tmp_path, name, url=storage_url, artifacts=folder)
    storage = optuna.storages.RDBStorage(storage_url)
    kept = {m.artifact_id for t in optuna.load_study(study_name="kept", storage=storage).trials
            for m in optuna.artifacts.get_all_artifact_meta(t, storage=storage)}
    optuna.delete_study(study_name="orphaned", storage=storage)  # as Optuna deletes: its models stay behind
    stale, fresh = folder / ".x.keras.tmp-0badc0de.keras", folder / ".y.keras.tmp-00c0ffee.keras"
    for leftover in (stale, fresh):
        leftover.write_bytes(b"half a model")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    assert len([p for p in folder.iterdir() if not p.name.startswith(".")]) == 6

    result = run_cli("delete", "deleted", "--yes", "--storage", storage_url, "--artifacts", str(folder), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert {p.name for p in folder.iterdir()} == kept | {".digitune-storages", fresh.name}
    assert optuna.load_study(study_name="kept", storage=storage).user_attrs["saved_models"]

    # A folder another storage saves to as well: what this storage does not know of stays.
    other = folder / str(uuid.uuid4())
    other.write_bytes(b"another storage's model")
    with (folder / ".digitune-storages").open("a") as handle:
        handle.write("postgresql+psycopg://postgres@db.example/other\n")
    result = run_cli("delete", "kept", "--yes", "--storage", storage_url, "--artifacts", str(folder), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert {p.name for p in folder.iterdir()} == {".digitune-storages", fresh.name, other.name}
    storage.engine.dispose()
