"""The objective: a callable built once per worker with its dataset; a trial only trains."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from typing import Any

import optuna

from digitune.models import Dataset, ModelConfig, TrainConfig

from ._artifacts import ModelKeeper
from ._deadline import stop_at_deadline
from ._fidelity import fidelity_attrs, pruning_callback
from .storage._writes import write_trial_attrs
from ._schema import BASELINE_ATTR, CURVES_ATTR, FAIL_ATTR, STOPPED_ATTR
from ._signals import Interrupt
from ._space import sample_configs, trial_seed
from ._spec import StudySpec

_logger = logging.getLogger("digitune")



class Objective:
    """Trains the model a trial samples and returns its scores on the study's objectives.

    Single-objective trials report each epoch's validation accuracy to the pruner; every trial,
    pruned or failed too, stores its curves, size, configs and device. Why it is built this way: docs/internals.md, "search/_objective.py Objective".
    """

    def __init__(self, spec: StudySpec, dataset: Dataset, interrupt: Interrupt | None = None,
                 keeper: ModelKeeper | None = None, deadline: float | None = None):
        self.spec = spec
        self.dataset = dataset
        self.interrupt = interrupt or Interrupt()
        self.keeper = keeper
        self.deadline = deadline

    def configs(self, trial: optuna.Trial) -> tuple[ModelConfig, TrainConfig]:
        """The trial's configs: a tutorial preset for a baseline trial, else sampled from the space."""
        from digitune.models import get_preset

        baseline = trial.user_attrs.get(BASELINE_ATTR)
        if baseline:
            preset = get_preset(baseline, self.dataset.info.image_shape)
            return preset.model, dataclasses.replace(preset.train, seed=trial_seed(self.spec, trial.number))
        model_config, train_config = sample_configs(trial, self.spec)
        if self.spec.early_stopping and not self.spec.is_multi_objective:
            train_config = dataclasses.replace(train_config, early_stopping_patience=self.spec.early_stopping)
        return model_config, train_config

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        from digitune.models import TrainLog, class_report, train

        try:
            model_config, train_config = self.configs(trial)
        except Exception as exc:
            _fail(trial, exc)
            raise
        log = TrainLog()
        stopped: list[int] = []
        callbacks, fidelity = self._callbacks(trial, log, stopped)
        write_trial_attrs(trial, {"family": model_config.family, "model_config": model_config.to_dict(),
                               "train_config": train_config.to_dict(), **fidelity})
        try:
            self.interrupt.check()
            result = train(model_config, train_config, self.dataset, callbacks, log=log,
                           after_batch=self.interrupt.check)
        except KeyboardInterrupt:
            _record(trial, log)
            write_trial_attrs(trial, {FAIL_ATTR: f"interrupted by {self.interrupt.requested or 'SIGINT'}"})
            raise
        except optuna.TrialPruned:
            _record(trial, log)
            raise
        except Exception as exc:  # NaN loss, out of memory, any other error: this trial fails alone
            _record(trial, log)
            _fail(trial, exc)
            raise
        feasible = True
        if self.spec.max_params is not None:
            trial.set_constraint("max_params", float(log.params - self.spec.max_params))
            feasible = log.params <= self.spec.max_params
        report = class_report(result.model, self.dataset.x_val, self.dataset.y_val, self.dataset.info.num_classes)
        _record(trial, log, {**report, **({STOPPED_ATTR: log.epochs_run} if stopped else {})})
        scores = {
            "val_accuracy": result.val_accuracy,
            "val_loss": result.val_loss,
            "params": float(log.params),
            "train_seconds": log.train_seconds,
        }
        if "latency_ms" in self.spec.metrics:
            scores["latency_ms"] = _latency_ms(result.model, self.dataset)
            write_trial_attrs(trial, {"latency_ms": scores["latency_ms"]})
        values = tuple(scores[m] for m in self.spec.metrics)
        if self.keeper is not None:
            try:
                self.keeper.offer(trial, result.model, values[0], feasible)
            except Exception as exc:  # a full disk under the artifact store, say: this trial fails with why
                _fail(trial, exc)
                raise
        return values if self.spec.is_multi_objective else values[0]

    def _callbacks(self, trial: optuna.Trial, log: Any, stopped: list[int]) -> tuple[list[Any], dict[str, Any]]:
        """The trial's Keras callbacks (its stopping rule or pruning, then the deadline) and its fidelity attributes.

        A single-objective trial reports to the pruner at steps counted as the study's
        ``fidelity`` says (``search/_fidelity.py``); the deadline's callback comes after, so a
        trial pruned at the deadline's epoch is pruned. ``stopped`` hears from the deadline.
        """
        callbacks: list[Any] = []
        fidelity: dict[str, Any] = {}
        if self.spec.is_multi_objective:
            callbacks.append(_stop_when_stalled(self.spec.early_stopping or 2))
        elif self.spec.pruner != "none" and BASELINE_ATTR not in trial.user_attrs:
            cost, fidelity = fidelity_attrs(self.spec.fidelity, trial.study)
            callbacks.append(pruning_callback(trial, log.curves, cost))
        if self.deadline is not None:
            callbacks.append(stop_at_deadline(self.deadline, stopped))
        return callbacks, fidelity


def _stop_when_stalled(patience: int):
    import keras

    return keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=patience)


def _latency_ms(model, dataset: Dataset) -> float:
    """Milliseconds per image for predicting the validation set (after one warm-up call)."""
    x = dataset.x_val
    model.predict(x[:32], verbose=0)
    start = time.perf_counter()
    model.predict(x, batch_size=256, verbose=0)
    return 1000 * (time.perf_counter() - start) / max(len(x), 1)


_WORKER = f"{socket.gethostname()}:{os.getpid()}"  # which process ran a trial, when several share a study


def _record(trial: optuna.Trial, log, extra: dict[str, Any] | None = None) -> None:
    attrs: dict[str, Any] = {
        CURVES_ATTR: log.curves,
        "params_count": log.params,
        "train_seconds": round(log.train_seconds, 4),
        "epochs_run": log.epochs_run,
        "keras_backend": log.backend,
        "device": log.device,
        "dtype_policy": log.dtype_policy,
        "worker": _WORKER,
        **(extra or {}),
    }
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:  # a worker started with --gpus sees one card as gpu:0; record which one it was
        attrs["cuda_visible_devices"] = visible
    write_trial_attrs(trial, attrs)


def _fail(trial: optuna.Trial, exc: BaseException) -> None:
    reason = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:500]
    write_trial_attrs(trial, {FAIL_ATTR: reason})
    _logger.warning("trial %d failed: %s", trial.number, reason)
