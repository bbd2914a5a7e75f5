"""Cost-aware fidelity: a trial is judged by the pruner at the step its training time has reached."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from conftest import run_cli
from digitune.search import SpecError, load_spec, open_storage, open_study, run_study, spec_from_dict
from digitune.search._fidelity import MIN_FINISHED, EpochCost, epoch_cost, next_step
from digitune.search._schema import COST_ATTR, STEPS_ATTR
from digitune.search._factories import make_pruner

FIDELITY_STUDY = """
[study]
name = "{name}"
trials = 4
sampler = "random"
pruner = "hyperband"
pruner_options = {{min_resource = 2}}   # one bracket (5 epochs / 2 < 3): every trial is judged at step 2
fidelity = "{fidelity}"
start = "sampler"
seed = 3

[data]
source = "digits"
limit = 600

[space]
family = "mlp"
epochs = 5
learning_rate = [1e-6, 3e-2]
batch_size = [2, 64]

[space.mlp]
hidden_layers = [1, 3]
units = [32, 1024]
"""

# A small model with a few updates an epoch, which learns; a wide one with a hundred times the
# arithmetic an epoch (tens of times the seconds), which learns nothing.
CHEAP = {"learning_rate": 3e-2, "batch_size": 64, "mlp_hidden_layers": 1, "mlp_units": 32}
EXPENSIVE = {"learning_rate": 1e-6, "batch_size": 2, "mlp_hidden_layers": 3, "mlp_units": 1024}


def steps(epoch_seconds: list[float], cost: EpochCost | None) -> list[int]:
    """The steps a trial with these epoch times reports, one epoch after the other."""
    reported = [-1]
    for epoch in range(len(epoch_seconds)):
        reported.append(next_step(epoch_seconds[:epoch + 1], cost, reported[-1]))
    return reported[1:]


def test_a_trial_three_times_the_median_reports_at_the_steps_its_time_reached():
    typical = EpochCost(first=1.0, later=1.0)
    assert steps([3.0] * 4, typical) == [2, 5, 8, 11]
    assert steps([1.0] * 4, typical) == [0, 1, 2, 3]  # a typical trial: its epochs
    assert steps([1.05, 0.9, 1.1, 1.0], typical) == [0, 1, 2, 3]  # a little slower or faster: still its epochs
    assert steps([0.2] * 4, typical) == [0, 1, 2, 3]  # never below its epochs
    assert steps([3.0] * 4, None) == [0, 1, 2, 3]  # fidelity "epochs", or too few finished trials


def test_a_first_epoch_is_weighed_against_the_typical_first_epoch():
    # Every model's first epoch traces its training step: here a typical first epoch costs 40 later ones.
    typical = EpochCost(first=2.0, later=0.05)
    assert steps([2.1, 0.05, 0.05, 0.05], typical) == [0, 1, 2, 3]
    assert steps([3.0, 0.05, 0.05], typical) == [0, 1, 2]  # traces 1.5x slower: not 20 later epochs ahead
    assert steps([6.0, 0.15, 0.15], typical) == [2, 5, 8]  # three times the cost of every epoch


def _hyperband_study(spec) -> optuna.Study:
    study = optuna.create_study(direction="maximize", pruner=make_pruner(spec))
    for _ in range(MIN_FINISHED):  # typical trials, run to the end: 0.9 at every step
        trial = study.ask()
        for step in range(spec.max_epochs):
            trial.report(0.9, step)
            assert not trial.should_prune()  # where the pruner records the rungs a trial passed
        study.tell(trial, 0.9)
    return study


def _epochs_until_pruned(study: optuna.Study, reported: list[int]) -> int:
    trial = study.ask()
    for epoch, step in enumerate(reported, start=1):
        trial.report(0.1, step)
        if trial.should_prune():
            return epoch
    return len(reported)


def test_hyperband_judges_an_expensive_trial_at_the_rung_its_time_reached(tmp_path):
    spec = load_spec(_study_file(tmp_path, "unit", "time"))
    typical = EpochCost(first=1.0, later=1.0)
    # Hyperband's one bracket judges at step 2 (min_resource): after three epochs of a typical trial.
    assert _epochs_until_pruned(_hyperband_study(spec), steps([1.0] * 5, typical)) == 3
    # Three times the typical cost: judged after its first epoch, which took the time of three.
    assert _epochs_until_pruned(_hyperband_study(spec), steps([3.0] * 5, typical)) == 1
    assert _epochs_until_pruned(_hyperband_study(spec), steps([3.0] * 5, None)) == 3


def _finished(seconds: list[float], state: TrialState = TrialState.COMPLETE) -> optuna.trial.FrozenTrial:
    return create_trial(state=state, value=0.5 if state == TrialState.COMPLETE else None,
                        intermediate_values={0: 0.5} if state == TrialState.PRUNED else None,
                        user_attrs={"curves": {"epoch_seconds": seconds}})


def test_the_typical_epoch_is_read_from_finished_trials_only():
    trials = [_finished([2.0, 0.5, 0.5, 0.7]), _finished([3.0, 0.4], TrialState.PRUNED)]
    assert epoch_cost(trials) is None  # fewer than MIN_FINISHED: plain epochs
    failed = create_trial(state=TrialState.FAIL, user_attrs={"curves": {"epoch_seconds": [99.0, 99.0]}})
    assert epoch_cost([*trials, failed]) is None
    trials.append(_finished([1.0, 0.3, 0.3]))
    assert epoch_cost([*trials, failed]) == EpochCost(first=2.0, later=0.4)  # medians: of firsts, of each one's later
    assert epoch_cost([_finished([1.0])] * 3) is None  # no later epoch to measure


def _study_file(folder: Path, name: str, fidelity: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(FIDELITY_STUDY.format(name=name, fidelity=fidelity))
    return path


def _expensive_trial(tmp_path: Path, fidelity: str, digits) -> optuna.trial.FrozenTrial:
    """Three cheap trials, then the expensive one, in a real study; the expensive trial as it ended."""
    spec = load_spec(_study_file(tmp_path, fidelity, fidelity))
    storage = open_storage(f"sqlite:///{tmp_path / f'{fidelity}.db'}")
    study = open_study(spec, storage, digits)
    for params in (CHEAP, CHEAP, CHEAP, EXPENSIVE):
        study.enqueue_trial(params)
    summary = run_study(spec, storage, dataset=digits, study=study)
    assert summary.failed == 0
    *cheap, expensive = summary.study.get_trials()
    assert expensive.params == EXPENSIVE
    assert {t.user_attrs[STEPS_ATTR] for t in cheap} == {"epochs"}  # before three had finished
    return expensive


@pytest.fixture(scope="module")
def digits600():
    from digitune.models import load_dataset

    return load_dataset("digits", limit=600)


def test_an_expensive_draw_is_pruned_after_fewer_epochs_with_time_fidelity(tmp_path, digits600):
    by_epochs = _expensive_trial(tmp_path, "epochs", digits600)
    assert by_epochs.state == TrialState.PRUNED
    assert by_epochs.user_attrs[STEPS_ATTR] == "epochs" and COST_ATTR not in by_epochs.user_attrs
    assert by_epochs.user_attrs["epochs_run"] == 3 and sorted(by_epochs.intermediate_values) == [0, 1, 2]

    by_time = _expensive_trial(tmp_path, "time", digits600)
    assert by_time.state == TrialState.PRUNED
    attrs = by_time.user_attrs
    assert attrs[STEPS_ATTR] == "time" and set(attrs[COST_ATTR]) == {"first", "later"}
    assert attrs["epochs_run"] < 3, attrs["curves"]["epoch_seconds"]
    reported = sorted(by_time.intermediate_values)
    assert len(reported) == attrs["epochs_run"] and reported[-1] >= 2  # one report an epoch, at its time's step
    assert [by_time.intermediate_values[s] for s in reported] == attrs["curves"]["val_accuracy"]


def test_fidelity_is_a_study_key_and_part_of_the_search_definition(tmp_path, small_digits):
    spec = load_spec(_study_file(tmp_path, "keyed", "time"))
    assert spec.fidelity == "time"
    assert spec_from_dict(spec.to_dict()) == dataclasses.replace(spec, path="<study>")
    assert spec_from_dict({"study": {"name": "plain"}}).fidelity == "epochs"
    storage = open_storage(f"sqlite:///{tmp_path / 'keyed.db'}")
    open_study(spec, storage, small_digits)
    other = dataclasses.replace(spec, fidelity="epochs")
    with pytest.raises(SpecError, match=r"disagrees with the stored study 'keyed' on fidelity"):
        open_study(other, storage, small_digits)


def test_a_bad_fidelity_is_one_error_line(tmp_path):
    path = _study_file(tmp_path, "bad", "seconds")
    result = run_cli("run", str(path), "--storage", f"sqlite:///{tmp_path / 'bad.db'}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: {path}: study.fidelity must be one of epochs, time, got 'seconds'")
    assert not (tmp_path / "bad.db").exists()
