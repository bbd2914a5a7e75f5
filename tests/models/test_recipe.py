"""The training recipe's knobs: augmentation only while training, schedules, scaling, smoothing, decay."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from digitune.models import CNNConfig, ConvBlock, MLPConfig, TrainConfig, build_model, load_dataset, train
from digitune.models._recipe import REFERENCE_BATCH, augmentation, learning_rate, peak_learning_rate


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", limit=300)


def test_augmentation_runs_only_while_training():
    config = TrainConfig(translate=0.2, rotate=0.1, zoom=0.2, seed=3)
    layers = augmentation(config)
    assert [type(layer).__name__ for layer in layers] == ["RandomTranslation", "RandomRotation", "RandomZoom"]
    plain = build_model(MLPConfig(units=16), (8, 8))
    augmented = build_model(MLPConfig(units=16), (8, 8), augment=layers)
    for target, source in zip(augmented.trainable_weights, plain.trainable_weights, strict=True):
        target.assign(source)
    x = np.random.default_rng(0).random((32, 8, 8)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(augmented(x, training=False)),
                               keras.ops.convert_to_numpy(plain(x, training=False)), rtol=1e-5, atol=1e-6)
    moved = keras.ops.convert_to_numpy(augmented(x, training=True))
    assert not np.allclose(moved, keras.ops.convert_to_numpy(plain(x, training=False)), atol=1e-4)
    assert augmentation(TrainConfig()) == []  # all off: no layers, the model as before


@pytest.mark.parametrize("schedule", ["cosine", "one-cycle"])
def test_a_schedule_reaches_its_end_value(digits, schedule):
    config = TrainConfig(epochs=2, batch_size=64, schedule=schedule, learning_rate=0.01)
    result = train(MLPConfig(units=16), config, digits)
    optimizer = result.model.optimizer
    steps = math.ceil(len(digits.x_train) / config.batch_size) * config.epochs
    assert int(optimizer.iterations) == steps
    assert float(optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)  # cosine's end: 0
    rate = learning_rate(config, len(digits.x_train))
    values = [float(rate(step)) for step in range(steps + 1)]
    assert max(values) == pytest.approx(0.01, rel=1e-3)  # the peak is the study's learning rate
    if schedule == "one-cycle":
        assert values[0] == pytest.approx(0.001, rel=1e-3) and values.index(max(values)) == int(steps * 0.25)


def test_the_learning_rate_follows_the_batch_size():
    base = TrainConfig(learning_rate=0.01, batch_size=REFERENCE_BATCH * 4)
    assert peak_learning_rate(base) == 0.01
    assert peak_learning_rate(TrainConfig(**{**base.to_dict(), "lr_scaling": "linear"})) == pytest.approx(0.04)
    assert peak_learning_rate(TrainConfig(**{**base.to_dict(), "lr_scaling": "sqrt"})) == pytest.approx(0.02)
    assert learning_rate(base, 1000) == 0.01  # constant: a plain number


def test_every_recipe_knob_trains_on_a_cnn(digits):
    config = TrainConfig(epochs=2, schedule="one-cycle", lr_scaling="sqrt", weight_decay=0.01, label_smoothing=0.1,
                         translate=0.1, rotate=0.05, zoom=0.1)
    model = CNNConfig(blocks=(ConvBlock(filters=8, kernel_size=3, padding="same"),), dense_units=16)
    result = train(model, config, digits)
    assert result.log.epochs_run == 2 and 0.0 <= result.val_accuracy <= 1.0
    assert result.model.optimizer.weight_decay == pytest.approx(0.01)
    assert result.model.loss.get_config()["label_smoothing"] == pytest.approx(0.1)
    # the validation loss stays the plain cross-entropy, comparable across smoothing values
    probabilities = keras.ops.convert_to_numpy(result.model(digits.x_val, training=False))
    picked = probabilities[np.arange(len(digits.y_val)), digits.y_val]
    assert result.val_loss == pytest.approx(float(-np.mean(np.log(np.clip(picked, 1e-7, 1)))), rel=1e-4)


def test_weight_decay_shrinks_the_weights(digits):
    config = TrainConfig(epochs=2, learning_rate=0.01, seed=1)
    plain = train(MLPConfig(units=32), config, digits).model
    decayed = train(MLPConfig(units=32), TrainConfig(**{**config.to_dict(), "weight_decay": 0.5}), digits).model
    norm = lambda m: sum(float(np.sum(keras.ops.convert_to_numpy(w) ** 2)) for w in m.trainable_weights)  # noqa: E731
    assert norm(decayed) < norm(plain)


@pytest.mark.parametrize("name", ["Adam", "SGD", "RMSprop"])
def test_fused_weight_decay_under_a_schedule_matches_keras(name):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the fused optimizers are TensorFlow's")
    import tensorflow as tf

    from digitune.models import _fused

    def run(cls):
        schedule = keras.optimizers.schedules.CosineDecay(0.1, decay_steps=10, warmup_target=0.2, warmup_steps=3)
        optimizer = cls(learning_rate=schedule, weight_decay=0.05, **({"momentum": 0.9} if name == "SGD" else {}))
        variables = [keras.Variable(np.linspace(-1, 1, 6, dtype="float32").reshape(3, 2)),
                     keras.Variable(np.ones(2, "float32"))]
        optimizer.build(variables)
        step = tf.function(lambda: optimizer.apply([tf.ones((3, 2)) * 0.3, tf.ones(2) * -0.2], variables))
        for _ in range(5):
            step()
        ops = [op.type for op in step.get_concrete_function().graph.get_operations()]
        return [keras.ops.convert_to_numpy(v) for v in variables], len(ops)

    (fused, fused_ops), (plain, plain_ops) = run(getattr(_fused, f"Fused{name}")), run(getattr(keras.optimizers, name))
    for a, b in zip(fused, plain, strict=True):  # the same arithmetic, in another order: float32 rounding apart
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)
    assert fused_ops < plain_ops


def test_batch_norm_statistics_settle_within_a_short_trial():
    """At batch 128 the digits give 8 steps an epoch: Keras' default momentum left validation near chance."""
    data = load_dataset("digits")
    model = CNNConfig(blocks=(ConvBlock(filters=16, kernel_size=3, padding="same"),) * 2, dense_units=32,
                      batch_norm=True)
    config = TrainConfig(epochs=10, batch_size=128, learning_rate=6e-3, schedule="one-cycle", seed=128)
    result = train(model, config, data)
    assert result.val_accuracy > 0.9, result.log.curves["val_accuracy"]
