"""Warm start: an earlier study's best configurations, moved into this study's space, run first."""

from __future__ import annotations

import optuna
import pytest

from conftest import run_cli, write_study
from digitune.models import CNNConfig, ConvBlock, MLPConfig, TrainConfig
from digitune.search import spec_from_dict
from digitune.search._space import move_into_space

SPACE = {"study": {"name": "b"}, "space": {
    "family": ["mlp", "cnn"], "epochs": {"low": 3, "high": 12}, "batch_size": [32, 64, 128],
    "learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}, "schedule": ["constant", "cosine"],
    "mlp": {"units": {"low": 16, "high": 256}, "hidden_layers": 2, "dropout": {"low": 0.0, "high": 0.3}},
    "cnn": {"blocks": {"low": 1, "high": 2}, "filters": [8, 16], "kernel_size": 3, "padding": "same"}}}


def test_a_configuration_moves_into_the_space():
    spec = spec_from_dict(SPACE)
    model = MLPConfig(hidden_layers=4, units=1000, dropout=0.5)
    train = TrainConfig(learning_rate=0.05, batch_size=256, epochs=30, schedule="one-cycle")
    params = move_into_space(model, train, spec, (8, 8))
    assert params == {"family": "mlp", "epochs": 12, "batch_size": 128, "learning_rate": 1e-2,
                      "schedule": "constant", "mlp_units": 256, "mlp_dropout": 0.3}  # constants are not params
    cnn = CNNConfig(blocks=(ConvBlock(filters=25, kernel_size=5, pool="max"), ConvBlock(filters=25, kernel_size=4),
                            ConvBlock(filters=3)), dense_units=50)
    moved = move_into_space(cnn, TrainConfig(), spec, (8, 8))
    assert (moved["cnn_blocks"], moved["cnn_filters"]) == (2, 16)  # three blocks: the space's most; 25 -> 16
    only_cnn = spec_from_dict({**SPACE, "space": {**SPACE["space"], "family": "cnn"}})
    assert move_into_space(model, train, only_cnn, (8, 8)) is None  # a family this study does not search


def test_run_warm_starts_from_an_earlier_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    first = write_study(tmp_path, "first", trials=4, family='"mlp"', pruner="none")
    result = run_cli("run", str(first), "--storage", url, "--workers", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    earlier = optuna.load_study(study_name="first", storage=url)
    best = sorted((t for t in earlier.trials if t.values), key=lambda t: -t.values[0])

    second = write_study(tmp_path, "second", trials=3, family='["mlp", "cnn"]', pruner="none")
    second.write_text(second.read_text().replace("units = {low = 16, high = 64, log = true}",
                                                 "units = {low = 32, high = 48}"))
    result = run_cli("run", str(second), "--storage", url, "--workers", "1", "--warm-start", "first", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "warm start from first:" in result.stderr
    trials = optuna.load_study(study_name="second", storage=url).trials
    warm = [t for t in trials if "warm_start" in t.user_attrs]
    assert [t.number for t in warm] == list(range(len(warm))) and 1 <= len(warm) <= 3  # queued first
    for trial in warm:
        origin = next(t for t in best if f"first:{t.number}" == trial.user_attrs["warm_start"])
        assert trial.params["mlp_units"] == min(max(origin.params["mlp_units"], 32), 48)
        assert trial.params["learning_rate"] == pytest.approx(origin.params["learning_rate"])
    assert warm[0].user_attrs["warm_start"] == f"first:{best[0].number}"  # the best comes first
    shown = run_cli("show", "second", "--storage", url, "--top", "10", cwd=tmp_path)
    assert shown.returncode == 0 and f"warm first:{best[0].number}" in shown.stdout, shown.stdout


def test_a_mistyped_warm_start_changes_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    path = write_study(tmp_path, "x", trials=1, family='"mlp"', pruner="none")
    assert run_cli("run", str(path), "--storage", url, "--workers", "1", cwd=tmp_path).returncode == 0
    before = _snapshot(url)
    other = write_study(tmp_path, "y", trials=1, family='"mlp"', pruner="none")
    result = run_cli("run", str(other), "--storage", url, "--workers", "1", "--warm-start", "nope", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: no study named 'nope'") and "studies: x" in lines[-1], result.stderr
    assert optuna.get_all_study_names(url) == ["x"] and _snapshot(url) == before


def _snapshot(url: str) -> list:
    study = optuna.load_study(study_name="x", storage=url)
    return [study.user_attrs, [(t.number, t.state, t.params, t.values, t.user_attrs) for t in study.trials]]
