"""The Keras callbacks ``train`` adds to every fit: per-epoch curves, validation, a per-batch hook."""

from __future__ import annotations

import math
import time
from typing import Callable

import keras
import numpy as np

CURVE_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")


class CurveRecorder(keras.callbacks.Callback):
    """Appends every epoch's logs to ``curves`` as they come, so a caller keeps them if fit stops early."""

    def __init__(self, curves: dict[str, list[float]]):
        super().__init__()
        self.curves = curves
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        for key in CURVE_KEYS:
            if key in logs:
                self.curves.setdefault(key, []).append(float(logs[key]))
        self.curves.setdefault("epoch_seconds", []).append(round(time.perf_counter() - self._start, 4))
        if not math.isfinite(float(logs.get("loss", 0.0))):
            self.model.stop_training = True  # train() turns this into a TrainingError


class Validation(keras.callbacks.Callback):
    """Adds ``val_loss`` and ``val_accuracy`` to every epoch's logs with plain forward passes.

    Where Keras' ``fit`` trains (``models._epochs.fast_epochs`` is false; digitune's own
    epochs validate inside their last call). Keras' own validation (``fit(validation_data=...)``)
    traces and compiles a test function for every new model: for the small models searched
    here that costs more than several epochs of training. ``evaluate(model, x, y)``
    (``models.evaluate``) runs eager forward passes in large batches and needs no tracing. It
    runs before the other callbacks, so early stopping, pruning and the curves see its values.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, evaluate: Callable, timings: dict[str, float]):
        super().__init__()
        self.x, self.y, self.evaluate, self.timings = x, y, evaluate, timings

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        start = time.perf_counter()
        logs["val_loss"], logs["val_accuracy"] = self.evaluate(self.model, self.x, self.y)
        self.timings["validation"] = self.timings.get("validation", 0.0) + time.perf_counter() - start


def loss_and_accuracy(probabilities: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Sparse categorical cross-entropy (clipped as Keras clips it) and accuracy of ``probabilities``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        picked = probabilities[np.arange(len(y)), y.astype(np.int64)]
        loss = float(-np.mean(np.log(np.clip(picked, 1e-7, 1 - 1e-7))))
    accuracy = float(np.mean(probabilities.argmax(axis=1) == y)) if len(y) else 0.0
    return loss, accuracy


class AfterBatch(keras.callbacks.Callback):
    """Calls ``hook`` after every call into the backend (a batch, or several run as one)."""

    def __init__(self, hook: Callable[[], None]):
        super().__init__()
        self.hook = hook

    def on_train_batch_end(self, batch, logs=None):
        self.hook()
