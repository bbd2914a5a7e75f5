"""Model files: saved so that plain Keras 3 loads them (no digitune needed), and loaded in safe mode."""

from __future__ import annotations

import os

import keras

from ._data import DataError
from ._files import atomic_path
from ._fused import standard_optimizer


def portable_copy(model: keras.Model) -> keras.Model:
    """A copy of ``model`` (same layers, weights and compile settings) that names only Keras' own classes.

    Training compiles with digitune's fused optimizers (``_fused``), which a Keras without
    digitune cannot deserialize; the copy is compiled with the Keras optimizer each extends,
    carrying its settings and state, so ``keras.models.load_model`` works anywhere and a loaded
    model can be evaluated or trained on at once.
    """
    copy = keras.models.clone_model(model)
    for target, source in zip(copy.weights, model.weights, strict=True):
        target.assign(source)
    config = model.get_compile_config() if model.compiled else None
    if config:
        settings = keras.saving.deserialize_keras_object(config)
        optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)  # mixed precision wraps it
        settings["optimizer"] = standard_optimizer(optimizer, copy.trainable_variables)
        copy.compile(**settings)
    return copy


def save_model(model: keras.Model, path: str | os.PathLike) -> None:
    """Save ``model`` to ``path`` (``.keras``) as ``portable_copy`` makes it, through a temporary file beside it.

    An interruption or a full disk leaves the file that was there before (or none), never a
    truncated one; the ``OSError`` of a failed write propagates.
    """
    copy = portable_copy(model)
    with atomic_path(path) as temp:
        copy.save(temp)


def load_model(path: str | os.PathLike, *, compile: bool = False) -> keras.Model:
    """A saved ``.keras`` model, loaded in Keras' safe mode (no arbitrary code from the file).

    ``compile=True`` restores its optimizer too (digitune's fused ones as well, for files saved
    before models were saved portable), so ``save_model`` can carry its state on.
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such model file; export one with: digitune export-model NAME -o model.keras")
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as exc:
        raise DataError(f"{path}: not a loadable Keras 3 model ({type(exc).__name__}: "
                        f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''})") from exc
