"""digitune's Keras side: data, model configs and builders, tutorial presets, training.

Configs, presets and data need only numpy; the names that need Keras (``build_model``,
``train`` and friends) import it on first use, so commands that only read a study database
start fast. Nothing here imports ``search``.
"""

from __future__ import annotations

from digitune._lazy import lazy_getattr

from ._config import (
    ACTIVATIONS,
    INITIALIZERS,
    MODEL_CONFIGS,
    OPTIMIZERS,
    CNNConfig,
    ConfigError,
    ConvBlock,
    MLPConfig,
    ModelConfig,
    TrainConfig,
    model_config_from_dict,
)
from ._knobs import HIGHEST, Knob
from ._data import DataError, Dataset, DatasetInfo, load_dataset, read_images
from ._files import atomic_open, atomic_path, is_temporary
from ._presets import PRESET_NAMES, Preset, get_preset
from ._quiet import install as _quiet_tensorflow_notices

_quiet_tensorflow_notices()

_LAZY = {
    "build_model": "._builders",
    "train": "._train",
    "TrainLog": "._train",
    "TrainResult": "._train",
    "TrainingError": "._train",
    "clear_state": "._train",
    "describe_device": "._train",
    "predict_proba": "._train",
    "evaluate": "._train",
    "class_report": "._train",
    "load_model": "._saving",
    "save_model": "._saving",
    "portable_copy": "._saving",
    "average_model": "._ensemble",
}

__all__ = [
    "ACTIVATIONS",
    "HIGHEST",
    "INITIALIZERS",
    "Knob",
    "MODEL_CONFIGS",
    "OPTIMIZERS",
    "CNNConfig",
    "ConfigError",
    "ConvBlock",
    "DataError",
    "Dataset",
    "DatasetInfo",
    "MLPConfig",
    "ModelConfig",
    "PRESET_NAMES",
    "Preset",
    "TrainConfig",
    "atomic_open",
    "atomic_path",
    "get_preset",
    "is_temporary",
    "load_dataset",
    "model_config_from_dict",
    "read_images",
    *_LAZY,
]

__getattr__ = lazy_getattr(__name__, _LAZY, globals())
