"""Training epochs on backend tensors: on TensorFlow a whole epoch per call, elsewhere Keras' ``fit``.

Why it is built this way: docs/internals.md, "models/_epochs.py".
"""

from __future__ import annotations

import math
import time
import weakref
from typing import Callable, Sequence

import keras
import numpy as np

# One call into TensorFlow runs about this long at most (after the first, which traces), so
# the per-batch hook (Ctrl-C) is heard that often; a small data set's epoch is one call.
CALL_SECONDS = 0.25
FIRST_CALL_STEPS = 64  # the first call's steps, before the time of a step is known
# Keras' fit (other backends, and TensorFlow under a strategy or XLA): steps per call into the
# backend. A whole epoch per call made TensorFlow's fit no faster on the digits than 8 did
# (docs/benchmarks.md) and drew its warning about functions traced too often; PyTorch takes 1.
STEPS_PER_EXECUTION = 8
VALIDATION_BATCH = 1024  # held-out images per forward pass (the digits' 432 are one)

_tensors: dict[int, tuple[weakref.ref, object]] = {}


def _tf():
    import tensorflow as tf

    return tf


def backend_tensor(array: np.ndarray):
    """``array`` as a TensorFlow tensor, converted once while ``array`` lives (a worker's data set).

    Cached by identity: the entry goes when ``array`` is garbage (``clear_state`` collects),
    so a worker's data are converted once and a dropped data set frees its copy.
    """
    key = id(array)
    entry = _tensors.get(key)
    if entry is not None and entry[0]() is array:
        return entry[1]
    tensor = _tf().constant(array)
    _tensors[key] = (weakref.ref(array, lambda _, key=key: _tensors.pop(key, None)), tensor)
    return tensor


def cached_arrays() -> int:
    """How many arrays have a backend tensor cached now."""
    return len(_tensors)


def fast_epochs(model: keras.Model) -> bool:
    """Whether ``fit_epochs`` trains ``model`` with digitune's epoch loop (else with ``model.fit``)."""
    if keras.backend.backend() != "tensorflow" or model.run_eagerly or model.jit_compile:
        return False
    return not _tf().distribute.has_strategy()


def steps_per_execution() -> int:
    """Steps per call into the backend for ``model.fit``: ``STEPS_PER_EXECUTION``, 1 on PyTorch."""
    return 1 if keras.backend.backend() == "torch" else STEPS_PER_EXECUTION


def fit_epochs(model: keras.Model, x: np.ndarray, y: np.ndarray, *, batch_size: int, epochs: int,
               callbacks: Sequence[keras.callbacks.Callback], seed: int,
               validation: tuple[np.ndarray, np.ndarray] | None = None, verbose: int = 0) -> None:
    """Train compiled ``model`` on ``x``, ``y`` for ``epochs``, shuffled every epoch, with Keras ``callbacks``.

    Callbacks see what ``fit`` gives them: ``loss`` and ``accuracy`` at every epoch's end,
    ``on_train_batch_end`` after every call into the backend, ``model.stop_training``.
    ``validation`` (images, class indices) adds ``val_loss`` (the plain cross-entropy,
    clipped as ``models.evaluate`` clips it) and ``val_accuracy`` to every epoch's logs, from
    a forward pass in the epoch's last call (Keras' own validation where ``fit`` trains).
    """
    if not fast_epochs(model):
        model.fit(x, y, batch_size=batch_size, epochs=epochs, callbacks=list(callbacks), shuffle=True,
                  validation_data=validation, verbose=verbose)
        return
    callback_list = keras.callbacks.CallbackList(list(callbacks), add_history=True, add_progbar=verbose != 0,
                                                 verbose=verbose, epochs=epochs, model=model,
                                                 steps=math.ceil(len(x) / batch_size))
    runner, rng, logs = _Epochs(model, x, y, batch_size, validation), np.random.default_rng(seed), {}
    model.stop_training = False
    callback_list.on_train_begin()
    for epoch in range(epochs):
        callback_list.on_epoch_begin(epoch)
        logs = runner.epoch(rng.permutation(len(x)), callback_list)
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    model.optimizer.finalize_variable_values(model.trainable_weights)
    callback_list.on_train_end(logs)


class _Epochs:
    """One model's epochs: its data as tensors, its traced function (at the first call), the calls' pace."""

    def __init__(self, model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int,
                 validation: tuple[np.ndarray, np.ndarray] | None):
        tf = _tf()
        self.model, self.batch_size, self.images = model, batch_size, len(x)
        self.data = (backend_tensor(x), backend_tensor(y))
        self.validate = validation is not None
        held_out = tuple(backend_tensor(a) for a in validation) if self.validate else (self.data[0][:0],
                                                                                     tf.zeros([0], tf.int64))
        self.held_out = len(held_out[0])
        self.nothing = (tf.zeros([0], tf.int64), held_out[0][:0], held_out[1][:0])  # no steps, no images
        self.chunks = [(held_out[0][i:i + VALIDATION_BATCH], held_out[1][i:i + VALIDATION_BATCH])
                       for i in range(0, self.held_out, VALIDATION_BATCH)]  # the digits' 432: one
        self.run, self.pace = None, _Pace()

    def epoch(self, order: np.ndarray, callback_list) -> dict[str, float]:
        """Train on ``order``'s batches in calls of about ``CALL_SECONDS``, validate in the last: the epoch's logs."""
        steps, chunks = math.ceil(self.images / self.batch_size), list(self.chunks)
        done, sums, logs = 0, np.zeros(4), {}
        while done < steps and not self.model.stop_training:
            size = self.pace.steps(steps - done)
            callback_list.on_train_batch_begin(done)
            held_out = chunks.pop(0) if done + size == steps and chunks else self.nothing[1:]
            start = time.perf_counter()
            sums += self._call(order[done * self.batch_size:(done + size) * self.batch_size], *held_out)
            self.pace.took(size, time.perf_counter() - start)
            done += size
            seen = min(done * self.batch_size, self.images)
            logs = {"loss": sums[0] / seen, "accuracy": sums[1] / seen}
            callback_list.on_train_batch_end(done - 1, dict(logs))
        for held_out in chunks:  # a large validation set, or training stopped
            sums += self._call(None, *held_out)
        if self.validate:
            logs["val_loss"], logs["val_accuracy"] = (sums[2] / self.held_out, sums[3] / self.held_out) if \
                self.held_out else (math.nan, 0.0)  # as models.evaluate scores no images
        return logs

    def _call(self, order: np.ndarray | None, x_val, y_val) -> np.ndarray:
        if self.run is None:  # traced in the first epoch, as fit does
            self.run = _epoch_function(self.model, self.batch_size, self.data, (x_val, y_val))
        order = self.nothing[0] if order is None else _tf().constant(order)
        return self.run(*self.data, order, x_val, y_val).numpy().astype(np.float64)


class _Pace:
    """How many steps the next call runs: about ``CALL_SECONDS`` of them, from the calls so far."""

    def __init__(self):
        self.calls, self.seconds_per_step = 0, None

    def steps(self, left: int) -> int:
        if self.seconds_per_step is None:
            return min(left, FIRST_CALL_STEPS)
        return max(1, min(left, int(CALL_SECONDS / max(self.seconds_per_step, 1e-9))))

    def took(self, steps: int, seconds: float) -> None:
        self.calls += 1
        if self.calls > 1 and steps:  # the first call traces the function
            self.seconds_per_step = seconds / steps


def _spec(tensor):
    return _tf().TensorSpec([None, *tensor.shape[1:]], tensor.dtype)


def _epoch_function(model: keras.Model, batch_size: int, data, held_out) -> Callable:
    """A traced ``(x, y, order, x_val, y_val) -> sums``: a training step per batch of ``order``, then validation.

    The step is Keras' own: the model called with ``training=True``, ``compute_loss`` (the
    compiled loss and any regularization), the optimizer's ``scale_loss`` and ``apply``. The
    sums: the training loss weighted by batch size and the training hits, as ``fit``'s
    metrics count them (``y`` may be class indices or one-hot, smoothed, targets), then from
    one forward pass over ``x_val`` (none when it is empty) the held-out cross-entropy and hits.
    """
    tf = _tf()
    weights, optimizer = model.trainable_weights, model.optimizer

    def step(x, y):
        with tf.GradientTape() as tape:
            probabilities = model(x, training=True)
            loss = model.compute_loss(x, y, probabilities, training=True)
            scaled = optimizer.scale_loss(loss)
        optimizer.apply(tape.gradient(scaled, weights), weights)
        labels = y if y.shape.rank == 1 else tf.argmax(y, axis=-1)
        return tf.cast(loss, tf.float32), _hits(probabilities, labels)

    def run(x, y, order, x_val, y_val):
        count = tf.shape(order)[0]

        def body(i, loss_sum, correct):
            batch = order[i * batch_size:tf.minimum(count, (i + 1) * batch_size)]
            loss, hits = step(tf.gather(x, batch), tf.gather(y, batch))
            return i + 1, loss_sum + loss * tf.cast(tf.shape(batch)[0], tf.float32), correct + hits

        steps = (count + batch_size - 1) // batch_size
        _, loss_sum, correct = tf.while_loop(lambda i, *_: i < steps, body, (tf.constant(0), 0.0, 0.0),
                                             parallel_iterations=1)
        def validate():
            probabilities = tf.cast(model(x_val, training=False), tf.float32)
            labels = tf.cast(y_val, tf.int64)
            picked = tf.clip_by_value(tf.gather(probabilities, labels, batch_dims=1), 1e-7, 1 - 1e-7)
            return tf.stack([-tf.reduce_sum(tf.math.log(picked)), _hits(probabilities, labels)])

        # No forward pass over an empty batch: oneDNN's fused Conv2D+BiasAdd (a CNN without batch
        # norm) fails on one ("input depth must be evenly divisible by filter depth: 1 vs 8").
        held_out = tf.cond(tf.shape(x_val)[0] > 0, validate, lambda: tf.zeros([2], tf.float32))
        return tf.concat([tf.stack([loss_sum, correct]), held_out], axis=0)

    signature = [_spec(data[0]), _spec(data[1]), tf.TensorSpec([None], tf.int64), _spec(held_out[0]),
                 _spec(held_out[1])]
    # Traced once, here; calling the concrete function skips tf.function's argument matching
    # (and its warning about functions traced again and again: each trial traces its own).
    return tf.function(run, input_signature=signature, autograph=False).get_concrete_function()


def _hits(probabilities, labels):
    tf = _tf()
    return tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probabilities, axis=-1), tf.cast(labels, tf.int64)), tf.float32))
