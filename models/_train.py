"""Training one model: compile, fit (``_epochs``) with per-epoch curves, evaluate, clear Keras state."""

from __future__ import annotations

import contextlib
import gc
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import keras
import numpy as np

from ._builders import build_model
from ._callbacks import CURVE_KEYS, AfterBatch, CurveRecorder, Validation, loss_and_accuracy
from ._config import ModelConfig, TrainConfig
from ._data import Dataset
from ._epochs import fast_epochs, fit_epochs, steps_per_execution
from ._fused import make_optimizer
from ._recipe import augmentation, learning_rate, loss_and_labels
from ._tf_private import forget_traced_gradients


class TrainingError(RuntimeError):
    """A trial's training failed on its own (NaN loss, out of memory); the search goes on."""


@dataclass
class TrainLog:
    """What is known of a training run so far, filled in place as it goes.

    A caller that passes its own ``TrainLog`` keeps the parameter count and the curves
    of epochs already run even when a callback (a pruner, say) stops training early.
    """

    params: int = 0
    device: str = ""
    backend: str = ""
    dtype_policy: str = ""  # "float32", or "mixed_float16" under mixed precision
    curves: dict[str, list[float]] = field(default_factory=dict)
    train_seconds: float = 0.0
    # Where the time went, in seconds: clear, build (and compile), first_epoch, later_epochs,
    # validation (included in the epochs; none on the fast epochs, whose calls validate), test.
    # For bench/trial_breakdown.py; not stored.
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def epochs_run(self) -> int:
        return len(self.curves.get("loss", []))


@dataclass
class TrainResult:
    model: keras.Model
    log: TrainLog
    val_loss: float | None
    val_accuracy: float | None
    test_loss: float | None = None
    test_accuracy: float | None = None


def describe_device() -> str:
    """The device Keras trains on, e.g. ``cpu:0`` or ``gpu:0``."""
    try:
        devices = keras.distribution.list_devices()
    except Exception:  # some backends cannot list devices; CPU is what they run on then
        return "cpu:0"
    gpus = [d for d in devices if "gpu" in d.lower() or "cuda" in d.lower()]
    return (gpus or devices or ["cpu:0"])[0].lower()


_frozen = False


def clear_state() -> None:
    """Free what earlier models left in Keras' global state, so long-lived workers stay flat.

    A full garbage collection walks every object Python tracks, and after importing
    TensorFlow that is about a million of them (0.2 to 0.3 s per call on 2 cores). The first
    call moves everything alive then (the libraries, the dataset) into the permanent
    generation (``gc.freeze``), so later collections walk only what the models left.
    """
    global _frozen
    keras.backend.clear_session(free_memory=False)
    gc.collect()
    if not _frozen:
        gc.freeze()
        _frozen = True


def _build_training_state(model: keras.Model, x: np.ndarray, y: np.ndarray) -> None:
    """Create the optimizer's slots (and, for Keras' ``fit``, the metrics' variables) now, eagerly.

    Left to the traced step, they are created while TensorFlow traces it, and a
    ``tf.function`` that creates variables is traced twice: that second trace was half of
    a trial's first epoch. The numbers trained are the same either way. digitune's own
    epochs (``_epochs``) count loss and accuracy themselves: no metrics to build.
    """
    model.optimizer.build(model.trainable_variables)
    if fast_epochs(model):
        return
    with _no_grad():
        model.compute_metrics(x, y, model(x, training=False), None)
    model.reset_metrics()


_tensorflow_configured = False
GRAPPLER_ENV = "DIGITUNE_TF_GRAPPLER"


def _configure_tensorflow() -> None:
    """Turn off Grappler, TensorFlow's graph optimizer, for training on the CPU (once per process).

    Grappler rewrites every traced function when it first runs. For the small models
    searched here that rewrite costs more than it gives back: on the 8x8 digits it adds
    0.04 to 0.05 s to a trial's first epoch and a third to two thirds to every later one
    (docs/benchmarks.md, ``bench/fixed_models.py``); on 28x28 images it makes no measurable
    difference. Where a GPU is visible it stays on (its layout rewrites matter there), and
    ``DIGITUNE_TF_GRAPPLER=on`` keeps it on anywhere.
    """
    global _tensorflow_configured
    if _tensorflow_configured or keras.backend.backend() != "tensorflow":
        return
    _tensorflow_configured = True
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU") and os.environ.get(GRAPPLER_ENV) != "on":
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


def train(model_config: ModelConfig, train_config: TrainConfig, dataset: Dataset,
          callbacks: Sequence[keras.callbacks.Callback] = (), *, evaluate_test: bool = False,
          log: TrainLog | None = None, after_batch: Callable[[], None] | None = None,
          merge_validation: bool = False, verbose: int = 0) -> TrainResult:
    """Build, compile and fit ``model_config`` on ``dataset`` with ``train_config``.

    ``log``, when given, is filled in place (the parameter count once built, the curves after
    every epoch), so the caller keeps them when a callback such as a pruner stops training
    with an exception. ``after_batch`` runs after every call into the backend and may raise
    to stop training there. ``merge_validation`` fits train + validation with no validation
    pass. A NaN or infinite loss, or running out of memory, raises ``TrainingError``.
    """
    log = TrainLog() if log is None else log
    model, x, y_fit = _prepare(model_config, train_config, dataset, log, merge_validation)
    validation = None if merge_validation else (dataset.x_val, dataset.y_val)
    all_callbacks = _all_callbacks(model, log, train_config, validation, after_batch, callbacks)
    if not fast_epochs(model):
        validation = None  # a Validation callback scores the epochs instead
    start = time.perf_counter()
    try:
        with _out_of_memory_as_training_error("training"), forget_traced_gradients():
            fit_epochs(model, x, y_fit, batch_size=train_config.batch_size, epochs=train_config.epochs,
                       callbacks=all_callbacks, seed=train_config.seed, validation=validation, verbose=verbose)
    finally:
        log.train_seconds = time.perf_counter() - start
        seconds = log.curves.get("epoch_seconds", [])
        log.timings["first_epoch"] = seconds[0] if seconds else log.train_seconds
        log.timings["later_epochs"] = float(sum(seconds[1:]))
    curves = log.curves
    _raise_unless_finite(curves.get("loss", []), train_config)
    result = TrainResult(model=model, log=log, val_loss=curves["val_loss"][-1] if "val_loss" in curves else None,
                         val_accuracy=curves["val_accuracy"][-1] if "val_accuracy" in curves else None)
    if evaluate_test:
        start = time.perf_counter()
        result.test_loss, result.test_accuracy = evaluate(model, dataset.x_test, dataset.y_test)
        log.timings["test"] = time.perf_counter() - start
    return result


def _prepare(model_config: ModelConfig, train_config: TrainConfig, dataset: Dataset, log: TrainLog,
             merge_validation: bool):
    """A fresh backend state and the compiled model, with the arrays to fit; the log gets its first fields."""
    timings = log.timings
    started = time.perf_counter()
    policy = keras.config.dtype_policy()  # clear_session resets it; a mixed-precision caller keeps its choice
    clear_state()
    _configure_tensorflow()
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(train_config.seed)
    timings["clear"] = time.perf_counter() - started
    x, y = dataset.x_train, dataset.y_train
    if merge_validation:
        x, y = np.concatenate([x, dataset.x_val]), np.concatenate([y, dataset.y_val])
    model, y_fit = _compiled_model(model_config, train_config, dataset, x, y)
    log.params = int(model.count_params())
    timings["build"] = time.perf_counter() - started - timings["clear"]
    log.device = describe_device()
    log.backend = keras.backend.backend()
    log.dtype_policy = keras.config.dtype_policy().name
    return model, x, y_fit


def _raise_unless_finite(losses: list[float], train_config: TrainConfig) -> None:
    """A ``TrainingError`` naming the first epoch whose training loss was NaN or infinite (or none ran)."""
    bad = [i for i, v in enumerate(losses, start=1) if not math.isfinite(v)]
    if not losses or bad:
        epoch = bad[0] if bad else 1
        raise TrainingError(
            f"training loss became NaN or infinite at epoch {epoch}; "
            f"try a lower learning rate (got {train_config.learning_rate:g}) or batch normalization"
        )


def _compiled_model(model_config: ModelConfig, train_config: TrainConfig, dataset: Dataset, x: np.ndarray,
                    y: np.ndarray) -> tuple[keras.Model, np.ndarray]:
    """The trial's model compiled with its optimizer and loss, its training state built; the labels to fit."""
    loss, y_fit = loss_and_labels(train_config, y, dataset.info.num_classes)
    with _out_of_memory_as_training_error("building the model"):
        model = build_model(model_config, dataset.x_train.shape[1:], dataset.info.num_classes,
                            augment=augmentation(train_config))
        model.compile(
            optimizer=make_optimizer(train_config.optimizer, learning_rate(train_config, len(x)),
                                     train_config.weight_decay),
            loss=loss,
            metrics=["accuracy"],
            steps_per_execution=steps_per_execution(),
        )
        _build_training_state(model, x[:2], y_fit[:2])
    return model, y_fit


def _all_callbacks(model: keras.Model, log: TrainLog, train_config: TrainConfig, validation: tuple | None,
                   after_batch: Callable[[], None] | None,
                   callbacks: Sequence[keras.callbacks.Callback]) -> list[keras.callbacks.Callback]:
    """digitune's callbacks around the caller's: validation where ``fit`` trains, curves, early stopping, the hook."""
    all_callbacks: list[keras.callbacks.Callback] = [CurveRecorder(log.curves)]
    if validation is not None and not fast_epochs(model):  # the fast epochs validate in their last call
        all_callbacks.insert(0, Validation(*validation, evaluate, log.timings))
    if train_config.early_stopping_patience and validation is not None:
        all_callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=train_config.early_stopping_patience, restore_best_weights=False))
    if after_batch is not None:
        all_callbacks.append(AfterBatch(after_batch))
    return all_callbacks + list(callbacks)


@contextlib.contextmanager
def _out_of_memory_as_training_error(doing: str) -> Iterator[None]:
    """Turn any backend's out-of-memory error into a ``TrainingError`` (this trial fails, the study goes on)."""
    try:
        yield
    except Exception as exc:
        if _is_out_of_memory(exc):
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise TrainingError(f"out of memory while {doing}: {first_line}") from exc
        raise


def _is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an out-of-memory error of any backend, told by name so none is imported here."""
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    return name in {"ResourceExhaustedError", "OutOfMemoryError"} or (
        name == "XlaRuntimeError" and "RESOURCE_EXHAUSTED" in str(exc)
    )


def predict_proba(model: keras.Model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Class probabilities for images ``x`` of shape (N, H, W).

    Plain forward passes in batches of ``batch_size``, not ``model.predict``: that traces
    and compiles a predict function per model, which for these small models and data sets
    costs far more than the arithmetic.
    """
    x = np.asarray(x, dtype=np.float32)
    if len(x) == 0:
        return np.zeros((0, int(model.outputs[0].shape[-1])), dtype=np.float32)
    with _no_grad():
        parts = [_to_numpy(model(x[i:i + batch_size], training=False)) for i in range(0, len(x), batch_size)]
    return np.concatenate(parts).astype(np.float32, copy=False)


def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int = 1024) -> tuple[float, float]:
    """Loss (sparse categorical cross-entropy) and accuracy of ``model`` on ``x``, ``y``, by forward passes."""
    return loss_and_accuracy(predict_proba(model, x, batch_size), y)


def _to_numpy(tensor) -> np.ndarray:
    """A backend tensor as a NumPy array (``.numpy()`` for TensorFlow and PyTorch, on the CPU)."""
    if hasattr(tensor, "detach"):  # torch
        tensor = tensor.detach().cpu()
    return np.asarray(tensor.numpy() if hasattr(tensor, "numpy") else tensor)


def _no_grad():
    """PyTorch's ``no_grad`` on the torch backend (no autograd graph for a forward pass), else nothing."""
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


def class_report(model: keras.Model, x: np.ndarray, y: np.ndarray, num_classes: int = 10) -> dict[str, list]:
    """The confusion matrix (rows: true class, columns: predicted) and per-class accuracy on ``x``, ``y``."""
    predicted = predict_proba(model, x).argmax(axis=1)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y.astype(np.int64), predicted), 1)
    totals = matrix.sum(axis=1)
    per_class = np.divide(np.diag(matrix), totals, out=np.zeros(num_classes), where=totals > 0)
    return {"confusion_matrix": matrix.tolist(), "per_class_accuracy": [round(float(v), 4) for v in per_class]}

