"""Training epochs on backend tensors: on TensorFlow a whole epoch per call, elsewhere Keras' ``fit``.

For the small models searched here Keras' ``fit`` spends more time around the arithmetic
than in it: every fit builds a ``tf.data`` pipeline from the NumPy arrays, every epoch opens
an iterator on it, and its traced step (a ``while`` loop of ``cond`` branches over optional
batches, then Keras' metrics objects) costs more to trace than the model does. On
TensorFlow (no ``tf.distribute`` strategy, no XLA, not eager) ``fit_epochs`` runs Keras'
own pieces instead: the model's call, ``compute_loss``, the optimizer's ``apply``, in one
traced ``while`` loop over the batches of a shuffled index list, on the data converted once
per worker (``backend_tensor``), with the loss and accuracy summed in the loop. The same
arithmetic as ``fit`` on the same batches (``tests/test_fast_epochs.py``); only the shuffle
order comes from NumPy. Other backends (and those settings) train with ``model.fit``.
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
MAX_STEPS_PER_EXECUTION = 128  # Keras' fit (other backends): steps per call into the backend

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


def steps_per_execution(images: int, batch_size: int) -> int:
    """Steps per call into the backend for ``model.fit``: a whole epoch of a small data set; 1 on PyTorch."""
    if keras.backend.backend() == "torch":
        return 1
    return max(1, min(math.ceil(images / batch_size), MAX_STEPS_PER_EXECUTION))


def fit_epochs(model: keras.Model, x: np.ndarray, y: np.ndarray, *, batch_size: int, epochs: int,
               callbacks: Sequence[keras.callbacks.Callback], seed: int, verbose: int = 0) -> None:
    """Train compiled ``model`` on ``x``, ``y`` for ``epochs``, shuffled every epoch, with Keras ``callbacks``.

    Callbacks see what ``fit`` gives them: ``loss`` and ``accuracy`` at every epoch's end,
    ``on_train_batch_end`` after every call into the backend, ``model.stop_training``.
    """
    if not fast_epochs(model):
        model.fit(x, y, batch_size=batch_size, epochs=epochs, callbacks=list(callbacks), shuffle=True,
                  verbose=verbose)
        return
    tf = _tf()
    data, run = (backend_tensor(x), backend_tensor(y)), None
    steps = math.ceil(len(x) / batch_size)
    callback_list = keras.callbacks.CallbackList(list(callbacks), add_history=True, add_progbar=verbose != 0,
                                                 verbose=verbose, epochs=epochs, steps=steps, model=model)
    rng, pace, logs = np.random.default_rng(seed), _Pace(), {}
    model.stop_training = False
    callback_list.on_train_begin()
    for epoch in range(epochs):
        callback_list.on_epoch_begin(epoch)
        order, done, totals = rng.permutation(len(x)), 0, np.zeros(2)
        while done < steps and not model.stop_training:
            size = pace.steps(steps - done)
            callback_list.on_train_batch_begin(done)
            start = time.perf_counter()
            run = run or _epoch_function(model, batch_size, data)  # traced in the first epoch, as fit does
            totals += [float(v) for v in run(*data, tf.constant(order[done * batch_size:(done + size) * batch_size]))]
            pace.took(size, time.perf_counter() - start)
            done += size
            seen = min(done * batch_size, len(x))
            logs = {"loss": totals[0] / seen, "accuracy": totals[1] / seen}
            callback_list.on_train_batch_end(done - 1, dict(logs))
        logs = dict(logs)
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    model.optimizer.finalize_variable_values(model.trainable_weights)
    callback_list.on_train_end(logs)


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
        if self.calls > 1:  # the first call traces the function
            self.seconds_per_step = seconds / steps


def _spec(tensor):
    return _tf().TensorSpec([None, *tensor.shape[1:]], tensor.dtype)


def _epoch_function(model: keras.Model, batch_size: int, data) -> Callable:
    """A traced ``(x, y, order) -> (loss sum, correct)``: one training step per batch of ``order``.

    The step is Keras' own: the model called with ``training=True``, ``compute_loss`` (the
    compiled loss and any regularization), the optimizer's ``scale_loss`` and ``apply``. The
    loss is summed weighted by batch size and accuracy counted on the batch, as ``fit``'s
    metrics do; ``y`` may be class indices or one-hot (smoothed) targets.
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
        hits = tf.equal(tf.argmax(probabilities, axis=-1), tf.cast(labels, tf.int64))
        return tf.cast(loss, tf.float32), tf.reduce_sum(tf.cast(hits, tf.float32))

    def run(x, y, order):
        count = tf.shape(order)[0]

        def body(i, loss_sum, correct):
            batch = order[i * batch_size:tf.minimum(count, (i + 1) * batch_size)]
            loss, hits = step(tf.gather(x, batch), tf.gather(y, batch))
            return i + 1, loss_sum + loss * tf.cast(tf.shape(batch)[0], tf.float32), correct + hits

        steps = (count + batch_size - 1) // batch_size
        _, loss_sum, correct = tf.while_loop(lambda i, *_: i < steps, body, (tf.constant(0), 0.0, 0.0),
                                             parallel_iterations=1)
        return loss_sum, correct

    signature = [_spec(data[0]), _spec(data[1]), tf.TensorSpec([None], tf.int64)]
    # Traced once, here; calling the concrete function skips tf.function's argument matching
    # (and its warning about functions traced again and again: each trial traces its own).
    return tf.function(run, input_signature=signature, autograph=False).get_concrete_function()
