"""Frozen, validated model and training configs.

Configs are plain data: they validate their arguments in ``__post_init__`` (before Keras
builds anything), round-trip through ``to_dict`` / ``from_dict`` so that the dict stored on
an Optuna trial rebuilds the same model, and import nothing heavier than the standard
library.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu", "elu")
INITIALIZERS = ("glorot_uniform", "he_normal", "random_normal")
PADDINGS = ("valid", "same")
POOLINGS = ("max", "avg", "none")
OPTIMIZERS = ("adam", "sgd", "rmsprop")


class ConfigError(ValueError):
    """A model or training config that cannot be built; the message says how to fix it."""


def _check_int(owner: str, name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(
            f"{owner}: invalid value for {name}, expected an integer >= {minimum}. "
            f"Received: {name}={value!r}"
        )


def _check_float(owner: str, name: str, value: Any, *, low: float, high: float,
                 high_inclusive: bool = False, low_inclusive: bool = True) -> None:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and math.isfinite(value)
        and (value >= low if low_inclusive else value > low)
        and (value <= high if high_inclusive else value < high)
    )
    if not ok:
        left = "[" if low_inclusive else "("
        right = "]" if high_inclusive else ")"
        raise ConfigError(
            f"{owner}: invalid value for {name}, expected a number in {left}{low}, {high}{right}. "
            f"Received: {name}={value!r}"
        )


def _check_choice(owner: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(
            f"{owner}: invalid value for {name}, expected one of {', '.join(choices)}. "
            f"Received: {name}={value!r}"
        )


def _from_dict(cls, data: dict[str, Any]):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names - {"family"})
    if unknown:
        raise ConfigError(
            f"{cls.__name__}: unknown key(s) {', '.join(unknown)}; "
            f"expected some of {', '.join(sorted(names))}"
        )
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class MLPConfig:
    """A multilayer perceptron: ``hidden_layers`` Dense layers of ``units`` each."""

    family: ClassVar[str] = "mlp"

    hidden_layers: int = 1
    units: int = 50
    dropout: float = 0.0
    activation: str = "relu"
    initializer: str = "glorot_uniform"
    batch_norm: bool = False

    def __post_init__(self) -> None:
        _check_int("MLPConfig", "hidden_layers", self.hidden_layers, minimum=0)
        _check_int("MLPConfig", "units", self.units, minimum=1)
        _check_float("MLPConfig", "dropout", self.dropout, low=0.0, high=1.0)
        _check_choice("MLPConfig", "activation", self.activation, ACTIVATIONS)
        _check_choice("MLPConfig", "initializer", self.initializer, INITIALIZERS)
        if not isinstance(self.batch_norm, bool):
            raise ConfigError(f"MLPConfig: batch_norm must be true or false. Received: {self.batch_norm!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MLPConfig":
        return _from_dict(cls, data)


@dataclass(frozen=True)
class ConvBlock:
    """One convolution, optionally followed by a pooling layer of ``pool_size`` (stride = size)."""

    filters: int = 25
    kernel_size: int = 5
    stride: int = 1
    padding: str = "valid"
    activation: str = "relu"
    pool: str = "max"
    pool_size: int = 2

    def __post_init__(self) -> None:
        _check_int("ConvBlock", "filters", self.filters, minimum=1)
        _check_int("ConvBlock", "kernel_size", self.kernel_size, minimum=1)
        _check_int("ConvBlock", "stride", self.stride, minimum=1)
        _check_choice("ConvBlock", "padding", self.padding, PADDINGS)
        _check_choice("ConvBlock", "activation", self.activation, ACTIVATIONS)
        _check_choice("ConvBlock", "pool", self.pool, POOLINGS)
        _check_int("ConvBlock", "pool_size", self.pool_size, minimum=1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ConvBlock":
        return _from_dict(cls, data)


@dataclass(frozen=True)
class CNNConfig:
    """Convolution blocks, then a Dense head of ``dense_units`` (0 for none), then 10 classes."""

    family: ClassVar[str] = "cnn"

    blocks: tuple[ConvBlock, ...] = field(default_factory=lambda: (ConvBlock(),))
    dense_units: int = 50
    dropout: float = 0.0
    activation: str = "relu"
    initializer: str = "glorot_uniform"
    batch_norm: bool = False

    def __post_init__(self) -> None:
        blocks = tuple(
            b if isinstance(b, ConvBlock) else ConvBlock.from_dict(b) for b in self.blocks
        )
        object.__setattr__(self, "blocks", blocks)
        if not blocks:
            raise ConfigError("CNNConfig: blocks must hold at least one ConvBlock. Received: blocks=()")
        _check_int("CNNConfig", "dense_units", self.dense_units, minimum=0)
        _check_float("CNNConfig", "dropout", self.dropout, low=0.0, high=1.0)
        _check_choice("CNNConfig", "activation", self.activation, ACTIVATIONS)
        _check_choice("CNNConfig", "initializer", self.initializer, INITIALIZERS)
        if not isinstance(self.batch_norm, bool):
            raise ConfigError(f"CNNConfig: batch_norm must be true or false. Received: {self.batch_norm!r}")

    def feature_map_sizes(self, image_shape: tuple[int, ...]) -> list[tuple[int, int]]:
        """The (height, width) after every conv and pool layer; raises ConfigError below 1×1.

        Uses output = floor((N − F + 2P) / S) + 1, with P = 0 for ``valid`` and
        ``same`` giving ceil(N / S), as Keras computes it.
        """
        h, w = int(image_shape[0]), int(image_shape[1])
        sizes = []
        for i, block in enumerate(self.blocks, start=1):
            if block.padding == "same":
                h, w = -(-h // block.stride), -(-w // block.stride)
            else:
                h = (h - block.kernel_size) // block.stride + 1
                w = (w - block.kernel_size) // block.stride + 1
            if h < 1 or w < 1:
                raise ConfigError(
                    f"CNNConfig: conv block {i} (kernel {block.kernel_size}, stride {block.stride}, "
                    f"padding {block.padding}) shrinks the feature map below 1x1 on "
                    f"{image_shape[0]}x{image_shape[1]} images; use a smaller kernel, "
                    f"padding='same', fewer blocks or larger images"
                )
            sizes.append((h, w))
            if block.pool != "none":
                h, w = h // block.pool_size, w // block.pool_size
                if h < 1 or w < 1:
                    raise ConfigError(
                        f"CNNConfig: the {block.pool_size}x{block.pool_size} pooling after conv block {i} "
                        f"shrinks the {sizes[-1][0]}x{sizes[-1][1]} feature map below 1x1; "
                        f"use pool='none', a smaller pool_size or fewer blocks"
                    )
                sizes.append((h, w))
        return sizes

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["blocks"] = [b.to_dict() for b in self.blocks]
        return {"family": self.family, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CNNConfig":
        data = dict(data)
        if "blocks" in data:
            data["blocks"] = tuple(ConvBlock.from_dict(b) for b in data["blocks"])
        return _from_dict(cls, data)


ModelConfig = Union[MLPConfig, CNNConfig]


def model_config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Rebuild an ``MLPConfig`` or ``CNNConfig`` from its ``to_dict()`` form."""
    family = data.get("family")
    if family == "mlp":
        return MLPConfig.from_dict(data)
    if family == "cnn":
        return CNNConfig.from_dict(data)
    raise ConfigError(f"model config: invalid value for family, expected 'mlp' or 'cnn'. Received: family={family!r}")


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained: optimizer, learning rate, batch size, epochs and the seed."""

    optimizer: str = "adam"
    learning_rate: float = 1e-3
    batch_size: int = 128
    epochs: int = 5
    seed: int = 128
    early_stopping_patience: int = 0

    def __post_init__(self) -> None:
        _check_choice("TrainConfig", "optimizer", self.optimizer, OPTIMIZERS)
        _check_float("TrainConfig", "learning_rate", self.learning_rate, low=0.0, high=10.0,
                     low_inclusive=False, high_inclusive=True)
        _check_int("TrainConfig", "batch_size", self.batch_size, minimum=1)
        _check_int("TrainConfig", "epochs", self.epochs, minimum=1)
        _check_int("TrainConfig", "seed", self.seed, minimum=0)
        _check_int("TrainConfig", "early_stopping_patience", self.early_stopping_patience, minimum=0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        return _from_dict(cls, data)
