"""Running studies for real: small Keras models on 300 digits, persisted to a SQLite file."""

from __future__ import annotations

import dataclasses
import json

import optuna
import pytest
from optuna.trial import TrialState

from conftest import write_study
from digitune.models import build_model, model_config_from_dict
from digitune.search.loop import MAX_CONSECUTIVE_FAILURES
from digitune.search import FINISHED, SpecError, load_spec, open_storage, run_study, spec_from_dict, stored_spec

CURVES = ("loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds")


@pytest.fixture
def storage(tmp_path):
    return open_storage(f"sqlite:///{tmp_path / 'studies.db'}")


def _params(trial):
    return json.dumps(trial.params, sort_keys=True)


def test_study_persists_trials_with_curves_and_resumes(tmp_path, storage, small_digits):
    spec = load_spec(write_study(tmp_path, trials=6, sampler="random"))
    summary = run_study(spec, storage, dataset=small_digits)
    assert summary.finished == 6 and summary.failed == 0

    # Everything is in the file: reopen it from a new storage object.
    reopened = optuna.load_study(study_name="tiny", storage=open_storage(f"sqlite:///{tmp_path / 'studies.db'}"))
    trials = reopened.get_trials(states=FINISHED)
    assert len(trials) == 6
    assert {t.user_attrs["family"] for t in trials} == {"mlp", "cnn"}
    for trial in trials:
        attrs = trial.user_attrs
        epochs = attrs["epochs_run"]
        assert 1 <= epochs <= trial.params["epochs"]
        for key in CURVES:
            assert len(attrs["curves"][key]) == epochs, key
        assert len(trial.intermediate_values) == epochs
        assert attrs["curves"]["val_accuracy"] == [trial.intermediate_values[i] for i in range(epochs)]
        assert attrs["params_count"] > 0 and attrs["train_seconds"] > 0
        assert attrs["keras_backend"] == "tensorflow" and attrs["device"].startswith("cpu")
        rebuilt = build_model(model_config_from_dict(attrs["model_config"]), (8, 8))
        assert rebuilt.count_params() == attrs["params_count"]
        assert attrs["train_config"]["seed"] == spec.seed + trial.number
        if trial.state == TrialState.COMPLETE:
            assert trial.value == attrs["curves"]["val_accuracy"][-1]
            assert 0.1 < trial.value <= 1.0
    assert stored_spec(reopened) == dataclasses.replace(spec, path=stored_spec(reopened).path)
    assert reopened.user_attrs["dataset"]["fingerprint"] == small_digits.info.fingerprint

    # Running again with a higher target continues the same study: old trials untouched, new ones new.
    before = {t.number: _params(t) for t in trials}
    summary = run_study(spec, storage, dataset=small_digits, n_trials=9)
    assert summary.finished == 9 and summary.ran == 3
    after = reopened.get_trials(states=FINISHED)
    assert {t.number: _params(t) for t in after if t.number in before} == before
    new = [_params(t) for t in after if t.number not in before]
    assert len(new) == 3 and not set(new) & set(before.values()), "a resumed study repeated earlier draws"

    # A target already met runs nothing.
    assert run_study(spec, storage, dataset=small_digits, n_trials=5).ran == 0


def test_study_file_that_disagrees_with_stored_study_is_refused(tmp_path, storage, small_digits):
    spec = load_spec(write_study(tmp_path, trials=1, family='"mlp"'))
    run_study(spec, storage, dataset=small_digits)
    changed = load_spec(write_study(tmp_path, trials=1, family='"mlp"', sampler="random"))
    with pytest.raises(SpecError, match=r"disagrees with the stored study 'tiny' on sampler; give the study a new"):
        run_study(changed, storage, dataset=small_digits, n_trials=3)
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert len(study.trials) == 1 and stored_spec(study).sampler == "tpe"


def test_other_data_is_refused(tmp_path, storage, small_digits):
    from digitune.models import load_dataset

    spec = load_spec(write_study(tmp_path, trials=1, family='"mlp"'))
    run_study(spec, storage, dataset=small_digits)
    other = load_dataset("digits", limit=300, center=True)
    object.__setattr__(other, "info", dataclasses.replace(other.info, fingerprint="0" * 16))
    with pytest.raises(SpecError, match=r"fingerprint"):
        run_study(spec, storage, dataset=other, n_trials=2)


def test_failing_trials_fail_alone_with_their_reason(tmp_path, storage, small_digits):
    # One 'valid' 5x5 conv block fits 8x8 images (8 -> 4 -> pool 2); a second cannot: those CNN trials
    # fail with their reason, the others go on.
    spec = load_spec(write_study(tmp_path, trials=6, sampler="random", blocks="{low = 1, high = 3}",
                                 kernel_size=5, padding="valid"))
    summary = run_study(spec, storage, dataset=small_digits)
    study = summary.study
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert summary.finished == 6
    assert failed, "expected some CNN trials to fail"
    for trial in failed:
        assert trial.user_attrs["family"] == "cnn" and trial.params["cnn_blocks"] >= 2
        assert "shrinks the feature map below 1x1" in trial.user_attrs["fail_reason"]
    finished = study.get_trials(states=FINISHED)
    assert all(t.user_attrs["family"] == "mlp" or t.params["cnn_blocks"] == 1 for t in finished)


def test_a_cnn_space_that_never_fits_is_refused_before_any_trial(tmp_path, storage, small_digits):
    spec = load_spec(write_study(tmp_path, trials=2, family='"cnn"', blocks=4, kernel_size=5, padding="valid"))
    with pytest.raises(SpecError, match=r"tiny\.toml: \[space\.cnn\] cannot fit 8x8 images with any of its configs"):
        run_study(spec, storage, dataset=small_digits)
    assert optuna.get_all_study_names(storage=storage) == []


def test_a_space_that_always_fails_stops(tmp_path, storage, small_digits):
    # SGD at learning rate 10 on a deep leaky-ReLU net: the loss turns NaN in the first epoch, every time.
    spec = load_spec(write_study(tmp_path, trials=2, family='"mlp"'))
    data = spec.to_dict()
    data["space"].update(optimizer="sgd", learning_rate=10.0)
    data["space"]["mlp"].update(hidden_layers=3, units=100, activation="leaky_relu", initializer="he_normal")
    summary = run_study(spec_from_dict(data), storage, dataset=small_digits)
    assert summary.finished == 0 and summary.failed == MAX_CONSECUTIVE_FAILURES == 10
    assert all(t.state == TrialState.FAIL for t in summary.study.trials)
    assert all("NaN or infinite" in t.user_attrs["fail_reason"] for t in summary.study.trials)
