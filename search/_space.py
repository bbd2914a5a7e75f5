"""The conditional search space: a trial's parameters turned into model and training configs.

The family (MLP or CNN) is sampled first; each family's parameters are named with its
prefix (``mlp_units``, ``cnn_filters``), so Optuna sees them as conditional parameters
with their own distributions. Constants in the study file are not sampled.
"""

from __future__ import annotations

from typing import Any

import optuna

from models import CNNConfig, ConfigError, ConvBlock, MLPConfig, ModelConfig, TrainConfig

from ._spec import Choice, Param, Range, SpecError, StudySpec


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


def check_space_fits(spec: StudySpec, image_shape: tuple[int, ...]) -> None:
    """Refuse a CNN space in which no config fits the images, before any trial runs.

    Tries the CNN that shrinks the feature map least (fewest blocks, smallest kernel,
    stride and pool, 'same' padding where allowed). If even that one cannot fit,
    ``SpecError``; if only some configs cannot, those trials fail alone with their reason.
    """
    params = spec.family_space.get("cnn")
    if params is None:
        return

    def least(name: str) -> Any:
        param = params[name]
        if isinstance(param, Choice):
            if name == "padding":
                return "same" if "same" in param.choices else "valid"
            if name == "pool":
                return "none" if "none" in param.choices else param.choices[0]
            return min(param.choices)
        if isinstance(param, Range):
            return int(param.low)
        return param

    block = ConvBlock(filters=1, kernel_size=least("kernel_size"), stride=least("stride"), padding=least("padding"),
                      pool=least("pool"), pool_size=least("pool_size"))
    try:
        CNNConfig(blocks=(block,) * least("blocks")).feature_map_sizes(image_shape)
    except ConfigError as exc:
        raise SpecError(
            f"{spec.path or 'the study'}: [space.cnn] cannot fit {image_shape[0]}x{image_shape[1]} images with any "
            f"of its configs ({exc}); allow padding = \"same\", smaller kernels or fewer blocks") from exc
