"""bench/time_to_accuracy.py's contenders other than digitune, the spaces and the event log they share.

The Optuna script and KerasTuner's Hyperband read the space generically: a family's model
config is ``MODEL_CONFIGS[family].from_search(values)``, the training config is built from
``TrainConfig``'s knobs, and the recipe is applied as a Keras user would: the augmentation
layers through ``build_model(..., augment=augmentation(tc))``, a plain ``keras.optimizers``
optimizer with ``learning_rate(tc, n_train)`` and ``weight_decay``, the loss and labels from
``loss_and_labels``. Not digitune's fused optimizers, nor its eager validation pass.
"""

from __future__ import annotations

import functools
import json
import math
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUDY_FILES = {"digits": "studies/digits.toml", "fashion-mnist": "studies/fashion.toml"}
TUTORIAL_SPACE = "bench/tutorial-space.toml"
MAX_EPOCHS = 10  # the tutorial space's epochs (5 to 50) are capped here, as the bench always did


def grace(budget: float) -> float:
    """How long after the budget a trial stopped at its next epoch end may still end and count."""
    return max(10.0, 0.05 * budget)


def digitune_spec(dataset: str, seed: int, budget: float, study: str | None = None):
    """digitune's study for ``dataset`` (``study``, else the shipped file) as is, but for its name, seed,
    timeout and an unbounded trial count."""
    from digitune.search import load_spec, spec_from_dict

    file = study or STUDY_FILES[dataset]
    data = load_spec(ROOT / file).to_dict()
    data["study"].update(name=f"tta-{dataset}-{seed}", trials=100000, seed=seed, timeout=budget)
    return spec_from_dict(data, source=f"{file} for the bench")


def contender_spec(dataset: str, space: str, seed: int, budget: float, study: str | None = None):
    """The contenders' space: ``tutorial`` (epochs capped at MAX_EPOCHS) or ``digitune`` (its study file);
    the data section is always digitune's study file's, so every contender sees the same split."""
    from digitune.search import load_spec, spec_from_dict

    spec = digitune_spec(dataset, seed, budget, study)
    if space == "digitune":
        return spec
    data = load_spec(ROOT / TUTORIAL_SPACE).to_dict()
    data["study"].update(name=spec.name, seed=seed, timeout=budget)
    data["data"] = spec.to_dict()["data"]
    epochs = data["space"]["epochs"]
    if isinstance(epochs, dict):
        data["space"]["epochs"] = {**epochs, "high": min(epochs["high"], MAX_EPOCHS),
                                   "low": min(epochs["low"], MAX_EPOCHS)}
    elif isinstance(epochs, int):
        data["space"]["epochs"] = min(epochs, MAX_EPOCHS)
    return spec_from_dict(data, source=f"{TUTORIAL_SPACE} on {dataset}")


def configs(spec, suggest, *, seed: int, epochs: int | None = None, scope=None):
    """(model config, train config) for one trial; ``suggest(name, param)`` picks a value (a constant is itself).

    ``epochs``, when given, is the training length instead of the space's (KerasTuner's
    Hyperband picks its own); ``scope(family)`` wraps the family's parameters.
    """
    import contextlib

    from digitune.models import MODEL_CONFIGS, TrainConfig

    def kind(value, knob):
        return float(value) if knob.kind == "float" else value

    family = suggest("family", spec.space["family"])
    knobs = MODEL_CONFIGS[family].search_knobs()
    with scope(family) if scope else contextlib.nullcontext():
        values = {n: kind(suggest(f"{family}_{n}", p), knobs[n]) for n, p in spec.family_space[family].items()}
    train = {n: kind(suggest(n, spec.space[n]), k) for n, k in TrainConfig.search_knobs().items()
             if not (n == "epochs" and epochs)}
    return MODEL_CONFIGS[family].from_search(values), TrainConfig(seed=seed, **train, **(
        {"epochs": epochs} if epochs else {}))


def compiled_model(model_config, train_config, data):
    """The model as a Keras user compiles it: augmentation layers, a plain Keras optimizer, the recipe's loss."""
    import keras

    from digitune.models import build_model
    from digitune.models._recipe import augmentation, learning_rate, loss_and_labels

    model = build_model(model_config, data.x_train.shape[1:], data.info.num_classes,
                        augment=augmentation(train_config))
    options = {"learning_rate": learning_rate(train_config, len(data.y_train)),
               "weight_decay": train_config.weight_decay or None}  # decoupled: Adam with it is AdamW
    optimizer = keras.optimizers.SGD(momentum=0.9, **options) if train_config.optimizer == "sgd" else \
        {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop}[train_config.optimizer](**options)
    loss, _ = loss_and_labels(train_config, data.y_train[:1], data.info.num_classes)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    return model


def labels(train_config, y, data):
    """The labels ``fit`` takes for ``y``: one-hot under label smoothing."""
    from digitune.models._recipe import loss_and_labels

    return loss_and_labels(train_config, y, data.info.num_classes)[1]


class Events:
    """JSON lines on a file: one per counted trial, and a final summary; time outside the clock is subtracted.

    A trial counts when it started within the budget and ended at most ``grace`` seconds after it.
    """

    def __init__(self, path: Path, budget: float, start: float):
        self.file = open(path, "a", buffering=1)
        self.budget, self.start, self.grace = budget, start, grace(budget)
        self.paused = 0.0
        self.started = 0.0
        self.best = -1.0
        self.epochs = 0
        self.trials = 0
        self.test_accuracy = float("nan")

    def now(self) -> float:
        return time.time() - self.start - self.paused

    def over(self) -> bool:
        return self.now() >= self.budget

    def counts(self, started: float, ended: float) -> bool:
        return started < self.budget and ended <= self.budget + self.grace

    def begin(self) -> None:
        self.started = self.now()

    def row(self, t: float, val: float, epochs: int, **extra) -> None:
        self.epochs += epochs
        self.trials += 1
        self.best = max(self.best, val)
        self.file.write(json.dumps({"t": t, "val": val, "best": self.best, "epochs": self.epochs, **extra}) + "\n")

    def trial(self, val_accuracy: float, epochs: int, model, dataset) -> None:
        t = self.now()
        if not self.counts(self.started, t):
            return
        if val_accuracy > self.best:  # the held-out test accuracy of the new best, off the clock
            pause = time.time()
            from digitune.models import evaluate

            self.test_accuracy = evaluate(model, dataset.x_test, dataset.y_test)[1]
            self.paused += time.time() - pause
        self.row(t, val_accuracy, epochs)

    def finish(self, **extra) -> None:
        elapsed = min(self.now(), self.budget)
        self.file.write(json.dumps({"final": {"best": self.best, "epochs": self.epochs, "trials": self.trials,
                                              "elapsed": elapsed, "test_accuracy": self.test_accuracy,
                                              **extra}}) + "\n")


def probe(events: Events):
    """A Keras callback that keeps a trial's epochs and last validation accuracy, and stops it at the budget."""
    import keras

    class Probe(keras.callbacks.Callback):
        def __deepcopy__(self, memo):  # KerasTuner copies the callbacks for every trial; they share one log
            return probe(events)

        def on_train_begin(self, logs=None):
            self.epochs, self.last = 0, 0.0

        def on_epoch_end(self, epoch, logs=None):
            self.epochs += 1
            value = float((logs or {}).get("val_accuracy", 0.0))
            self.last = value if math.isfinite(value) else 0.0
            if events.over():  # as digitune at its deadline: stop at this epoch end
                self.model.stop_training = True

    return Probe()


def run_optuna(dataset_name: str, space: str, seed: int, budget: float, events_path: Path, start: float,
               study: str | None = None) -> None:
    """The usual Optuna script: TPE, a fresh model a trial fitted with ``validation_data``, no pruning."""
    import keras
    import optuna

    from digitune.models import load_dataset
    from digitune.search._space import _suggest

    spec = contender_spec(dataset_name, space, seed, budget, study)
    data = load_dataset(spec.data.source, **spec.data.load_kwargs())
    events = Events(events_path, budget, start)

    def objective(trial: optuna.Trial) -> float:
        events.begin()
        keras.backend.clear_session()
        model_config, train_config = configs(spec, functools.partial(_suggest, trial), seed=seed + trial.number)
        model = compiled_model(model_config, train_config, data)
        watch = probe(events)
        model.fit(data.x_train, labels(train_config, data.y_train, data), batch_size=train_config.batch_size,
                  validation_data=(data.x_val, labels(train_config, data.y_val, data)),
                  epochs=train_config.epochs, callbacks=[watch], verbose=0)
        events.trial(watch.last, watch.epochs, model, data)
        return watch.last

    def stop(study: optuna.Study, trial) -> None:
        if events.over():
            study.stop()

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, callbacks=[stop], catch=(Exception,))
    events.finish()


def kt_param(hp, name: str, p):
    """A KerasTuner hyperparameter for a space entry (a constant is itself)."""
    from digitune.search._spec import Choice, Range

    if isinstance(p, Choice):
        if all(isinstance(c, bool) for c in p.choices):
            return hp.Boolean(name) if len(p.choices) > 1 else p.choices[0]
        return hp.Choice(name, list(p.choices))
    if isinstance(p, Range):
        sampling = "log" if p.log else "linear"
        if p.is_int:
            return hp.Int(name, int(p.low), int(p.high), step=None if p.log else int(p.step or 1), sampling=sampling)
        return hp.Float(name, p.low, p.high, step=p.step, sampling=sampling)
    return p


def run_kerastuner(dataset_name: str, space: str, seed: int, budget: float, events_path: Path, start: float,
               study: str | None = None) -> None:
    """``keras_tuner.Hyperband(max_epochs=the space's highest, factor=3)``, the batch size through ``fit``."""
    import keras_tuner as kt

    from digitune.models import load_dataset
    from digitune.search._spec import Choice

    spec = contender_spec(dataset_name, space, seed, budget, study)
    data = load_dataset(spec.data.source, **spec.data.load_kwargs())
    events = Events(events_path, budget, start)
    family_choice = isinstance(spec.space["family"], Choice)

    class Space(kt.HyperModel):
        def build(self, hp):
            events.begin()
            scope = (lambda family: hp.conditional_scope("family", [family])) if family_choice else None
            model_config, self.train_config = configs(spec, functools.partial(kt_param, hp), seed=seed,
                                                      epochs=spec.max_epochs, scope=scope)
            return compiled_model(model_config, self.train_config, data)

        def fit(self, hp, model, x, y, validation_data, callbacks=None, **kwargs):
            tc = self.train_config
            history = model.fit(x, labels(tc, y, data), batch_size=tc.batch_size, callbacks=callbacks,
                                validation_data=(validation_data[0], labels(tc, validation_data[1], data)), **kwargs)
            watch = next(c for c in callbacks if type(c).__name__ == "Probe")
            events.trial(watch.last, watch.epochs, model, data)
            if events.over():
                raise KeyboardInterrupt  # KerasTuner has no time budget: leave the search here
            return history

    # One Hyperband iteration (KerasTuner's default) is 30 trials on 10 epochs: on the digits it
    # ends in about 80 s, so let it start more iterations until the budget is spent.
    tuner = kt.Hyperband(Space(), objective="val_accuracy", max_epochs=spec.max_epochs, factor=3, seed=seed,
                         hyperband_iterations=1000,
                         directory=tempfile.mkdtemp(prefix="digitune-kt-"), project_name="tta", overwrite=True,
                         max_consecutive_failed_trials=100)
    try:
        tuner.search(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                     callbacks=[probe(events)], verbose=0)
    except KeyboardInterrupt:
        pass
    events.finish()
