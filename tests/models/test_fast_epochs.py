"""digitune's own epochs (models/_epochs.py): Keras' arithmetic on the same batches, data converted once."""

from __future__ import annotations

import gc
import math

import keras
import numpy as np
import pytest

from digitune import models
from digitune.models import MLPConfig, TrainConfig, build_model, load_dataset, train
from digitune.models import _epochs
from digitune.models._fused import make_optimizer
from digitune.models._recipe import learning_rate, loss_and_labels

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the fast epochs are TensorFlow's")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", limit=300)


def _compiled(config: TrainConfig, dataset, model_config=MLPConfig(hidden_layers=2, units=16)) -> keras.Model:
    models.clear_state()
    keras.utils.set_random_seed(config.seed)
    model = build_model(model_config, dataset.x_train.shape[1:], 10)
    model.compile(optimizer=make_optimizer(config.optimizer, learning_rate(config, len(dataset.x_train)),
                                           config.weight_decay),
                  loss=loss_and_labels(config, dataset.y_train, 10)[0], metrics=["accuracy"])
    return model


class _Logs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs: list[dict] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append({k: float(v) for k, v in (logs or {}).items()})


@pytest.mark.parametrize("recipe", [
    {},
    {"label_smoothing": 0.1, "weight_decay": 0.01, "schedule": "one-cycle"},
    {"optimizer": "sgd", "batch_size": 48},
])
def test_fast_epochs_train_as_keras_fit_on_the_same_batches(digits, recipe):
    # The same model, seed and batches (fit given each epoch's order, unshuffled): the same weights and logs.
    config = TrainConfig(**{"epochs": 3, "batch_size": 32, "learning_rate": 0.01, "seed": 5, **recipe})
    model_config = MLPConfig(hidden_layers=2, units=16, batch_norm=True, dropout=0.2)
    y = loss_and_labels(config, digits.y_train, 10)[1]
    fast, logs = _compiled(config, digits, model_config), _Logs()
    assert _epochs.fast_epochs(fast)
    _epochs.fit_epochs(fast, digits.x_train, y, batch_size=config.batch_size, epochs=config.epochs,
                       callbacks=[logs], seed=config.seed)
    expected = [w.copy() for w in fast.get_weights()]

    plain, plain_logs = _compiled(config, digits, model_config), []
    rng = np.random.default_rng(config.seed)
    for _ in range(config.epochs):
        order = rng.permutation(len(digits.x_train))
        history = plain.fit(digits.x_train[order], y[order], batch_size=config.batch_size, epochs=1, shuffle=False,
                            verbose=0)
        plain_logs.append({k: v[-1] for k, v in history.history.items()})
    assert int(fast.optimizer.iterations) == int(plain.optimizer.iterations) == \
        config.epochs * math.ceil(len(digits.x_train) / config.batch_size)
    for got, want in zip(expected, plain.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    for got, want in zip(logs.epochs, plain_logs, strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-4)
        assert got["accuracy"] == pytest.approx(want["accuracy"], abs=1e-6)
    other = _compiled(TrainConfig(**{**config.to_dict(), "seed": 6}), digits, model_config)
    _epochs.fit_epochs(other, digits.x_train, y, batch_size=config.batch_size, epochs=1, callbacks=[], seed=6)
    assert not np.allclose(other.get_weights()[0], expected[0], atol=1e-3)  # the check can tell


def test_the_data_are_converted_once_and_freed_with_the_data_set():
    data = load_dataset("digits", limit=300)
    quick = TrainConfig(epochs=1, batch_size=64, learning_rate=0.01)
    train(MLPConfig(units=8), quick, data)
    tensor = _epochs.backend_tensor(data.x_train)
    assert _epochs.backend_tensor(data.x_train) is tensor
    np.testing.assert_array_equal(tensor.numpy(), data.x_train)
    cached = _epochs.cached_arrays()
    train(MLPConfig(units=8), TrainConfig(epochs=1, batch_size=32, seed=2), data)  # a second trial
    assert _epochs.backend_tensor(data.x_train) is tensor and _epochs.cached_arrays() == cached
    copy = data.x_train.copy()
    assert _epochs.backend_tensor(copy) is not tensor  # cached by identity, not by content
    del copy, tensor, data
    models.clear_state()
    gc.collect()
    assert _epochs.cached_arrays() <= cached - 2  # x_train and y_train went with their data set


def test_the_same_seed_trains_the_same_and_another_seed_shuffles_otherwise(digits):
    config = TrainConfig(epochs=2, batch_size=32, learning_rate=0.01, seed=3)
    first, again = train(MLPConfig(units=16), config, digits), train(MLPConfig(units=16), config, digits)
    other = train(MLPConfig(units=16), TrainConfig(**{**config.to_dict(), "seed": 4}), digits)
    assert first.log.curves["loss"] == again.log.curves["loss"]
    assert first.log.curves["loss"] != other.log.curves["loss"]


def test_a_large_epoch_runs_in_several_calls_and_the_hook_can_stop_it(digits):
    calls: list[int] = []

    def hook():
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    log = models.TrainLog()
    steps = math.ceil(len(digits.x_train) / 2)
    assert steps > _epochs.FIRST_CALL_STEPS
    with pytest.raises(KeyboardInterrupt):
        train(MLPConfig(units=8), TrainConfig(epochs=2, batch_size=2), digits, log=log, after_batch=hook)
    assert len(calls) == 2 and log.epochs_run == 0  # stopped inside the first epoch, after its second call


def test_where_the_fast_path_does_not_apply_keras_fit_trains(digits):
    config = TrainConfig(epochs=2, batch_size=32, learning_rate=0.01)
    model, logs = _compiled(config, digits), _Logs()
    model.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"], run_eagerly=True)
    assert not _epochs.fast_epochs(model)
    _epochs.fit_epochs(model, digits.x_train, digits.y_train, batch_size=32, epochs=2, callbacks=[logs], seed=0,
                       validation=(digits.x_val, digits.y_val))
    assert len(logs.epochs) == 2 and {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(logs.epochs[-1])
    assert int(model.optimizer.iterations) == 2 * math.ceil(len(digits.x_train) / 32)


@pytest.mark.parametrize("per_call", [_epochs.VALIDATION_BATCH, 32])
def test_validation_in_the_epochs_last_call_scores_as_evaluate(digits, monkeypatch, per_call):
    monkeypatch.setattr(_epochs, "VALIDATION_BATCH", per_call)  # 32: the 90 held-out images in three calls
    config = TrainConfig(epochs=2, batch_size=32, learning_rate=0.01, label_smoothing=0.1)
    result = train(MLPConfig(units=16), config, digits)
    loss, accuracy = models.evaluate(result.model, digits.x_val, digits.y_val)
    assert result.val_loss == pytest.approx(loss, rel=1e-5) and result.val_accuracy == pytest.approx(accuracy)
    assert len(result.log.curves["val_loss"]) == 2 and result.log.curves["val_loss"][0] != result.val_loss


def test_a_cnn_without_batch_norm_trains_an_epoch_of_several_calls(digits):
    """The calls before an epoch's last validate nothing: no forward pass over an empty batch.

    oneDNN's fused Conv2D+BiasAdd fails on one ("input depth must be evenly divisible by
    filter depth"), which failed every CNN trial without batch norm on Fashion-MNIST.
    """
    from digitune.models import CNNConfig, ConvBlock

    assert math.ceil(len(digits.x_train) / 2) > _epochs.FIRST_CALL_STEPS  # more than one call an epoch
    model = CNNConfig(blocks=(ConvBlock(filters=8, kernel_size=3, padding="same"),) * 2, dense_units=16)
    result = train(model, TrainConfig(epochs=2, batch_size=2), digits)
    assert result.log.epochs_run == 2 and 0.0 < result.val_accuracy <= 1.0
