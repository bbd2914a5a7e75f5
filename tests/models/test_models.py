"""Tests for models/: config validation and round trips, CNN geometry, builders, presets, training.

Everything is real: Keras builds and trains actual models, on ~300 of scikit-learn's 8x8 digits
for a few epochs, so the whole file runs in seconds on a CPU.
"""

from __future__ import annotations

import gc
import json
import math

import keras
import numpy as np
import pytest

from digitune import models
from digitune.models import (
    ACTIVATIONS,
    INITIALIZERS,
    OPTIMIZERS,
    PRESET_NAMES,
    CNNConfig,
    ConfigError,
    ConvBlock,
    MLPConfig,
    TrainConfig,
    build_model,
    get_preset,
    model_config_from_dict,
)

CURVES = ("loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds")
TUTORIAL_CNN_BLOCKS = tuple(
    ConvBlock(filters=25, kernel_size=k, padding="valid", pool=p)
    for k, p in zip((5, 5, 4), ("max", "max", "none"))
)


# --------------------------------------------------------------------------- data


def _digits_by_hand(limit: int = 300) -> models.Dataset:
    """A small split of sklearn's digits, for when ``load_dataset`` is not available."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    raw = load_digits()
    x = (raw.images / 16.0).astype(np.float32)
    y = raw.target.astype(np.int64)
    x_pool, x_test, y_pool, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    x_pool, _, y_pool, _ = train_test_split(x_pool, y_pool, train_size=limit, random_state=128, stratify=y_pool)
    x_train, x_val, y_train, y_val = train_test_split(x_pool, y_pool, test_size=0.3, random_state=128,
                                                      stratify=y_pool)
    info = models.DatasetInfo(
        name="digits", source="sklearn.datasets.load_digits", format="sklearn", image_shape=(8, 8),
        num_classes=10, fingerprint="by-hand", n_train=len(y_train), n_val=len(y_val), n_test=len(y_test),
        test_from="held-out",
    )
    return models.Dataset(x_train, y_train, x_val, y_val, x_test, y_test, info)


@pytest.fixture(scope="module")
def digits() -> models.Dataset:
    try:
        data = models.load_dataset("digits", limit=300)
    except NotImplementedError:
        data = _digits_by_hand(300)
    assert data.x_train.shape[1:] == (8, 8)
    assert len(data.x_train) + len(data.x_val) == 300
    return data


def _curves_without_timing(log: models.TrainLog) -> dict[str, list[float]]:
    return {k: v for k, v in log.curves.items() if k != "epoch_seconds"}


# --------------------------------------------------------------------------- 1. validation

BAD_CONFIGS = [
    # MLPConfig
    (MLPConfig, {"hidden_layers": -1}, r"MLPConfig: invalid value for hidden_layers.*integer >= 0.*Received: hidden_layers=-1"),
    (MLPConfig, {"hidden_layers": 1.5}, r"hidden_layers.*Received: hidden_layers=1\.5"),
    (MLPConfig, {"hidden_layers": True}, r"hidden_layers.*Received: hidden_layers=True"),
    (MLPConfig, {"units": 0}, r"MLPConfig: invalid value for units.*integer >= 1.*Received: units=0"),
    (MLPConfig, {"units": "50"}, r"units.*Received: units='50'"),
    (MLPConfig, {"dropout": 1.0}, r"MLPConfig: invalid value for dropout.*\[0, 1\).*Received: dropout=1\.0"),
    (MLPConfig, {"dropout": -0.1}, r"dropout.*Received: dropout=-0\.1"),
    (MLPConfig, {"dropout": float("nan")}, r"dropout.*Received: dropout=nan"),
    (MLPConfig, {"activation": "softmax"}, r"MLPConfig: invalid value for activation.*relu.*Received: activation='softmax'"),
    (MLPConfig, {"initializer": "zeros"}, r"MLPConfig: invalid value for initializer.*he_normal.*Received: initializer='zeros'"),
    (MLPConfig, {"batch_norm": "yes"}, r"MLPConfig: invalid value for batch_norm, expected true or false.*Received: batch_norm='yes'"),
    (MLPConfig, {"batch_norm": 1}, r"MLPConfig: invalid value for batch_norm, expected true or false.*Received: batch_norm=1"),
    # ConvBlock
    (ConvBlock, {"filters": 0}, r"ConvBlock: invalid value for filters.*Received: filters=0"),
    (ConvBlock, {"filters": 2.5}, r"ConvBlock: invalid value for filters.*Received: filters=2\.5"),
    (ConvBlock, {"kernel_size": 0}, r"ConvBlock: invalid value for kernel_size.*Received: kernel_size=0"),
    (ConvBlock, {"stride": 0}, r"ConvBlock: invalid value for stride.*Received: stride=0"),
    (ConvBlock, {"convs": 0}, r"ConvBlock: invalid value for convs, expected an integer in \[1, 4\].*Received: convs=0"),
    (ConvBlock, {"padding": "full"}, r"ConvBlock: invalid value for padding.*valid, same.*Received: padding='full'"),
    (ConvBlock, {"activation": "gelu"}, r"ConvBlock: invalid value for activation.*Received: activation='gelu'"),
    (ConvBlock, {"pool": "min"}, r"ConvBlock: invalid value for pool.*max, avg, none.*Received: pool='min'"),
    (ConvBlock, {"pool_size": 0}, r"ConvBlock: invalid value for pool_size.*Received: pool_size=0"),
    # CNNConfig
    (CNNConfig, {"blocks": ()}, r"CNNConfig: blocks must hold at least one ConvBlock.*Received: blocks=\(\)"),
    (CNNConfig, {"blocks": []}, r"CNNConfig: blocks must hold at least one ConvBlock"),
    (CNNConfig, {"blocks": ({"filters": -3},)}, r"ConvBlock: invalid value for filters.*Received: filters=-3"),
    (CNNConfig, {"dense_units": -1}, r"CNNConfig: invalid value for dense_units.*integer >= 0.*Received: dense_units=-1"),
    (CNNConfig, {"dropout": 1.5}, r"CNNConfig: invalid value for dropout.*Received: dropout=1\.5"),
    (CNNConfig, {"activation": "swish"}, r"CNNConfig: invalid value for activation.*Received: activation='swish'"),
    (CNNConfig, {"initializer": "ones"}, r"CNNConfig: invalid value for initializer.*Received: initializer='ones'"),
    (CNNConfig, {"batch_norm": None}, r"CNNConfig: invalid value for batch_norm, expected true or false.*Received: batch_norm=None"),
    # TrainConfig
    (TrainConfig, {"optimizer": "adagrad"}, r"TrainConfig: invalid value for optimizer.*adam, sgd, rmsprop.*Received: optimizer='adagrad'"),
    (TrainConfig, {"learning_rate": 0.0}, r"TrainConfig: invalid value for learning_rate.*\(0, 10\].*Received: learning_rate=0\.0"),
    (TrainConfig, {"learning_rate": -1e-3}, r"learning_rate.*Received: learning_rate=-0\.001"),
    (TrainConfig, {"learning_rate": 10.5}, r"learning_rate.*Received: learning_rate=10\.5"),
    (TrainConfig, {"learning_rate": float("inf")}, r"learning_rate.*Received: learning_rate=inf"),
    (TrainConfig, {"learning_rate": "0.01"}, r"learning_rate.*Received: learning_rate='0\.01'"),
    (TrainConfig, {"batch_size": 0}, r"TrainConfig: invalid value for batch_size.*integer >= 1.*Received: batch_size=0"),
    (TrainConfig, {"batch_size": 32.0}, r"batch_size.*Received: batch_size=32\.0"),
    (TrainConfig, {"epochs": 0}, r"TrainConfig: invalid value for epochs.*Received: epochs=0"),
    (TrainConfig, {"seed": -1}, r"TrainConfig: invalid value for seed.*Received: seed=-1"),
    (TrainConfig, {"early_stopping_patience": -2}, r"early_stopping_patience.*Received: early_stopping_patience=-2"),
]


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    BAD_CONFIGS,
    ids=[f"{cls.__name__}-{next(iter(kw))}={next(iter(kw.values()))!r}" for cls, kw, _ in BAD_CONFIGS],
)
def test_bad_config_raises_config_error_naming_argument_and_value(cls, kwargs, message):
    with pytest.raises(ConfigError, match=message) as info:
        cls(**kwargs)
    (name, value), = kwargs.items()
    text = str(info.value)
    assert name in text or name == "blocks" and "ConvBlock" in text
    assert isinstance(info.value, ValueError)  # callers may catch ValueError too


@pytest.mark.parametrize("cls", [MLPConfig, ConvBlock, CNNConfig, TrainConfig])
def test_defaults_are_valid(cls):
    cls()


def test_boundary_values_are_accepted():
    MLPConfig(hidden_layers=0, units=1, dropout=0.0)
    MLPConfig(dropout=0.999)
    CNNConfig(dense_units=0, dropout=0.5)
    ConvBlock(filters=1, kernel_size=1, stride=1, pool="none", pool_size=1)
    TrainConfig(learning_rate=10.0, batch_size=1, epochs=1, seed=0)
    TrainConfig(learning_rate=1e-7)
    for name in ACTIVATIONS:
        MLPConfig(activation=name)
        ConvBlock(activation=name)
    for name in INITIALIZERS:
        CNNConfig(initializer=name)
    for name in OPTIMIZERS:
        TrainConfig(optimizer=name)


def test_cnn_blocks_given_as_dicts_or_list_become_a_tuple_of_conv_blocks():
    config = CNNConfig(blocks=[{"filters": 8, "kernel_size": 3}, ConvBlock(filters=4)])
    assert config.blocks == (ConvBlock(filters=8, kernel_size=3), ConvBlock(filters=4))
    hash(config)  # frozen and hashable, so a tuple and not a list is stored


def test_configs_are_frozen():
    config = MLPConfig()
    with pytest.raises(AttributeError):
        config.units = 3  # type: ignore[misc]


# --------------------------------------------------------------------------- 2. round trips

MLP = MLPConfig(hidden_layers=3, units=64, dropout=0.25, activation="tanh", initializer="he_normal", batch_norm=True)
CNN = CNNConfig(
    blocks=(
        ConvBlock(filters=16, kernel_size=3, stride=1, padding="same", activation="elu", pool="max", pool_size=2),
        ConvBlock(filters=32, kernel_size=2, stride=2, padding="valid", activation="tanh", pool="avg", pool_size=1),
        ConvBlock(filters=8, kernel_size=1, padding="same", activation="leaky_relu", pool="none"),
    ),
    dense_units=0,
    dropout=0.1,
    activation="sigmoid",
    initializer="random_normal",
    batch_norm=True,
)


@pytest.mark.parametrize("config", [MLP, MLPConfig(), CNN, CNNConfig()], ids=["mlp", "mlp-default", "cnn", "cnn-default"])
def test_model_config_round_trips_through_json(config):
    data = config.to_dict()
    assert data["family"] == config.family
    text = json.dumps(data)  # plain JSON, as stored on an Optuna trial
    back = model_config_from_dict(json.loads(text))
    assert type(back) is type(config)
    assert back == config
    assert back.to_dict() == data
    assert type(config).from_dict(data) == config


def test_cnn_to_dict_lists_every_block():
    data = CNN.to_dict()
    assert data["family"] == "cnn"
    assert data["blocks"] == [b.to_dict() for b in CNN.blocks]
    assert [b["filters"] for b in data["blocks"]] == [16, 32, 8]
    assert all(isinstance(b, dict) for b in data["blocks"])


def test_train_config_round_trips_through_json():
    config = TrainConfig(optimizer="rmsprop", learning_rate=3e-4, batch_size=64, epochs=7, seed=5,
                         early_stopping_patience=2)
    data = json.loads(json.dumps(config.to_dict()))
    assert TrainConfig.from_dict(data) == config
    assert "family" not in data


def test_from_dict_fills_missing_keys_with_defaults():
    assert MLPConfig.from_dict({"units": 10}) == MLPConfig(units=10)
    assert TrainConfig.from_dict({"epochs": 2}) == TrainConfig(epochs=2)
    assert model_config_from_dict({"family": "mlp"}) == MLPConfig()
    assert model_config_from_dict({"family": "cnn"}) == CNNConfig()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: MLPConfig.from_dict({"family": "mlp", "units": 5, "colour": "red"}), r"MLPConfig: unknown key\(s\) colour"),
        (lambda: model_config_from_dict({"family": "mlp", "layers": 2}), r"unknown key\(s\) layers.*hidden_layers"),
        (lambda: model_config_from_dict({"family": "cnn", "blocks": [{"filters": 3, "size": 3}]}), r"ConvBlock: unknown key\(s\) size"),
        (lambda: CNNConfig.from_dict({"blocks": [{}], "width": 3}), r"CNNConfig: unknown key\(s\) width"),
        (lambda: TrainConfig.from_dict({"lr": 0.1, "epochs": 2}), r"TrainConfig: unknown key\(s\) lr.*learning_rate"),
        (lambda: model_config_from_dict({"family": "rnn", "units": 5}), r"family.*'mlp' or 'cnn'.*Received: family='rnn'"),
        (lambda: model_config_from_dict({"units": 5}), r"family.*Received: family=None"),
        (lambda: model_config_from_dict({"family": "mlp", "units": -5}), r"Received: units=-5"),
    ],
    ids=["mlp-unknown", "dispatch-unknown", "block-unknown", "cnn-unknown", "train-unknown", "bad-family",
         "no-family", "bad-value"],
)
def test_from_dict_rejects_bad_dicts(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


# --------------------------------------------------------------------------- 3. geometry


def test_tutorial_cnn_geometry_on_28x28():
    sizes = CNNConfig(blocks=TUTORIAL_CNN_BLOCKS, dense_units=50).feature_map_sizes((28, 28))
    # conv 5 -> 24, pool -> 12, conv 5 -> 8, pool -> 4, conv 4 -> 1
    assert sizes == [(24, 24), (12, 12), (8, 8), (4, 4), (1, 1)]


@pytest.mark.parametrize(
    ("blocks", "shape", "expected"),
    [
        ((ConvBlock(kernel_size=5, padding="same", pool="max"),), (28, 28), [(28, 28), (14, 14)]),
        ((ConvBlock(kernel_size=3, padding="same", pool="none"),), (8, 8), [(8, 8)]),
        ((ConvBlock(kernel_size=3, stride=2, padding="same", pool="none"),), (28, 28), [(14, 14)]),
        ((ConvBlock(kernel_size=3, stride=2, padding="same", pool="none"),), (9, 7), [(5, 4)]),
        ((ConvBlock(kernel_size=5, stride=2, padding="valid", pool="none"),), (28, 28), [(12, 12)]),
        ((ConvBlock(kernel_size=3, stride=2, padding="valid", pool="avg", pool_size=3),), (28, 28), [(13, 13), (4, 4)]),
        ((ConvBlock(kernel_size=3, padding="valid", pool="max"),), (8, 10), [(6, 8), (3, 4)]),
        ((ConvBlock(kernel_size=8, padding="valid", pool="none"),), (8, 8, 1), [(1, 1)]),
        ((ConvBlock(kernel_size=3, convs=2, padding="valid", pool="max"),), (28, 28), [(26, 26), (24, 24), (12, 12)]),
        ((ConvBlock(kernel_size=3, convs=3, stride=2, padding="same", pool="none"),), (28, 28),
         [(14, 14), (14, 14), (14, 14)]),
    ],
    ids=["same-pool", "same-8x8", "same-stride2", "same-stride2-odd", "valid-stride2", "avg-pool3", "rect",
         "exactly-1x1", "two-convs-valid", "three-convs-stride-once"],
)
def test_feature_map_sizes_known_values(blocks, shape, expected):
    assert CNNConfig(blocks=blocks).feature_map_sizes(shape) == expected


@pytest.mark.parametrize(
    ("blocks", "shape"),
    [
        (TUTORIAL_CNN_BLOCKS, (28, 28)),
        (TUTORIAL_CNN_BLOCKS, (28, 28, 1)),
        ((ConvBlock(kernel_size=3, stride=2, padding="same", pool="avg", pool_size=3),
          ConvBlock(kernel_size=2, stride=2, padding="valid", pool="max")), (28, 28)),
        ((ConvBlock(kernel_size=3, stride=2, padding="same", pool="none"),
          ConvBlock(kernel_size=2, stride=1, padding="valid", pool="max", pool_size=2)), (9, 7)),
        ((ConvBlock(kernel_size=3, convs=2, stride=2, padding="valid", pool="max"),
          ConvBlock(kernel_size=3, convs=2, padding="same", pool="none")), (28, 28)),
    ],
    ids=["tutorial", "tutorial-channels", "strided", "odd", "two-convs-a-block"],
)
def test_feature_map_sizes_match_what_keras_builds(blocks, shape):
    config = CNNConfig(blocks=blocks, dense_units=0)
    model = build_model(config, shape)
    spatial = [
        tuple(layer.output.shape[1:3])
        for layer in model.layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.MaxPooling2D, keras.layers.AveragePooling2D))
    ]
    assert spatial == config.feature_map_sizes(shape)


def test_conv_that_does_not_fit_8x8_names_the_block_and_1x1():
    config = CNNConfig(blocks=TUTORIAL_CNN_BLOCKS)  # 8 -> 4 -> pool 2 -> 5x5 kernel cannot fit
    with pytest.raises(ConfigError, match=r"conv block 2 \(kernel 5, stride 1, padding valid, convs 1\).*below 1x1.*8x8"):
        config.feature_map_sizes((8, 8))


def test_a_blocks_second_conv_that_does_not_fit_names_its_convs():
    config = CNNConfig(blocks=(ConvBlock(kernel_size=5, convs=2, padding="valid", pool="none"),))  # 8 -> 4 -> 0
    with pytest.raises(ConfigError, match=r"conv block 1 \(kernel 5, stride 1, padding valid, convs 2\).*below 1x1"):
        config.feature_map_sizes((8, 8))


def test_pool_that_does_not_fit_names_the_block_and_1x1():
    config = CNNConfig(blocks=(ConvBlock(kernel_size=3, pool="max", pool_size=8),))  # 8 -> 6 -> pool 8 -> 0
    with pytest.raises(ConfigError, match=r"8x8 pooling after conv block 1.*6x6.*below 1x1"):
        config.feature_map_sizes((8, 8))


def test_build_model_rejects_bad_geometry_before_building_any_layer():
    config = CNNConfig(blocks=TUTORIAL_CNN_BLOCKS)
    keras.backend.clear_session()  # resets Keras' automatic layer names
    with pytest.raises(ConfigError, match=r"conv block 2.*1x1"):
        build_model(config, (8, 8))
    # Had build_model created its Reshape or any Conv2D, these names would carry a suffix.
    assert keras.layers.Reshape((64,)).name == "reshape"
    assert keras.layers.Conv2D(1, 1).name == "conv2d"
    assert keras.layers.Flatten().name == "flatten"
    keras.backend.clear_session()


@pytest.mark.parametrize("shape", [(8,), (8, 8, 1, 1), (0, 8), (8, 8, 0)])
def test_build_model_rejects_bad_input_shapes(shape):
    with pytest.raises(ConfigError, match=r"input_shape"):
        build_model(MLPConfig(), shape)


def test_build_model_rejects_what_is_not_a_config():
    with pytest.raises(ConfigError, match=r"MLPConfig or CNNConfig.*TrainConfig"):
        build_model(TrainConfig(), (8, 8))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- 4. builders

SMALL_CNN = CNNConfig(blocks=(ConvBlock(filters=4, kernel_size=3, padding="same", pool="max"),), dense_units=8)


@pytest.mark.parametrize("shape", [(8, 8), (28, 28), (28, 28, 1)])
@pytest.mark.parametrize("config", [MLPConfig(units=16), MLP, SMALL_CNN, CNN], ids=["mlp", "mlp-bn", "cnn", "cnn-bn"])
def test_build_model_outputs_ten_class_probabilities(config, shape):
    model = build_model(config, shape)
    assert model.input_shape == (None, *shape)
    assert model.output_shape == (None, 10)
    assert model.name == config.family
    x = np.random.default_rng(0).random((5, *shape), dtype=np.float32)
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (5, 10)
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_build_model_num_classes():
    assert build_model(MLPConfig(units=4), (8, 8), num_classes=3).output_shape == (None, 3)


def test_tutorial_mlp_parameter_count():
    model = build_model(MLPConfig(hidden_layers=1, units=50), (28, 28))
    assert model.count_params() == 784 * 50 + 50 + 50 * 10 + 10 == 39760


def test_mlp_without_hidden_layers_is_softmax_regression():
    model = build_model(MLPConfig(hidden_layers=0), (8, 8))
    assert model.count_params() == 64 * 10 + 10


def _count(model: keras.Model, layer_type: type) -> int:
    return sum(isinstance(layer, layer_type) for layer in model.layers)


def test_batch_norm_adds_batch_normalization_layers():
    plain = build_model(MLPConfig(hidden_layers=3, units=8), (8, 8))
    normed = build_model(MLPConfig(hidden_layers=3, units=8, batch_norm=True), (8, 8))
    assert _count(plain, keras.layers.BatchNormalization) == 0
    assert _count(normed, keras.layers.BatchNormalization) == 3
    blocks = (ConvBlock(filters=4, kernel_size=3, padding="same"), ConvBlock(filters=4, kernel_size=3, padding="same"))
    assert _count(build_model(CNNConfig(blocks=blocks), (8, 8)), keras.layers.BatchNormalization) == 0
    # two conv blocks and the dense head
    assert _count(build_model(CNNConfig(blocks=blocks, batch_norm=True), (8, 8)), keras.layers.BatchNormalization) == 3


def test_dropout_adds_dropout_layers():
    assert _count(build_model(MLPConfig(hidden_layers=2, units=8), (8, 8)), keras.layers.Dropout) == 0
    assert _count(build_model(MLPConfig(hidden_layers=2, units=8, dropout=0.3), (8, 8)), keras.layers.Dropout) == 2
    block = (ConvBlock(filters=4, kernel_size=3, padding="same"),)
    # a CNN drops out once: after its dense head, or after flattening when it has none
    assert _count(build_model(CNNConfig(blocks=block, dropout=0.3), (8, 8)), keras.layers.Dropout) == 1
    assert _count(build_model(CNNConfig(blocks=block, dense_units=0, dropout=0.3), (8, 8)), keras.layers.Dropout) == 1


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_builds(activation):
    mlp = build_model(MLPConfig(hidden_layers=1, units=4, activation=activation), (8, 8))
    hidden = [layer for layer in mlp.layers if isinstance(layer, keras.layers.Dense)][0]
    assert hidden.activation is keras.activations.get(activation)
    cnn = build_model(CNNConfig(blocks=(ConvBlock(filters=2, kernel_size=3, activation=activation),),
                                dense_units=4, activation=activation), (8, 8))
    conv = [layer for layer in cnn.layers if isinstance(layer, keras.layers.Conv2D)][0]
    assert conv.activation is keras.activations.get(activation)
    bn = build_model(MLPConfig(hidden_layers=1, units=4, activation=activation, batch_norm=True), (8, 8))
    act = [layer for layer in bn.layers if isinstance(layer, keras.layers.Activation)][0]
    assert act.activation is keras.activations.get(activation)


@pytest.mark.parametrize(
    ("initializer", "class_name"),
    [("glorot_uniform", "GlorotUniform"), ("he_normal", "HeNormal"), ("random_normal", "RandomNormal")],
)
def test_every_initializer_builds(initializer, class_name):
    assert set(INITIALIZERS) == {"glorot_uniform", "he_normal", "random_normal"}
    mlp = build_model(MLPConfig(hidden_layers=1, units=4, initializer=initializer), (8, 8))
    hidden = [layer for layer in mlp.layers if isinstance(layer, keras.layers.Dense)][0]
    assert type(hidden.kernel_initializer).__name__ == class_name
    cnn = build_model(CNNConfig(blocks=(ConvBlock(filters=2, kernel_size=3),), initializer=initializer), (8, 8))
    conv = [layer for layer in cnn.layers if isinstance(layer, keras.layers.Conv2D)][0]
    assert type(conv.kernel_initializer).__name__ == class_name


# --------------------------------------------------------------------------- 5. presets


def test_preset_names():
    assert PRESET_NAMES == (
        "tutorial-mlp-50",
        "tutorial-wide-500",
        "tutorial-deep-5x50",
        "tutorial-deep-dropout",
        "tutorial-deep-50-epochs",
        "tutorial-deep-wide-5x500",
        "tutorial-cnn",
    )


@pytest.mark.parametrize("shape", [(28, 28), (8, 8)])
@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_builds(name, shape):
    preset = get_preset(name, shape)
    assert isinstance(preset, models.Preset)
    assert preset.name == name
    assert preset.description
    assert preset.train.optimizer == "adam"
    assert preset.train.learning_rate == 1e-3
    assert preset.train.batch_size == 128
    model = build_model(preset.model, shape)
    assert model.output_shape == (None, 10)
    assert model_config_from_dict(json.loads(json.dumps(preset.model.to_dict()))) == preset.model


@pytest.mark.parametrize(
    ("name", "layers", "units", "dropout", "epochs"),
    [
        ("tutorial-mlp-50", 1, 50, 0.0, 5),
        ("tutorial-wide-500", 1, 500, 0.0, 5),
        ("tutorial-deep-5x50", 5, 50, 0.0, 5),
        ("tutorial-deep-dropout", 5, 50, 0.2, 5),
        ("tutorial-deep-50-epochs", 5, 50, 0.2, 50),
        ("tutorial-deep-wide-5x500", 5, 500, 0.2, 25),
    ],
)
def test_tutorial_mlp_preset_values(name, layers, units, dropout, epochs):
    preset = get_preset(name)
    assert isinstance(preset.model, MLPConfig)
    assert (preset.model.hidden_layers, preset.model.units, preset.model.dropout) == (layers, units, dropout)
    assert preset.model.activation == "relu"
    assert preset.model.batch_norm is False
    assert preset.train.epochs == epochs
    assert preset.train.batch_size == 128
    assert get_preset(name, (8, 8)) == preset  # MLPs do not depend on the image size


def test_tutorial_mlp_50_preset_is_the_39760_parameter_model():
    assert build_model(get_preset("tutorial-mlp-50").model, (28, 28)).count_params() == 39760


def test_tutorial_cnn_preset_on_28x28_is_the_tutorial_cnn():
    preset = get_preset("tutorial-cnn", (28, 28))
    assert isinstance(preset.model, CNNConfig)
    assert [b.filters for b in preset.model.blocks] == [25, 25, 25]
    assert [b.kernel_size for b in preset.model.blocks] == [5, 5, 4]
    assert [b.padding for b in preset.model.blocks] == ["valid"] * 3
    assert [b.pool for b in preset.model.blocks] == ["max", "max", "none"]
    assert preset.model.dense_units == 50
    assert preset.train.epochs == 5
    assert preset.model.feature_map_sizes((28, 28))[-1] == (1, 1)
    assert "adapted" not in preset.description


def test_tutorial_cnn_preset_on_8x8_is_adapted():
    preset = get_preset("tutorial-cnn", (8, 8))
    assert [b.filters for b in preset.model.blocks] == [25, 25, 25]
    assert [b.kernel_size for b in preset.model.blocks] == [5, 5, 4]
    assert [b.padding for b in preset.model.blocks] == ["same"] * 3
    assert preset.model.dense_units == 50
    assert preset.model.feature_map_sizes((8, 8)) == [(8, 8), (4, 4), (4, 4), (2, 2), (2, 2)]
    assert "adapted to 8x8" in preset.description
    assert "padding='same'" in preset.description


def test_unknown_preset_lists_the_names():
    with pytest.raises(ConfigError, match=r"unknown preset 'tutorial-rnn'") as info:
        get_preset("tutorial-rnn")
    for name in PRESET_NAMES:
        assert name in str(info.value)


# --------------------------------------------------------------------------- 6. training

FAST_MLP = MLPConfig(hidden_layers=1, units=32)
FAST_TRAIN = TrainConfig(optimizer="adam", learning_rate=1e-2, batch_size=32, epochs=3, seed=7)


@pytest.fixture(scope="module")
def mlp_result(digits):
    return models.train(FAST_MLP, FAST_TRAIN, digits, evaluate_test=True)


def test_train_mlp_returns_curves_and_learns(mlp_result):
    result = mlp_result
    assert isinstance(result, models.TrainResult)
    log = result.log
    assert set(log.curves) == set(CURVES)
    for key in CURVES:
        assert len(log.curves[key]) == FAST_TRAIN.epochs, key
        assert all(isinstance(v, float) and math.isfinite(v) for v in log.curves[key]), key
    assert log.epochs_run == 3
    assert log.params == 64 * 32 + 32 + 32 * 10 + 10 == result.model.count_params()
    assert log.backend == keras.backend.backend()
    assert log.device == models.describe_device()
    assert log.train_seconds > 0
    assert all(s >= 0 for s in log.curves["epoch_seconds"])
    assert result.val_loss == log.curves["val_loss"][-1]
    assert result.val_accuracy == log.curves["val_accuracy"][-1]
    assert 0.0 <= result.val_accuracy <= 1.0
    assert result.val_accuracy > 0.2  # chance is 0.1
    assert log.curves["loss"][-1] < log.curves["loss"][0]


def test_train_evaluate_test_fills_test_metrics(mlp_result, digits):
    assert mlp_result.test_accuracy is not None and mlp_result.test_loss is not None
    assert 0.2 < mlp_result.test_accuracy <= 1.0
    assert math.isfinite(mlp_result.test_loss)
    probs = models.predict_proba(mlp_result.model, digits.x_test)
    assert probs.shape == (len(digits.x_test), 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    accuracy = float(np.mean(probs.argmax(axis=1) == digits.y_test))
    assert accuracy == pytest.approx(mlp_result.test_accuracy, abs=1e-6)


def test_train_without_evaluate_test_leaves_test_metrics_empty(digits):
    result = models.train(FAST_MLP, TrainConfig(learning_rate=1e-2, batch_size=64, epochs=1), digits)
    assert result.test_accuracy is None and result.test_loss is None
    assert result.log.epochs_run == 1


def test_same_seed_gives_identical_curves(mlp_result, digits):
    again = models.train(FAST_MLP, FAST_TRAIN, digits, evaluate_test=True)
    assert _curves_without_timing(again.log) == _curves_without_timing(mlp_result.log)
    assert again.test_accuracy == mlp_result.test_accuracy
    for a, b in zip(again.model.get_weights(), mlp_result.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_train_cnn(digits):
    config = CNNConfig(blocks=(ConvBlock(filters=8, kernel_size=3, padding="same", pool="max"),), dense_units=16)
    result = models.train(config, TrainConfig(learning_rate=1e-2, batch_size=32, epochs=2), digits)
    assert result.log.epochs_run == 2
    assert set(result.log.curves) == set(CURVES)
    assert result.log.params == result.model.count_params() > 0
    assert result.model.name == "cnn"
    assert 0.0 <= result.val_accuracy <= 1.0
    assert math.isfinite(result.val_loss)


def test_huge_learning_rate_raises_training_error_naming_nan_and_learning_rate(digits):
    # SGD (momentum 0.9) at the largest allowed rate blows an unbounded leaky-relu net up in a few batches.
    config = MLPConfig(hidden_layers=3, units=100, activation="leaky_relu", initializer="he_normal")
    log = models.TrainLog()
    with pytest.raises(models.TrainingError, match=r"NaN or infinite.*learning rate \(got 10\)"):
        models.train(config, TrainConfig(optimizer="sgd", learning_rate=10.0, batch_size=32, epochs=3), digits,
                     log=log)
    assert 1 <= log.epochs_run < 3  # a non-finite loss stops training at the end of its epoch
    assert not math.isfinite(log.curves["loss"][-1])
    assert isinstance(models.TrainingError("x"), RuntimeError)


class _Pruned(Exception):
    pass


class _StopAtEpoch2(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:  # the second epoch, counted from 0
            raise _Pruned(f"stopped after epoch {epoch + 1}")


def test_callback_exception_leaves_curves_of_epochs_run_in_callers_log(digits):
    log = models.TrainLog()
    with pytest.raises(_Pruned, match="stopped after epoch 2"):
        models.train(FAST_MLP, TrainConfig(learning_rate=1e-2, batch_size=64, epochs=5), digits,
                     callbacks=[_StopAtEpoch2()], log=log)
    assert log.epochs_run == 2
    assert set(log.curves) == set(CURVES)
    assert all(len(v) == 2 for v in log.curves.values())
    assert log.params == 64 * 32 + 32 + 32 * 10 + 10
    assert log.device and log.backend
    assert log.train_seconds > 0


# --------------------------------------------------------------------------- 7. state and device


def test_clear_state_runs():
    build_model(MLPConfig(units=4), (8, 8))
    models.clear_state()
    assert keras.layers.Dense(1).name == "dense"  # names start afresh after clearing


def test_trained_models_leave_no_traced_graph_behind(digits):
    # TensorFlow's global gradient registry used to keep every model's traced training step
    # (Keras' optimizer defines a custom gradient per trace): ~1.9 MiB a trial in a long worker.
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the traced-graph leak is TensorFlow's")
    from tensorflow.python.framework import ops
    from tensorflow.python.framework.func_graph import FuncGraph

    def live_graphs() -> int:
        models.clear_state()  # collects garbage
        return sum(1 for o in gc.get_objects() if isinstance(o, FuncGraph))

    def custom_gradients() -> int:
        return sum(1 for name in ops._gradient_registry._registry if name.startswith("CustomGradient-"))

    quick = TrainConfig(learning_rate=1e-2, batch_size=64, epochs=1)
    models.train(FAST_MLP, quick, digits)
    graphs, gradients = live_graphs(), custom_gradients()
    for _ in range(3):
        assert models.train(FAST_MLP, quick, digits).log.epochs_run == 1
    assert live_graphs() == graphs
    assert custom_gradients() == gradients


def _weights_after_training(optimizer) -> list[np.ndarray]:
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", steps_per_execution=4)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(256, 8)).astype("float32"), rng.integers(0, 3, 256)
    model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    return model.get_weights()


@pytest.mark.parametrize("name, kwargs", [
    ("Adam", {}), ("SGD", {"momentum": 0.9}), ("RMSprop", {}), ("RMSprop", {"momentum": 0.5}),
])
def test_fused_optimizers_train_exactly_as_keras_own(name, kwargs):
    # One TensorFlow kernel per variable instead of Keras' ~20 operations, with the same arithmetic.
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the fused updates are TensorFlow kernels")
    from digitune.models import _fused

    plain, fused = getattr(keras.optimizers, name), getattr(_fused, f"Fused{name}")
    expected = _weights_after_training(plain(learning_rate=0.01, **kwargs))
    got = _weights_after_training(fused(learning_rate=0.01, **kwargs))
    other = _weights_after_training(plain(learning_rate=0.02, **kwargs))
    assert max(float(np.max(np.abs(e - g))) for e, g in zip(expected, got)) < 1e-5
    assert max(float(np.max(np.abs(e - o))) for e, o in zip(expected, other)) > 1e-2  # the check can tell


@pytest.mark.parametrize("name, kernel", [
    ("Adam", "ResourceApplyAdam"), ("SGD", "ResourceApplyKerasMomentum"), ("RMSprop", "ResourceApplyRMSProp"),
])
def test_fused_optimizers_trace_one_kernel_per_variable(name, kernel):
    # If Keras renamed the method the fused optimizers override, they would quietly trace Keras' update.
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the fused updates are TensorFlow kernels")
    import tensorflow as tf

    from digitune.models import _fused

    def traced_ops(cls) -> list[str]:
        optimizer = cls(learning_rate=0.01, **({"momentum": 0.9} if name == "SGD" else {}))
        variables = [keras.Variable(np.ones((3, 2), "float32")), keras.Variable(np.ones(2, "float32"))]
        optimizer.build(variables)

        @tf.function
        def step():
            optimizer.apply([tf.ones((3, 2)), tf.ones(2)], variables)

        return [op.type for op in step.get_concrete_function().graph.get_operations()]

    fused, plain = traced_ops(getattr(_fused, f"Fused{name}")), traced_ops(getattr(keras.optimizers, name))
    assert fused.count(kernel) == 2 and plain.count(kernel) == 0
    assert len(fused) < len(plain)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_training_on_tensorflow_uses_the_fused_optimizers_and_no_grappler(optimizer, digits):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow only")
    import tensorflow as tf

    result = models.train(FAST_MLP, TrainConfig(optimizer=optimizer, learning_rate=1e-2, epochs=1), digits)
    assert type(result.model.optimizer).__name__ == {"adam": "FusedAdam", "sgd": "FusedSGD",
                                                     "rmsprop": "FusedRMSprop"}[optimizer]
    assert result.log.epochs_run == 1 and math.isfinite(result.log.curves["loss"][0])
    if not tf.config.list_physical_devices("GPU"):
        assert tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer") is True


def test_describe_device():
    device = models.describe_device()
    assert isinstance(device, str)
    assert device == device.lower()
    kind, _, index = device.rpartition(":")
    assert kind and index.isdigit(), device
    assert kind in {"cpu", "gpu", "cuda", "tpu"} or "gpu" in kind or "cpu" in kind, device


_IMPORT_KERAS = "import sys; {first}; import keras; print('imported', keras.backend.backend(), file=sys.stderr)"


def _import_keras_stderr(first: str, level: str) -> str:
    import os
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": level, "KERAS_BACKEND": "tensorflow"}
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)  # TensorFlow's default: on, on x86
    result = subprocess.run([sys.executable, "-c", _IMPORT_KERAS.format(first=first)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_importing_models_keeps_tensorflows_start_up_notices_off_stderr():
    plain = _import_keras_stderr("pass", "3")
    if "oneDNN custom operations are on" not in plain:
        pytest.skip("this TensorFlow build prints no oneDNN notice here (oneDNN is off on this CPU)")
    quiet = _import_keras_stderr("import digitune.models", "3")
    assert quiet.strip() == "imported tensorflow", quiet
    # Asked for every log line, it filters nothing.
    assert "oneDNN custom operations are on" in _import_keras_stderr("import digitune.models", "0")


def test_filtered_stderr_passes_on_every_other_line():
    import os
    import subprocess
    import sys

    code = ("import os; from digitune.models._quiet import filtered_stderr\n"
            "with filtered_stderr():\n"
            "    os.write(2, b'I0000 port.cc:153] oneDNN custom operations are on. You may see\\n')\n"
            "    os.write(2, b'a real warning\\n')\n"
            "os.write(2, b'after\\n')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode == 0, result.stderr
    assert result.stderr == "a real warning\nafter\n"
