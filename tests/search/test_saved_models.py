"""The study's record of kept models under concurrent writers: none lost, the record healed."""

from __future__ import annotations

import fcntl
import threading
import types

import optuna
import pytest

from digitune.models import MLPConfig, build_model
from digitune.search._artifacts import OWNERS_FILE, ModelKeeper
from digitune.search._schema import MODEL_ATTR, SAVED_ATTR


@pytest.fixture
def model():
    return build_model(MLPConfig(hidden_layers=1, units=4), (8, 8))


def _study(tmp_path):
    return optuna.create_study(study_name="kept", storage=f"sqlite:///{tmp_path / 'kept.db'}", direction="maximize")


def _finish(study, keeper, model, value):
    """One trial whose model is offered to ``keeper``, then completed with ``value``."""
    trial = study.ask()
    keeper.offer(trial, model, value)
    study.tell(trial, value)
    return trial.number


def test_a_record_a_concurrent_writer_lost_is_healed_by_the_next_save(tmp_path, model):
    study, keeper = _study(tmp_path), ModelKeeper(tmp_path / "art", keep=2)
    _finish(study, keeper, model, 0.90)
    _finish(study, keeper, model, 0.95)
    saved = study.user_attrs[SAVED_ATTR]
    assert set(saved) == {"0", "1"}
    study.set_user_attr(SAVED_ATTR, {"0": saved["0"]})  # what a writer that had not seen trial 1 wrote
    _finish(study, keeper, model, 0.93)
    healed = study.user_attrs[SAVED_ATTR]
    assert set(healed) == {"1", "2"}  # the two best: trial 1 came back, trial 0 went
    assert healed["1"] == saved["1"] and (tmp_path / "art" / saved["1"]).is_file()
    assert not (tmp_path / "art" / saved["0"]).exists()


def test_a_model_saved_by_a_trial_not_yet_told_is_not_dropped(tmp_path, model):
    study, keeper = _study(tmp_path), ModelKeeper(tmp_path / "art", keep=1)
    first, second = study.ask(), study.ask()  # two workers' trials, each saving before its tell
    keeper.offer(first, model, 0.97)
    keeper.offer(second, model, 0.95)
    kept = study.user_attrs[SAVED_ATTR]
    assert "0" in kept and (tmp_path / "art" / kept["0"]).is_file()
    study.tell(first, 0.97)
    study.tell(second, 0.95)
    _finish(study, keeper, model, 0.99)  # the next save ranks them all: only the best stays
    assert set(study.user_attrs[SAVED_ATTR]) == {"2"}
    assert not (tmp_path / "art" / kept["0"]).exists()


def test_writers_of_the_record_take_turns(tmp_path, model, monkeypatch):
    import digitune.search._artifacts as artifacts

    study, keeper = _study(tmp_path), ModelKeeper(tmp_path / "art", keep=2)
    _finish(study, keeper, model, 0.90)  # creates the folder and its owners file
    trial, asked = study.ask(), threading.Event()

    def flock(fd, operation):
        asked.set()
        return fcntl.flock(fd, operation)

    monkeypatch.setattr(artifacts, "fcntl", types.SimpleNamespace(flock=flock, LOCK_EX=fcntl.LOCK_EX))
    with (tmp_path / "art" / OWNERS_FILE).open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another worker in the middle of its write
        writer = threading.Thread(target=keeper.offer, args=(trial, model, 0.95))
        writer.start()
        assert asked.wait(timeout=120), "the writer never asked for the lock"
        assert MODEL_ATTR in study.trials[trial.number].user_attrs  # uploaded before it asked
        assert writer.is_alive() and set(study.user_attrs[SAVED_ATTR]) == {"0"}
    writer.join(timeout=120)
    assert not writer.is_alive()
    assert set(study.user_attrs[SAVED_ATTR]) == {"0", "1"}
