"""Study files: parsing, validation messages, round trips, the search space, storage settings."""

from __future__ import annotations


import optuna
import pytest

from digitune.models import CNNConfig, MLPConfig
from digitune.search import (
    DEFAULT_STORAGE,
    SpecError,
    load_spec,
    redact,
    resolve_storage_url,
    sample_configs,
    spec_from_dict,
)
from digitune.search._spec import Choice, Range
from conftest import REPO

STUDIES = REPO / "studies"


@pytest.mark.parametrize("name", ["quickstart.toml", "digits.toml"])
def test_shipped_study_files_parse(name):
    spec = load_spec(STUDIES / name)
    assert spec.families() == ("mlp", "cnn")
    assert spec.sampler == "tpe" and spec.pruner == "hyperband"
    assert spec.directions == ("maximize",) and not spec.is_multi_objective
    assert spec.data.source == "digits" and spec.data.validation_split == 0.3 and spec.data.seed == 128
    assert isinstance(spec.space["learning_rate"], Range) and spec.space["learning_rate"].log
    assert set(spec.family_space) == {"mlp", "cnn"}


@pytest.mark.parametrize(("name", "shape"), [("quickstart.toml", (8, 8)), ("digits.toml", (8, 8)),
                                             ("fashion.toml", (28, 28)), ("fashion-long.toml", (28, 28)),
                                             ("small-digits.toml", (8, 8))])
def test_every_shipped_study_starts_from_configs_that_build(name, shape):
    from digitune.search._space import default_params, sample_configs

    spec = load_spec(STUDIES / name)
    starts = default_params(spec, shape)
    assert [p.get("family", spec.families()[0]) for p in starts] == list(spec.families())  # one per family
    for params in starts:
        model, train = sample_configs(optuna.trial.FixedTrial(params), spec)
        if isinstance(model, CNNConfig):
            model.feature_map_sizes(shape)
        assert train.epochs == spec.max_epochs
    assert load_spec(STUDIES / "small-digits.toml").is_multi_objective
    assert load_spec(STUDIES / "fashion.toml").data.source == "fashion-mnist"


def test_quickstart_values():
    spec = load_spec(STUDIES / "quickstart.toml")
    assert spec.name == "quickstart"
    assert spec.trials >= 10
    assert spec.max_epochs == 12
    assert spec.space["batch_size"] == Choice((32, 64, 128))
    units = spec.family_space["mlp"]["units"]
    assert units == Range(16, 256, log=True) and units.is_int
    assert not spec.family_space["mlp"]["dropout"].is_int


def test_round_trip(tmp_path):
    spec = load_spec(STUDIES / "digits.toml")
    again = spec_from_dict(spec.to_dict(), source=spec.path)
    assert again == spec
    assert again.search_definition() == spec.search_definition()


def test_convs_a_block_is_searched_for_every_block_and_built(tmp_path):
    from digitune.models import build_model
    from digitune.search._space import default_params, sample_configs

    path = tmp_path / "s.toml"
    path.write_text('[study]\nname = "c"\n[space]\nfamily = "cnn"\nepochs = 1\n'
                    '[space.cnn]\nblocks = 2\nconvs = [1, 2]\nfilters = 4\npadding = "same"\n')
    spec = load_spec(path)
    assert spec.family_space["cnn"]["convs"] == Choice((1, 2))
    start = default_params(spec, (8, 8))[0]
    assert start["cnn_convs"] == 1  # the knob's start: one conv, as before the knob
    model, _ = sample_configs(optuna.trial.FixedTrial({**start, "cnn_convs": 2}), spec)
    assert [b.convs for b in model.blocks] == [2, 2]
    convs = [layer for layer in build_model(model, (8, 8)).layers if type(layer).__name__ == "Conv2D"]
    assert len(convs) == 4


def test_unused_family_tables_are_dropped(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[study]\nname = "m"\n[space]\nfamily = "mlp"\n[space.cnn]\nblocks = 9\n')
    spec = load_spec(path)
    assert spec.families() == ("mlp",)
    assert set(spec.family_space) == {"mlp"}


BAD = [
    ("[study\nname = 'x'", r"bad\.toml: not valid TOML"),
    ("[study]\nname = 'x'\ntrails = 3", r"bad\.toml: unknown key \[study\] 'trails'; expected one of .*trials"),
    ("[study]\nname = 'x'\n[space.mlp]\nwidth = 5", r"unknown key \[space\.mlp\] 'width'"),
    ("[study]\nname = 'x'\n[space]\ndepth = 5", r"unknown key \[space\] 'depth'.*\[space\.mlp\]"),
    ("[study]\nname = 'x'\n[space.mlp]\nunits = {low = 500, high = 50}",
     r"space\.mlp\.units: `low <= high` must hold, but got \(low=500, high=50\)"),
    ("[study]\nname = 'x'\n[space]\nbatch_size = []", r"space\.batch_size is an empty list of choices"),
    ("[study]\nname = 'x'\nsampler = 'bayes'", r"study\.sampler must be one of tpe, random, grid, qmc, cmaes, gp, nsga2, got 'bayes'"),
    ("[study]\nname = 'x'\npruner = 'asha'", r"study\.pruner must be one of hyperband, median, successive-halving, percentile, threshold, none, got 'asha'"),
    ("[study]\nname = 'x'\nfidelity = 'seconds'", r"study\.fidelity must be one of epochs, time, got 'seconds'"),
    ("[study]\ntrials = 3", r"\[study\] name is required"),
    ("[study]\nname = 'x'\ntrials = 0", r"study\.trials must be an integer >= 1, got 0"),
    ("[study]\nname = 'x'\n[space.mlp]\nactivation = ['relu', 'swish']",
     r"space\.mlp\.activation must be one of relu, tanh, sigmoid, leaky_relu, elu, got 'swish'"),
    ("[study]\nname = 'x'\n[space.mlp]\ndropout = {low = 0.0, high = 0.3, log = true}",
     r"space\.mlp\.dropout: a log range needs low > 0"),
    ("[study]\nname = 'x'\n[space]\nlearning_rate = {low = 0.0, high = 0.1}",
     r"space\.learning_rate must be a number in \(0, 10\], got 0\.0"),
    ("[study]\nname = 'x'\n[space.mlp]\ndropout = 1.5", r"space\.mlp\.dropout must be a number in \[0, 1\), got 1\.5"),
    ("[study]\nname = 'x'\n[space]\nepochs = 'ten'", r"space\.epochs expects an integer value, got 'ten'"),
    ("[study]\nname = 'x'\n[space]\nepochs = {low = 1.5, high = 3}", r"space\.epochs expects an integer value"),
    ("[study]\nname = 'x'\n[space.cnn]\nunits = 5", r"unknown key \[space\.cnn\] 'units'"),
    ("[study]\nname = 'x'\n[space]\nfamily = ['mlp', 'rnn']", r"space\.family must be one of mlp, cnn, got 'rnn'"),
    ("[study]\nname = 'x'\n[data]\nvalidation_split = 1.2", r"data\.validation_split must be a number between 0"),
    ("[study]\nname = 'x'\n[data]\nfolder = 'y'", r"unknown key \[data\] 'folder'"),
    ("[study]\nname = 'x'\n[space.mlp]\nunits = {low = 1}", r"space\.mlp\.units range needs both low and high"),
    ("[study]\nname = 'x'\n[space]\nbatch_size = [32, 32]", r"space\.batch_size lists a choice twice"),
    # numbers the libraries reject, refused before anything is stored
    ("[study]\nname = 'x'\nseed = 4294967296", r"study\.seed must be an integer from 0 to 4294967295, got 4294967296"),
    ("[study]\nname = 'x'\nseed = -1", r"study\.seed must be an integer from 0 to 4294967295, got -1"),
    ("[study]\nname = 'x'\n[data]\nseed = 4294967296", r"data\.seed must be an integer from 0 to 4294967295"),
    ("[study]\nname = 'x'\n[space.mlp]\nunits = {low = 16, high = 64, step = 0.5}",
     r"space\.mlp\.units expects integer ends and step, got \(low=16, high=64, step=0\.5\)"),
    ("[study]\nname = 'x'\nsampler = 'grid'\nsampler_options = {points = 0}",
     r"study\.sampler_options\.points must be an integer >= 1, got 0"),
    (f"[study]\nname = '{'n' * 513}'", r"\[study\] name is 513 characters long; the storage keeps names of at most 512"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_study_files_name_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SpecError, match=message) as info:
        load_spec(path)
    assert str(path) in str(info.value)


def test_missing_study_file(tmp_path):
    with pytest.raises(SpecError, match=r"nope\.toml: no such study file"):
        load_spec(tmp_path / "nope.toml")


def _ask(spec, family):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial({"family": family})
    trial = study.ask()
    return trial, sample_configs(trial, spec)


def test_sampled_configs_are_valid_and_conditional():
    spec = load_spec(STUDIES / "digits.toml")
    trial, (model, train) = _ask(spec, "mlp")
    assert isinstance(model, MLPConfig)
    assert set(trial.params) >= {"family", "epochs", "learning_rate", "batch_size", "mlp_units"}
    assert not any(name.startswith("cnn_") for name in trial.params)
    assert 5 <= train.epochs <= 30 and train.batch_size in (16, 32, 64, 128)
    assert train.seed == spec.seed + trial.number

    trial, (model, _) = _ask(spec, "cnn")
    assert isinstance(model, CNNConfig)
    assert 1 <= len(model.blocks) <= 3 and len(set(model.blocks)) == 1
    assert not any(name.startswith("mlp_") for name in trial.params)
    assert trial.params["cnn_dense_units"] % 16 == 0
    assert "cnn_stride" not in trial.params  # a constant is not sampled


def test_the_largest_seed_gives_every_trial_a_seed_numpy_takes():
    spec = spec_from_dict({"study": {"name": "s", "seed": 2**32 - 1}})
    assert spec.seed == 2**32 - 1 and spec_from_dict({"study": {"name": "n" * 512}}).name == "n" * 512
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seeds = []
    for _ in range(2):
        trial = study.ask()
        seeds.append(sample_configs(trial, spec)[1].seed)
        study.tell(trial, 0.5)
    assert seeds == [2**32 - 1, 0]  # wrapped within 0 .. 2**32 - 1, as keras.utils.set_random_seed wants


def test_storage_precedence(monkeypatch):
    monkeypatch.delenv("DIGITUNE_STORAGE", raising=False)
    assert resolve_storage_url(None) == DEFAULT_STORAGE == "sqlite:///studies/digitune.db"
    monkeypatch.setenv("DIGITUNE_STORAGE", "sqlite:///env.db")
    assert resolve_storage_url(None) == "sqlite:///env.db"
    assert resolve_storage_url("sqlite:///cli.db") == "sqlite:///cli.db"
    assert resolve_storage_url("some/file.db") == "sqlite:///some/file.db"


def test_redact_hides_passwords():
    assert redact("postgresql+psycopg://alice:s3cret@db.example:5432/studies") == \
        "postgresql+psycopg://alice:***@db.example:5432/studies"
    assert redact("sqlite:///studies/digitune.db") == "sqlite:///studies/digitune.db"


def test_the_space_is_derived_from_the_config_knobs():
    """Each config field declared with ``knob`` is a study-file key, with its bounds and its start."""
    from digitune.models import MODEL_CONFIGS, TrainConfig

    from digitune.search._factories import grid_search_space
    from digitune.search._space import default_params

    spec = spec_from_dict({"study": {"name": "k"}})
    assert set(spec.space) == {"family", *TrainConfig.search_knobs()}
    for family, config in MODEL_CONFIGS.items():
        assert list(spec.family_space[family]) == list(config.search_knobs())
    # an out-of-bounds value is refused with the knob's own bounds
    with pytest.raises(SpecError, match=r"space\.mlp\.hidden_layers must be an integer >= 0, got -1"):
        spec_from_dict({"study": {"name": "k"}, "space": {"mlp": {"hidden_layers": -1}}})
    # every knob searched: the grid names each, and the start moves each knob's start into the space
    wide = spec_from_dict({"study": {"name": "k"}, "space": {
        "batch_size": [16, 64], "mlp": {"units": {"low": 16, "high": 512}, "dropout": {"low": 0.0, "high": 0.5}}}})
    grid = grid_search_space(wide)
    assert {"batch_size", "mlp_units", "mlp_dropout", "family"} <= set(grid)
    start = default_params(wide, (8, 8))[0]
    assert (start["batch_size"], start["mlp_units"], start["mlp_dropout"]) == (
        16, MODEL_CONFIGS["mlp"].search_knobs()["units"].start, 0.2)
