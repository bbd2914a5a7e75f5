"""A time budget is a budget: at the deadline running trials stop at their next epoch end."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import run_cli
from digitune.search import Objective, load_spec, open_storage
from digitune.search._schema import STOPPED_ATTR
from digitune.search._factories import make_pruner

LONG_STUDY = """
[study]
name = "{name}"
trials = 5
sampler = "random"
pruner = "{pruner}"
pruner_options = {pruner_options}
start = "sampler"
seed = 3

[data]
source = "digits"
{limit}

[space]
family = "mlp"
epochs = {epochs}
learning_rate = 1e-3
batch_size = 16

[space.mlp]
hidden_layers = 1
units = 16
"""

EPOCHS = 1_000_000  # hours of training even with the fast epochs: a run that keeps its deadline stops long before


def long_study(folder: Path, name: str, *, epochs: int = EPOCHS, pruner: str = "none", pruner_options: str = "{}",
               limit: int | None = None) -> Path:
    """A study of small MLPs on the 8x8 digits, each asked to train for ``epochs`` epochs."""
    path = folder / f"{name}.toml"
    path.write_text(LONG_STUDY.format(name=name, epochs=epochs, pruner=pruner, pruner_options=pruner_options,
                                      limit="" if limit is None else f"limit = {limit}"))
    return path


def stopped_trials(db: str, name: str) -> list[optuna.trial.FrozenTrial]:
    """The study's trials, after checking each one ended complete, stopped at the deadline, with its scores."""
    trials = optuna.load_study(study_name=name, storage=db).trials
    for trial in trials:
        assert trial.state == TrialState.COMPLETE, (trial.number, trial.state)
        curves = trial.user_attrs["curves"]
        assert 1 <= trial.user_attrs[STOPPED_ATTR] == len(curves["loss"]) == trial.user_attrs["epochs_run"] < EPOCHS
        assert trial.value == curves["val_accuracy"][-1]
    return trials


@pytest.mark.slow
def test_run_timeout_stops_the_running_trial_at_an_epoch_end(tmp_path):
    db = f"sqlite:///{tmp_path / 'd.db'}"
    started = time.monotonic()
    # The budget counts from the command's start: importing the backend and loading the data spend some of it.
    result = run_cli("run", str(long_study(tmp_path, "budget")), "--storage", db, "--timeout", "30", cwd=tmp_path,
                     timeout=400)
    wall = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    (trial,) = stopped_trials(db, "budget")  # no new trial started past the deadline
    epochs = trial.user_attrs[STOPPED_ATTR]
    assert f"trial 0 complete value={trial.value:.4g} (stopped at the deadline after {epochs} epochs;" in result.stderr
    assert wall < 30 + 90, f"the run took {wall:.0f} s"  # loose: the point is it did not train all its epochs


@pytest.mark.slow
def test_spawned_workers_share_the_run_deadline(tmp_path):
    db = f"sqlite:///{tmp_path / 'w.db'}"
    result = run_cli("run", str(long_study(tmp_path, "pair")), "--storage", db, "--timeout", "60",
                     "--workers", "2", cwd=tmp_path, timeout=400)
    assert result.returncode == 0, result.stderr
    assert "1 more worker(s), exit codes [0]" in result.stderr
    trials = stopped_trials(db, "pair")  # none left running
    assert len({t.user_attrs["worker"] for t in trials}) == 2, "the worker beside this process ran no trial"


@pytest.mark.slow
def test_a_worker_keeps_its_parents_deadline_over_its_own_timeout(tmp_path):
    """``worker --deadline`` (what ``run`` passes its workers): the parent's clock, started before this process."""
    db = f"sqlite:///{tmp_path / 'p.db'}"
    path = long_study(tmp_path, "parent")
    assert run_cli("run", str(path), "--storage", db, "--timeout", "1", cwd=tmp_path, timeout=400).returncode == 0
    before = len(optuna.load_study(study_name="parent", storage=db).trials)
    past = run_cli("worker", "parent", "--storage", db, "--deadline", repr(time.time() - 1), cwd=tmp_path)
    assert past.returncode == 0, past.stderr
    assert len(optuna.load_study(study_name="parent", storage=db).trials) == before  # nothing new started

    deadline = time.time() + 40  # the worker imports its backend and loads its data on this clock
    result = run_cli("worker", "parent", "--storage", db, "--timeout", "600", "--deadline", repr(deadline),
                     cwd=tmp_path, timeout=400)
    assert result.returncode == 0, result.stderr
    trials = stopped_trials(db, "parent")
    assert len(trials) == before + 1
    assert trials[-1].datetime_complete.timestamp() < deadline + 60  # --timeout 600 would have gone on training


def _objective_trial(tmp_path: Path, *, epochs: int, pruner: str = "none", pruner_options: str = "{}"):
    spec = load_spec(long_study(tmp_path, "unit", epochs=epochs, pruner=pruner, pruner_options=pruner_options,
                                limit=300))
    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 'u.db'}"), study_name="unit",
                                direction="maximize", pruner=make_pruner(spec))
    return spec, study.ask()


def test_a_deadline_already_past_stops_a_trial_after_its_first_epoch(tmp_path, small_digits):
    spec, trial = _objective_trial(tmp_path, epochs=50)
    value = Objective(spec, small_digits, deadline=time.monotonic() - 1)(trial)
    attrs = trial.study.trials[0].user_attrs
    assert attrs[STOPPED_ATTR] == attrs["epochs_run"] == 1
    assert value == attrs["curves"]["val_accuracy"][0]


def test_a_trial_that_ran_all_its_epochs_was_not_stopped(tmp_path, small_digits):
    spec, trial = _objective_trial(tmp_path, epochs=1)
    Objective(spec, small_digits, deadline=time.monotonic() - 1)(trial)
    attrs = trial.study.trials[0].user_attrs
    assert attrs["epochs_run"] == 1 and STOPPED_ATTR not in attrs


def test_a_prune_at_the_deadline_epoch_still_prunes(tmp_path, small_digits):
    # A threshold no model reaches: the pruner stops the trial at its first epoch, the deadline's epoch too.
    spec, trial = _objective_trial(tmp_path, epochs=50, pruner="threshold",
                                   pruner_options="{lower = 1.1, n_warmup_steps = 0}")
    with pytest.raises(optuna.TrialPruned):
        Objective(spec, small_digits, deadline=time.monotonic() - 1)(trial)
    attrs = trial.study.trials[0].user_attrs
    assert attrs["epochs_run"] == 1 and STOPPED_ATTR not in attrs
