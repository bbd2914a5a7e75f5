"""The objective: a callable built once per worker with its dataset; a trial only trains."""

from __future__ import annotations

import logging

import optuna

from models import Dataset

from ._signals import Interrupt
from ._space import sample_configs
from ._spec import StudySpec

_logger = logging.getLogger("digitune")


class Objective:
    """Trains the model a trial samples and returns its last validation score.

    Reports the validation accuracy to Optuna after every epoch, so the pruner can stop
    a hopeless trial. Every trial, pruned or failed too, stores as user attributes its
    learning curves, parameter count, training seconds, configs, Keras backend and device.
    """

    def __init__(self, spec: StudySpec, dataset: Dataset, interrupt: Interrupt | None = None):
        self.spec = spec
        self.dataset = dataset
        self.interrupt = interrupt or Interrupt()

    def __call__(self, trial: optuna.Trial) -> float:
        from optuna_integration import KerasPruningCallback

        from models import ConfigError, TrainLog, train

        try:
            model_config, train_config = sample_configs(trial, self.spec)
        except ConfigError as exc:
            _fail(trial, exc)
            raise
        trial.set_user_attr("family", model_config.family)
        trial.set_user_attr("model_config", model_config.to_dict())
        trial.set_user_attr("train_config", train_config.to_dict())
        log = TrainLog()
        callbacks = [KerasPruningCallback(trial, "val_accuracy")] if self.spec.pruner != "none" else []
        self.interrupt.training = True
        try:
            result = train(model_config, train_config, self.dataset, callbacks, log=log,
                           after_batch=self.interrupt.check)
        except KeyboardInterrupt:
            _record(trial, log)
            trial.set_user_attr("fail_reason", f"interrupted by {self.interrupt.requested or 'SIGINT'}")
            raise
        except optuna.TrialPruned:
            _record(trial, log)
            raise
        except Exception as exc:  # NaN loss, out of memory, any other error: this trial fails alone
            _record(trial, log)
            _fail(trial, exc)
            raise
        finally:
            self.interrupt.training = False
        _record(trial, log)
        return result.val_accuracy if self.spec.metric == "val_accuracy" else result.val_loss


def _record(trial: optuna.Trial, log) -> None:
    trial.set_user_attr("curves", log.curves)
    trial.set_user_attr("params_count", log.params)
    trial.set_user_attr("train_seconds", round(log.train_seconds, 4))
    trial.set_user_attr("epochs_run", log.epochs_run)
    trial.set_user_attr("keras_backend", log.backend)
    trial.set_user_attr("device", log.device)


def _fail(trial: optuna.Trial, exc: BaseException) -> None:
    reason = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:500]
    trial.set_user_attr("fail_reason", reason)
    _logger.warning("trial %d failed: %s", trial.number, reason)

