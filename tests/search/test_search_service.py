"""The search service: every sampler and pruner, multi-objective, constraints, baselines, workers."""

from __future__ import annotations

import importlib.util
import json

import optuna
import pytest
from optuna.trial import TrialState

from conftest import run_cli, write_study
from digitune.models import PRESET_NAMES, get_preset, model_config_from_dict
from digitune.search import FINISHED, SpecError, load_spec, open_storage, run_study, spec_from_dict

# Every sampler meets a pruner; together they cover all of both.
PAIRS = [
    ("tpe", "hyperband"),
    ("random", "median"),
    ("grid", "successive-halving"),
    ("qmc", "percentile"),
    ("cmaes", "threshold"),
    ("gp", "none"),
    ("nsga2", "hyperband"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("sampler", "pruner"), PAIRS)
def test_every_sampler_and_pruner_runs_through_the_cli(tmp_path, sampler, pruner):
    if sampler == "gp" and importlib.util.find_spec("torch") is None:
        pytest.skip("Optuna's GPSampler needs PyTorch (pip install torch); .ci/run installs it")
    path = write_study(tmp_path, f"s_{sampler}", trials=3, family='"mlp"')
    db = f"sqlite:///{tmp_path / 's.db'}"
    result = run_cli("run", str(path), "--storage", db, "--sampler", sampler, "--pruner", pruner, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name=f"s_{sampler}", storage=db)
    assert len(study.get_trials(states=FINISHED)) == 3
    assert type(study.sampler).__name__  # loaded without error
    stored = study.user_attrs["digitune_spec"]["study"]
    assert (stored["sampler"], stored["pruner"]) == (sampler, pruner)


@pytest.mark.parametrize("pruner_name", ["hyperband", "successive-halving"])
@pytest.mark.parametrize(("high", "expected"), [(3, 1), (8, 2), (10, 3), (50, 3)])
def test_hyperband_first_judges_trials_of_longer_studies_after_four_epochs(pruner_name, high, expected):
    from digitune.search._factories import make_pruner

    spec = spec_from_dict({"study": {"name": "h", "pruner": pruner_name}, "data": {"source": "digits"},
                           "space": {"family": "mlp", "epochs": {"low": 1, "high": high}}})
    pruner = make_pruner(spec)
    assert pruner._min_resource == expected
    if pruner_name == "hyperband":
        assert pruner._max_resource == max(high, 2)
    options = spec.to_dict()
    options["study"]["pruner_options"] = {"min_resource": 1}
    assert make_pruner(spec_from_dict(options))._min_resource == 1  # the file's choice wins


@pytest.mark.parametrize(("train_images", "high", "expected"),
                         [(1257, 10, 3), (2000, 10, 2), (42000, 10, 1), (42000, 50, 1), (1257, 8, 2), (None, 10, 3)])
def test_an_epoch_of_many_images_is_enough_to_judge_a_trial(train_images, high, expected):
    from digitune.search._factories import make_pruner

    spec = spec_from_dict({"study": {"name": "h"}, "data": {"source": "digits"},
                           "space": {"family": "mlp", "epochs": {"low": 1, "high": high}}})
    pruner = make_pruner(spec, train_images)
    assert pruner._min_resource == expected
    pruner._try_initialization(optuna.create_study(study_name="h"))  # Hyperband sizes its brackets lazily
    brackets = {(3, 10): 2, (1, 10): 3, (2, 10): 2, (1, 50): 4, (2, 8): 2}[(expected, high)]
    assert pruner._n_brackets == brackets  # one epoch of Fashion-MNIST: a third bracket, fewer trials unjudged


def test_a_study_on_larger_data_judges_its_trials_after_fewer_epochs(tmp_path, small_digits):
    import dataclasses

    import numpy as np

    from digitune.search.study import open_study

    spec = spec_from_dict({"study": {"name": "many"}, "data": {"source": "digits", "limit": 300},
                           "space": {"family": "mlp", "epochs": {"low": 3, "high": 10}}})
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    assert open_study(spec, storage, small_digits).pruner._min_resource == 3  # 210 images an epoch
    many = dataclasses.replace(small_digits, x_train=np.concatenate([small_digits.x_train] * 15),
                               y_train=np.concatenate([small_digits.y_train] * 15))  # 3,150 an epoch
    assert open_study(spec, storage, many).pruner._min_resource == 1


def _count_trial_reads(storage: optuna.storages.BaseStorage) -> list[int]:
    reads = [0]
    read = storage.get_all_trials

    def counting(*args, **kwargs):
        reads[0] += 1
        return read(*args, **kwargs)

    storage.get_all_trials = counting
    return reads


def test_hyperband_reads_the_trials_fewer_times_while_tpe_draws_and_draws_the_same(tmp_path):
    """Under Optuna's Hyperband every parameter TPE draws reads all trials back more than once; digitune's less."""
    from digitune.search._factories import make_pruner, make_sampler
    from digitune.search._space import sample_configs

    spec = spec_from_dict({"study": {"name": "h", "seed": 3, "sampler_options": {"n_startup_trials": 4}},
                           "data": {"source": "digits"},
                           "space": {"family": ["mlp", "cnn"], "epochs": {"low": 3, "high": 9},
                                     "learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
                                     "mlp": {"units": {"low": 16, "high": 256}, "dropout": {"low": 0.0, "high": 0.5}},
                                     "cnn": {"filters": {"low": 4, "high": 32}, "dense_units": [16, 32]}}})
    runs = {}
    for name, pruner in (("optuna", optuna.pruners.HyperbandPruner(min_resource=3, max_resource=9, reduction_factor=3)),
                         ("digitune", make_pruner(spec))):
        storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / name}.db")
        study = optuna.create_study(study_name="h", storage=storage, sampler=make_sampler(spec), pruner=pruner,
                                    direction="maximize")
        reads = _count_trial_reads(study._storage)
        drawn, per_trial = [], []
        for number in range(12):
            before = reads[0]
            trial = study.ask()
            sample_configs(trial, spec)
            per_trial.append(reads[0] - before)
            drawn.append(trial.params)
            for epoch in range(1, 10):
                trial.report(0.5 + 0.01 * ((number * 7 + epoch) % 11) + 0.02 * epoch, epoch)
                if trial.should_prune():
                    study.tell(trial, state=TrialState.PRUNED)
                    break
            else:
                study.tell(trial, 0.7)
        runs[name] = drawn, per_trial
    assert runs["digitune"][0] == runs["optuna"][0]  # the same draws, trial by trial
    optuna_reads, digitune_reads = runs["optuna"][1], runs["digitune"][1]
    # Random start-up draws: Optuna read the trials once per parameter (and twice more), digitune twice.
    assert min(optuna_reads[:4]) >= 6 and max(digitune_reads[:4]) <= 2
    # TPE's own draws (constant liar: each reads running trials afresh) no longer read them twice each.
    assert all(d <= o - 2 for d, o in zip(digitune_reads[4:], optuna_reads[4:]))


def test_bad_sampler_options_are_a_spec_error(tmp_path, small_digits):
    spec = load_spec(write_study(tmp_path, trials=1))
    data = spec.to_dict()
    data["study"]["sampler_options"] = {"n_startup_trails": 3}
    bad = spec_from_dict(data, source="x.toml")
    with pytest.raises(SpecError, match=r"x\.toml: study\.sampler_options do not fit the tpe sampler"):
        run_study(bad, open_storage(f"sqlite:///{tmp_path / 's.db'}"), dataset=small_digits)


def _spec(tmp_path, **study):
    spec = load_spec(write_study(tmp_path, trials=study.pop("trials", 3), family='"mlp"'))
    data = spec.to_dict()
    data["study"].update(study)
    return spec_from_dict(data, source=str(tmp_path / "tiny.toml"))


def test_multi_objective_study_gives_a_pareto_front(tmp_path, small_digits):
    spec = _spec(tmp_path, trials=4, objectives=["val_accuracy:max", "params:min"], sampler="nsga2")
    assert spec.directions == ("maximize", "minimize")
    db = f"sqlite:///{tmp_path / 's.db'}"
    run_study(spec, open_storage(db), dataset=small_digits)
    result = run_cli("best", "tiny", "--storage", db, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    front = json.loads(result.stdout)
    assert front and all(len(t["values"]) == 2 for t in front)
    study = optuna.load_study(study_name="tiny", storage=db)
    assert {t.number for t in study.best_trials} == {t["number"] for t in front}
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        assert trial.values[1] == trial.user_attrs["params_count"]
        assert not trial.intermediate_values  # multi-objective trials cannot report
    shown = run_cli("show", "tiny", "--storage", db, cwd=tmp_path)
    assert "Pareto front (val_accuracy:max, params:min)" in shown.stdout
    (row,) = json.loads(run_cli("studies", "--storage", db, "--json", cwd=tmp_path).stdout)
    assert row["directions"] == ["maximize", "minimize"] and row["best_value"] is None


def test_multi_objective_trials_stop_when_validation_stalls(tmp_path, small_digits):
    # SGD at lr 1e-9 leaves the weights as they are: validation accuracy cannot improve.
    spec = load_spec(write_study(tmp_path, trials=1, family='"mlp"'))
    data = spec.to_dict()
    data["study"].update(objectives=["val_accuracy:max", "train_seconds:min"], early_stopping=1)
    data["space"].update(epochs=8, learning_rate=1e-9, optimizer="sgd")
    spec = spec_from_dict(data)
    summary = run_study(spec, open_storage(f"sqlite:///{tmp_path / 's.db'}"), dataset=small_digits)
    (trial,) = summary.study.trials
    assert trial.state == TrialState.COMPLETE
    assert trial.user_attrs["epochs_run"] == 2 < 8


def test_parameter_budget_is_a_constraint(tmp_path, small_digits):
    spec = _spec(tmp_path, trials=5, max_params=2_000, sampler="random")
    db = f"sqlite:///{tmp_path / 's.db'}"
    summary = run_study(spec, open_storage(db), dataset=small_digits)
    complete = summary.study.get_trials(states=(TrialState.COMPLETE,))
    assert complete
    for trial in complete:
        assert trial.constraints == {"max_params": trial.user_attrs["params_count"] - 2_000}
    feasible = [t for t in complete if t.user_attrs["params_count"] <= 2_000]
    infeasible = [t for t in complete if t.user_attrs["params_count"] > 2_000]
    assert feasible and infeasible, "expected both feasible and infeasible models in this space"
    best = json.loads(run_cli("best", "tiny", "--storage", db, "--json", cwd=tmp_path).stdout)
    assert best["feasible"] and best["params_count"] <= 2_000
    assert best["value"] == max(t.value for t in feasible)
    assert "infeasible" in run_cli("show", "tiny", "--storage", db, cwd=tmp_path).stdout


def test_a_new_study_starts_from_a_known_good_model_per_family_within_its_space(tmp_path, small_digits):
    spec = load_spec(write_study(tmp_path, trials=3))  # units 16-64, filters 4-8, lr 3e-3..2e-2, batch 32/64
    assert spec.start == "defaults"
    db = f"sqlite:///{tmp_path / 's.db'}"
    summary = run_study(spec, open_storage(db), dataset=small_digits)
    trials = sorted(summary.study.get_trials(states=FINISHED), key=lambda t: t.number)
    assert [t.user_attrs.get("start") for t in trials] == ["defaults", "defaults", None]
    mlp, cnn = trials[0].params, trials[1].params
    # The known-good starts moved into the space: 256 units -> 64, 32 filters -> 8 (lr 3e-3 is allowed).
    assert mlp == {"family": "mlp", "epochs": 3, "learning_rate": 3e-3, "batch_size": 32,
                   "mlp_hidden_layers": 2, "mlp_units": 64}
    assert cnn == {"family": "cnn", "epochs": 3, "learning_rate": 3e-3, "batch_size": 32, "cnn_filters": 8}
    assert trials[1].user_attrs["model_config"]["blocks"][0]["filters"] == 8
    # Resuming does not queue them again; `start = "sampler"` never does.
    summary = run_study(spec, open_storage(db), dataset=small_digits, n_trials=5)
    assert sum("start" in t.user_attrs for t in summary.study.trials) == 2
    data = spec.to_dict()
    data["study"].update(name="drawn", start="sampler")
    summary = run_study(spec_from_dict(data), open_storage(db), dataset=small_digits, n_trials=2)
    assert not any("start" in t.user_attrs for t in summary.study.trials)
    # A one-trial study queues one default, so no trial is left waiting.
    data["study"].update(name="single", start="defaults", trials=1)
    summary = run_study(spec_from_dict(data), open_storage(db), dataset=small_digits)
    assert [t.state for t in summary.study.trials] == [TrialState.COMPLETE]


def test_default_params_take_the_nearest_allowed_value_and_skip_a_cnn_that_cannot_fit():
    from digitune.search._space import default_params

    space = {"family": ["mlp", "cnn"], "epochs": 4, "learning_rate": {"low": 1e-2, "high": 1e-1, "log": True},
             "batch_size": [100, 20], "optimizer": ["sgd", "rmsprop"],
             "mlp": {"units": {"low": 300, "high": 900, "step": 200}, "dropout": [0.5],
                     "activation": ["tanh", "elu"]},
             "cnn": {"blocks": 2, "kernel_size": [5], "padding": "valid", "filters": {"low": 16, "high": 64}}}
    spec = spec_from_dict({"study": {"name": "d"}, "space": space})
    points = default_params(spec, (28, 28))
    assert points[0] == {"family": "mlp", "learning_rate": 1e-2, "batch_size": 20, "optimizer": "sgd",
                         "mlp_units": 300, "mlp_dropout": 0.5, "mlp_activation": "tanh"}
    assert points[1] == {"family": "cnn", "learning_rate": 1e-2, "batch_size": 20, "optimizer": "sgd",
                         "cnn_kernel_size": 5, "cnn_filters": 32}
    # Two 'valid' 5x5 blocks do not fit 8x8 images: no CNN default there.
    assert [p["family"] for p in default_params(spec, (8, 8))] == ["mlp"]


def test_tutorial_baselines_come_first_tagged(tmp_path, small_digits):
    spec = _spec(tmp_path, trials=8, baselines="tutorial")
    db = f"sqlite:///{tmp_path / 's.db'}"
    summary = run_study(spec, open_storage(db), dataset=small_digits)
    trials = sorted(summary.study.get_trials(states=FINISHED), key=lambda t: t.number)
    assert len(trials) == 8
    assert [t.user_attrs.get("baseline") for t in trials[:7]] == list(PRESET_NAMES)
    assert "baseline" not in trials[7].user_attrs
    for trial in trials[:7]:
        preset = get_preset(trial.user_attrs["baseline"], (8, 8))
        assert trial.state == TrialState.COMPLETE  # baselines are never pruned
        assert model_config_from_dict(trial.user_attrs["model_config"]) == preset.model
        assert trial.user_attrs["epochs_run"] == preset.train.epochs
    # Resuming does not queue them again.
    summary = run_study(spec, open_storage(db), dataset=small_digits, n_trials=9)
    assert sum("baseline" in t.user_attrs for t in summary.study.trials) == 7
    shown = run_cli("show", "tiny", "--storage", db, "--top", "20", cwd=tmp_path)
    assert "tutorial-cnn" in shown.stdout and "tutorial-mlp-50" in shown.stdout


def test_worker_joins_from_the_stored_spec_and_manifest_is_recorded(tmp_path, small_digits):
    spec = _spec(tmp_path, trials=2)
    db = f"sqlite:///{tmp_path / 's.db'}"
    run_study(spec, open_storage(db), dataset=small_digits)
    (tmp_path / "tiny.toml").unlink()  # the worker needs only the database
    result = run_cli("worker", "tiny", "--storage", db, "--trials", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="tiny", storage=db)
    assert len(study.get_trials(states=FINISHED)) == 3
    manifest = study.user_attrs["manifest"]
    assert manifest["keras_backend"] == "tensorflow" and manifest["device"].startswith("cpu")
    assert manifest["dataset_fingerprint"] == small_digits.info.fingerprint
    assert {"digitune", "keras", "optuna", "numpy"} <= set(manifest["packages"])
    missing = run_cli("worker", "nosuch", "--storage", db, cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no study named 'nosuch'")
