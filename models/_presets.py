"""The seven hand-tuned configurations of the classic Keras digits tutorial, as named presets.

The tutorial trains on 28x28 images: a 784-50-10 MLP, then wider, deeper, with dropout,
longer, deep and wide, and finally a small CNN. Every preset keeps the tutorial's Adam,
batch 128 and softmax output.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._config import CNNConfig, ConfigError, ConvBlock, MLPConfig, ModelConfig, TrainConfig


@dataclass(frozen=True)
class Preset:
    name: str
    model: ModelConfig
    train: TrainConfig
    description: str


def _mlp(layers: int, units: int, dropout: float, epochs: int) -> tuple[MLPConfig, TrainConfig]:
    return (
        MLPConfig(hidden_layers=layers, units=units, dropout=dropout, activation="relu"),
        TrainConfig(optimizer="adam", learning_rate=1e-3, batch_size=128, epochs=epochs),
    )


_MLP_PRESETS = {
    "tutorial-mlp-50": (_mlp(1, 50, 0.0, 5), "784-50-10 MLP, relu, Adam, batch 128, 5 epochs"),
    "tutorial-wide-500": (_mlp(1, 500, 0.0, 5), "one hidden layer of 500 units, 5 epochs"),
    "tutorial-deep-5x50": (_mlp(5, 50, 0.0, 5), "five hidden layers of 50 units, 5 epochs"),
    "tutorial-deep-dropout": (_mlp(5, 50, 0.2, 5), "five layers of 50 with dropout 0.2, 5 epochs"),
    "tutorial-deep-50-epochs": (_mlp(5, 50, 0.2, 50), "five layers of 50 with dropout 0.2, 50 epochs"),
    "tutorial-deep-wide-5x500": (_mlp(5, 500, 0.2, 25), "five layers of 500 with dropout 0.2, 25 epochs"),
}

PRESET_NAMES = (*_MLP_PRESETS, "tutorial-cnn")


def _tutorial_cnn(image_shape: tuple[int, ...]) -> Preset:
    kernels = (5, 5, 4)
    pools = ("max", "max", "none")
    valid = CNNConfig(
        blocks=tuple(ConvBlock(filters=25, kernel_size=k, padding="valid", pool=p) for k, p in zip(kernels, pools)),
        dense_units=50,
    )
    description = "Conv 25@5x5 -> pool 2x2 -> Conv 25@5x5 -> pool 2x2 -> Conv 25@4x4 -> Dense 50 -> 10, 5 epochs"
    try:
        valid.feature_map_sizes(image_shape)
        model = valid
    except ConfigError:
        # 8x8 digits: a 5x5 'valid' kernel leaves 4x4, pooled to 2x2, and the second 5x5 kernel
        # cannot fit. 'same' padding keeps the tutorial's layers and kernels: 8 -> 4 -> 2 -> 2.
        model = CNNConfig(
            blocks=tuple(ConvBlock(filters=25, kernel_size=k, padding="same", pool=p) for k, p in zip(kernels, pools)),
            dense_units=50,
        )
        model.feature_map_sizes(image_shape)
        description += (
            f"; adapted to {image_shape[0]}x{image_shape[1]} images with padding='same' on every "
            "convolution, since 'valid' 5x5 kernels do not fit"
        )
    return Preset("tutorial-cnn", model, TrainConfig(epochs=5, batch_size=128), description)


def get_preset(name: str, image_shape: tuple[int, ...] = (28, 28)) -> Preset:
    """The tutorial preset ``name`` for images of ``image_shape`` (height, width[, channels])."""
    if name == "tutorial-cnn":
        return _tutorial_cnn(image_shape)
    if name not in _MLP_PRESETS:
        raise ConfigError(f"unknown preset {name!r}; expected one of {', '.join(PRESET_NAMES)}")
    (model, train), description = _MLP_PRESETS[name]
    return Preset(name, model, train, description)
