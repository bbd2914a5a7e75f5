"""The training recipe around a model: augmentation, learning-rate schedule and scaling, loss.

Each piece reads one or two ``TrainConfig`` knobs and is plain ``keras.*``, so every backend
runs it and a saved model names only Keras' own classes.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from ._config import TrainConfig

REFERENCE_BATCH = 128  # ``lr_scaling`` scales the learning rate from this batch size (the tutorial's)
WARMUP_FRACTION = 0.25  # one-cycle: the share of steps spent warming up
WARMUP_START = 0.1  # one-cycle: warm-up starts at this fraction of the peak learning rate


def augmentation(config: TrainConfig) -> list[keras.layers.Layer]:
    """Random translation, rotation and zoom layers (active only while training), none when all are 0.

    No flips: a mirrored digit is another digit, or none. Pixels moved in from outside the
    image are black (0), as the digits' background is.
    """
    fill = {"fill_mode": "constant", "fill_value": 0.0}
    layers: list[keras.layers.Layer] = []
    if config.translate:
        layers.append(keras.layers.RandomTranslation(config.translate, config.translate, seed=config.seed, **fill))
    if config.rotate:
        layers.append(keras.layers.RandomRotation(config.rotate, seed=config.seed + 1, **fill))
    if config.zoom:
        layers.append(keras.layers.RandomZoom(config.zoom, seed=config.seed + 2, **fill))
    return layers


def peak_learning_rate(config: TrainConfig) -> float:
    """``learning_rate`` scaled to the batch size: linearly, by its square root, or not at all."""
    ratio = config.batch_size / REFERENCE_BATCH
    factor = {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[config.lr_scaling]
    return config.learning_rate * factor


def learning_rate(config: TrainConfig, train_images: int):
    """The learning rate ``fit`` uses over the trial's epochs: a number, or a Keras schedule.

    ``cosine`` decays from the peak to 0 over every step of ``config.epochs``; ``one-cycle``
    warms up linearly from a tenth of the peak for the first quarter of the steps, then
    decays as cosine to 0.
    """
    peak = peak_learning_rate(config)
    if config.schedule == "constant":
        return peak
    steps = max(1, math.ceil(train_images / config.batch_size)) * config.epochs
    if config.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(peak, decay_steps=steps, alpha=0.0)
    warmup = max(1, int(steps * WARMUP_FRACTION))
    return keras.optimizers.schedules.CosineDecay(peak * WARMUP_START, decay_steps=max(1, steps - warmup),
                                                  alpha=0.0, warmup_target=peak, warmup_steps=warmup)


def loss_and_labels(config: TrainConfig, y: np.ndarray, num_classes: int):
    """The loss to compile with and the labels ``fit`` takes: one-hot under label smoothing."""
    if not config.label_smoothing:
        return "sparse_categorical_crossentropy", y
    one_hot = np.eye(num_classes, dtype=np.float32)[y.astype(np.int64)]
    return keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing), one_hot
