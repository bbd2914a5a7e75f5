"""The conditional search space: a trial's parameters turned into model and training configs.

The family (MLP or CNN) is sampled first; each family's parameters are named with its
prefix (``mlp_units``, ``cnn_filters``), so Optuna sees them as conditional parameters
with their own distributions. Constants in the study file are not sampled.
"""

from __future__ import annotations

from typing import Any

import optuna

from models import CNNConfig, ConvBlock, MLPConfig, ModelConfig, TrainConfig

from ._spec import Choice, Param, Range, StudySpec


def _suggest(trial: optuna.Trial, name: str, param: Param) -> Any:
    if isinstance(param, Choice):
        return trial.suggest_categorical(name, list(param.choices))
    if isinstance(param, Range):
        if param.is_int:
            return trial.suggest_int(name, int(param.low), int(param.high), step=int(param.step or 1), log=param.log)
        return trial.suggest_float(name, param.low, param.high, step=param.step, log=param.log)
    return param


def sample_configs(trial: optuna.Trial, spec: StudySpec) -> tuple[ModelConfig, TrainConfig]:
    """The model and training configs for ``trial`` from the study's search space."""
    family = _suggest(trial, "family", spec.space["family"])
    values = {name: _suggest(trial, f"{family}_{name}", param) for name, param in spec.family_space[family].items()}
    if family == "mlp":
        model: ModelConfig = MLPConfig(**values)
    else:
        block = ConvBlock(
            filters=values["filters"], kernel_size=values["kernel_size"], stride=values["stride"],
            padding=values["padding"], activation=values["activation"], pool=values["pool"],
            pool_size=values["pool_size"],
        )
        model = CNNConfig(
            blocks=(block,) * values["blocks"], dense_units=values["dense_units"], dropout=values["dropout"],
            activation=values["activation"], initializer=values["initializer"], batch_norm=values["batch_norm"],
        )
    train = TrainConfig(
        optimizer=_suggest(trial, "optimizer", spec.space["optimizer"]),
        learning_rate=float(_suggest(trial, "learning_rate", spec.space["learning_rate"])),
        batch_size=_suggest(trial, "batch_size", spec.space["batch_size"]),
        epochs=_suggest(trial, "epochs", spec.space["epochs"]),
        seed=spec.seed + trial.number,
    )
    return model, train
