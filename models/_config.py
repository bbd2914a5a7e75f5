"""Frozen, validated model and training configs.

Configs are plain data: they validate their arguments in ``__post_init__`` (before Keras
builds anything), round-trip through ``to_dict`` / ``from_dict`` so that the dict stored on
an Optuna trial rebuilds the same model, and import nothing heavier than the standard
library.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

from ._knobs import HIGHEST, ConfigError, Knob, knob, knobs_of, validate

ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu", "elu")
INITIALIZERS = ("glorot_uniform", "he_normal", "random_normal")
PADDINGS = ("valid", "same")
POOLINGS = ("max", "avg", "none")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "one-cycle")  # the learning rate over a trial's epochs
LR_SCALINGS = ("none", "linear", "sqrt")  # how the learning rate follows the batch size


def _from_dict(cls, data: dict[str, Any]):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names - {"family"})
    if unknown:
        raise ConfigError(
            f"{cls.__name__}: unknown key(s) {', '.join(unknown)}; "
            f"expected some of {', '.join(sorted(names))}"
        )
    return cls(**{k: v for k, v in data.items() if k in names})


def _int(default: int, minimum: int, **options: Any) -> Any:
    return knob(default, "int", low=minimum, **options)


def _dropout(**options: Any) -> Any:
    return knob(0.0, "float", low=0.0, high=1.0, high_open=True, **options)


def _choice(default: str, choices: tuple[str, ...], **options: Any) -> Any:
    return knob(default, "str", choices=choices, **options)


@dataclass(frozen=True)
class MLPConfig:
    """A multilayer perceptron: ``hidden_layers`` Dense layers of ``units`` each."""

    family: ClassVar[str] = "mlp"

    hidden_layers: int = _int(1, 0, start=2)
    units: int = _int(50, 1, start=256)
    dropout: float = _dropout(start=0.2)
    activation: str = _choice("relu", ACTIVATIONS)
    initializer: str = _choice("glorot_uniform", INITIALIZERS)
    batch_norm: bool = knob(False, "bool")

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def search_knobs(cls) -> dict[str, Knob]:
        """The parameters a study's ``[space.mlp]`` names, as ``Knob`` declarations."""
        return knobs_of(cls)

    @classmethod
    def from_search(cls, values: dict[str, Any]) -> "MLPConfig":
        """The config for one trial's values of ``search_knobs``."""
        return cls(**values)

    def search_values(self) -> dict[str, Any]:
        """This config as values of ``search_knobs`` (the inverse of ``from_search``)."""
        return {name: getattr(self, name) for name in self.search_knobs()}

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MLPConfig":
        return _from_dict(cls, data)


@dataclass(frozen=True)
class ConvBlock:
    """``convs`` convolutions, optionally followed by a pooling layer of ``pool_size`` (stride = size).

    The first convolution has ``stride``; the others stride 1 (VGG's conv-conv-pool block).
    """

    filters: int = _int(25, 1, start=32)
    convs: int = _int(1, 1, high=4)
    kernel_size: int = _int(5, 1, space=3)
    stride: int = _int(1, 1)
    padding: str = _choice("valid", PADDINGS, space="same")
    activation: str = _choice("relu", ACTIVATIONS, searchable=False)  # searched as the CNN's activation
    pool: str = _choice("max", POOLINGS)
    pool_size: int = _int(2, 1)

    def __post_init__(self) -> None:
        validate(self)

    @property
    def strides(self) -> tuple[int, ...]:
        """Each convolution's stride, in order: the block's, then 1."""
        return (self.stride,) + (1,) * (self.convs - 1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ConvBlock":
        return _from_dict(cls, data)


# A study searches a CNN as ``blocks`` equal ConvBlocks; this knob is their number.
_BLOCKS = Knob("int", low=1, space=2, start=2)


@dataclass(frozen=True)
class CNNConfig:
    """Convolution blocks, then a Dense head of ``dense_units`` (0 for none), then 10 classes."""

    family: ClassVar[str] = "cnn"

    blocks: tuple[ConvBlock, ...] = field(default_factory=lambda: (ConvBlock(),))
    dense_units: int = _int(50, 0, start=128)
    dropout: float = _dropout(start=0.25)
    activation: str = _choice("relu", ACTIVATIONS)
    initializer: str = _choice("glorot_uniform", INITIALIZERS)
    batch_norm: bool = knob(False, "bool")

    def __post_init__(self) -> None:
        blocks = tuple(
            b if isinstance(b, ConvBlock) else ConvBlock.from_dict(b) for b in self.blocks
        )
        object.__setattr__(self, "blocks", blocks)
        if not blocks:
            raise ConfigError("CNNConfig: blocks must hold at least one ConvBlock. Received: blocks=()")
        validate(self)

    @classmethod
    def search_knobs(cls) -> dict[str, Knob]:
        """``[space.cnn]``'s parameters: the number of blocks, one block's, then the head's."""
        return {"blocks": _BLOCKS, **knobs_of(ConvBlock), **knobs_of(cls)}

    @classmethod
    def from_search(cls, values: dict[str, Any]) -> "CNNConfig":
        """``values["blocks"]`` equal blocks of the block values, sharing the CNN's activation."""
        block = ConvBlock(activation=values["activation"], **{k: values[k] for k in knobs_of(ConvBlock)})
        head = {k: values[k] for k in knobs_of(cls)}
        return cls(blocks=(block,) * values["blocks"], **head)

    def search_values(self) -> dict[str, Any]:
        """This config as values of ``search_knobs``: its first block stands for every block."""
        first = self.blocks[0]
        return {"blocks": len(self.blocks), **{k: getattr(first, k) for k in knobs_of(ConvBlock)},
                **{k: getattr(self, k) for k in knobs_of(type(self))}}

    def feature_map_sizes(self, image_shape: tuple[int, ...]) -> list[tuple[int, int]]:
        """The (height, width) after every conv and pool layer; raises ConfigError below 1×1.

        Uses output = floor((N − F + 2P) / S) + 1, with P = 0 for ``valid`` and
        ``same`` giving ceil(N / S), as Keras computes it.
        """
        h, w = int(image_shape[0]), int(image_shape[1])
        sizes = []
        for i, block in enumerate(self.blocks, start=1):
            for stride in block.strides:
                if block.padding == "same":
                    h, w = -(-h // stride), -(-w // stride)
                else:
                    h = (h - block.kernel_size) // stride + 1
                    w = (w - block.kernel_size) // stride + 1
                if h < 1 or w < 1:
                    raise ConfigError(
                        f"CNNConfig: conv block {i} (kernel {block.kernel_size}, stride {block.stride}, "
                        f"padding {block.padding}, convs {block.convs}) shrinks the feature map below 1x1 on "
                        f"{image_shape[0]}x{image_shape[1]} images; use a smaller kernel, "
                        f"padding='same', fewer convs or blocks, or larger images"
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
MODEL_CONFIGS: dict[str, type] = {"mlp": MLPConfig, "cnn": CNNConfig}  # each family's config class


def model_config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Rebuild an ``MLPConfig`` or ``CNNConfig`` from its ``to_dict()`` form."""
    family = data.get("family")
    if family in MODEL_CONFIGS:
        return MODEL_CONFIGS[family].from_dict(data)
    raise ConfigError(f"model config: invalid value for family, expected 'mlp' or 'cnn'. Received: family={family!r}")


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained: optimizer, learning rate (schedule, scaling), batch size, epochs,
    regularization (weight decay, label smoothing), augmentation, and the seed."""

    optimizer: str = _choice("adam", OPTIMIZERS)
    learning_rate: float = knob(1e-3, "float", low=0.0, high=10.0, low_open=True, start=3e-3)
    batch_size: int = _int(128, 1, start=32)
    epochs: int = _int(5, 1, start=HIGHEST)  # the pruner stops a model that falls behind
    schedule: str = _choice("constant", SCHEDULES, start="one-cycle")
    lr_scaling: str = _choice("none", LR_SCALINGS)  # from batches of 128 (models._recipe)
    weight_decay: float = knob(0.0, "float", low=0.0, high=1.0, high_open=True, start=1e-2)  # decoupled, AdamW's
    label_smoothing: float = knob(0.0, "float", low=0.0, high=0.5, high_open=True, start=0.1)
    translate: float = knob(0.0, "float", low=0.0, high=0.5)  # augmentation: a fraction of the height and width
    rotate: float = knob(0.0, "float", low=0.0, high=0.25)  # augmentation: a fraction of a full turn
    zoom: float = knob(0.0, "float", low=0.0, high=0.5)  # augmentation: a fraction of the size, in or out
    seed: int = _int(128, 0, searchable=False)
    early_stopping_patience: int = _int(0, 0, searchable=False)

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def search_knobs(cls) -> dict[str, Knob]:
        """The training parameters a study's ``[space]`` names, for every family."""
        return knobs_of(cls)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        return _from_dict(cls, data)
