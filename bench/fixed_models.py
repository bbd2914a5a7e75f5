"""Seconds per trial for two fixed models, digitune's ``train`` beside plain Keras ``fit``, trial after trial.

    python bench/fixed_models.py [--dataset digits] [--trials 8] [--epochs 5] [--optimizer adam]
                                 [--batch-size 32] [--recipe] [--rounds 2] [--contenders digitune fit]
    DIGITUNE_CHECKOUT=/path/to/older/checkout python bench/fixed_models.py --contenders digitune --label before

Trains a two-layer MLP (64 units) and a two-block CNN (16 filters, 3x3, max pooling, 32
dense units), one thread, after two warm-up trials each, with each contender in its own
process (TensorFlow's settings are per process), the contenders' processes interleaved
round by round. The contenders:

- ``digitune``: ``models.train`` (its data converted once, its own epoch loop, eager
  validation, Grappler off);
- ``fit``: the same Keras model (``models.build_model``) trained the usual way: Keras'
  optimizer, ``compile(metrics=["accuracy"])``, ``fit(validation_data=...)``,
  ``keras.backend.clear_session()`` between trials, TensorFlow's defaults.

``--recipe`` trains both with the recipe knobs (one-cycle schedule, weight decay 0.01,
label smoothing 0.1, translation 0.1; the usual way gets them from ``models._recipe``:
the same Keras schedule, loss and layers). For each contender and model it prints the
median seconds per trial, of the first epoch (tracing plus one epoch), of a later epoch, the
fixed cost (a trial less its epochs at the later-epoch time) and digitune's phases; then
the ratios: digitune over fit, and for the MLP a later epoch over its arithmetic (the
epoch's matrix products alone, forward and backward through every Dense kernel, batch by
batch in one traced TensorFlow loop on the same shapes: what no training loop can beat).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

import _checkout

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
CHECKOUT = str(_checkout.install())
RECIPE = {"schedule": "one-cycle", "weight_decay": 0.01, "label_smoothing": 0.1, "translate": 0.1}
FIGURES = ("trial", "first", "later", "fixed", "clear", "build", "validation", "arithmetic")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--optimizer", default="adam", choices=("adam", "sgd", "rmsprop"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--recipe", action="store_true", help="one-cycle, weight decay, label smoothing, translation")
    parser.add_argument("--rounds", type=int, default=2, help="processes per contender, interleaved")
    parser.add_argument("--contenders", nargs="+", default=["digitune", "fit"], choices=("digitune", "fit"))
    parser.add_argument("--label", default="", help="a name for digitune's rows (e.g. before)")
    parser.add_argument("--child", choices=("digitune", "fit"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args)), flush=True)
        return
    runs: dict[str, list[dict]] = {name: [] for name in args.contenders}
    for _ in range(args.rounds):
        for name in args.contenders:
            command = [sys.executable, __file__, "--child", name, *_passed_on(args)]
            output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
            runs[name].append(json.loads(output.strip().splitlines()[-1]))
    report(runs, args)


def _passed_on(args) -> list[str]:
    passed = ["--dataset", args.dataset, "--trials", str(args.trials), "--epochs", str(args.epochs),
              "--optimizer", args.optimizer, "--batch-size", str(args.batch_size)]
    return passed + (["--recipe"] if args.recipe else [])


def measure(contender: str, args) -> dict[str, dict[str, float]]:
    """Median figures per model family for one contender, in this process."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from digitune.models import CNNConfig, ConvBlock, MLPConfig, TrainConfig, load_dataset

    dataset = load_dataset(args.dataset)
    block = ConvBlock(filters=16, kernel_size=3, padding="same", pool="max", pool_size=2)
    families = {"mlp": MLPConfig(hidden_layers=2, units=64), "cnn": CNNConfig(blocks=(block, block), dense_units=32)}
    recipe = RECIPE if args.recipe else {}
    one = _digitune_trial if contender == "digitune" else _fit_trial
    figures = {}
    for family, config in families.items():
        for seed in range(2):
            one(config, TrainConfig(epochs=1, batch_size=args.batch_size, seed=seed, optimizer=args.optimizer,
                                    **recipe), dataset)
        rows = [one(config, TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=seed,
                                        optimizer=args.optimizer, **recipe), dataset)
                for seed in range(10, 10 + args.trials)]
        figures[family] = {key: statistics.median(row[key] for row in rows) for key in rows[0] if key != "epochs"}
        figures[family]["fixed"] = statistics.median(row["trial"] - len(row["epochs"]) * figures[family]["later"]
                                                     for row in rows)
        if family == "mlp":
            figures[family]["arithmetic"] = _arithmetic_seconds(dataset, (64, 64), args.batch_size)
    figures["load"] = {"load": os.getloadavg()[0]}
    return figures


def _row(trial_seconds: float, epochs: list[float], accuracy: float, **phases) -> dict:
    later = statistics.median(epochs[1:]) if len(epochs) > 1 else math.nan  # the warm-up trials run one epoch
    return {"trial": trial_seconds, "epochs": epochs, "first": epochs[0], "later": later, "accuracy": accuracy,
            **phases}


def _digitune_trial(config, train_config, dataset) -> dict:
    from digitune.models import train

    start = time.perf_counter()
    result = train(config, train_config, dataset)
    seconds, timings = result.log.curves["epoch_seconds"], getattr(result.log, "timings", {})
    return _row(time.perf_counter() - start, seconds, result.val_accuracy,
                clear=timings.get("clear", math.nan), build=timings.get("build", math.nan),
                validation=timings.get("validation", math.nan) / len(seconds))


def _fit_trial(config, train_config, dataset) -> dict:
    """A trial the usual way: build, compile with Keras' optimizer and metrics, fit with validation, clear."""
    import keras
    import numpy as np

    from digitune.models import build_model
    from digitune.models._recipe import augmentation, learning_rate, loss_and_labels

    start = time.perf_counter()
    keras.backend.clear_session()
    keras.utils.set_random_seed(train_config.seed)
    loss, y = loss_and_labels(train_config, dataset.y_train, dataset.info.num_classes)
    y_val = dataset.y_val if y.ndim == 1 else np.eye(dataset.info.num_classes, dtype="float32")[dataset.y_val]
    model = build_model(config, dataset.x_train.shape[1:], dataset.info.num_classes,
                        augment=augmentation(train_config))
    rate = learning_rate(train_config, len(dataset.x_train))
    options = {"learning_rate": rate, "weight_decay": train_config.weight_decay or None}
    if train_config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(momentum=0.9, **options)
    else:
        optimizer = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop}[train_config.optimizer](**options)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    epochs: list[float] = []
    clock = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: epochs.append(time.perf_counter()),
                                           on_epoch_end=lambda epoch, logs: epochs.append(time.perf_counter()))
    history = model.fit(dataset.x_train, y, batch_size=train_config.batch_size, epochs=train_config.epochs,
                        validation_data=(dataset.x_val, y_val), callbacks=[clock], verbose=0)
    seconds = [end - begin for begin, end in zip(epochs[::2], epochs[1::2])]
    return _row(time.perf_counter() - start, seconds, history.history["val_accuracy"][-1],
                clear=math.nan, build=math.nan, validation=math.nan)


def _arithmetic_seconds(dataset, hidden: tuple[int, ...], batch_size: int, repeats: int = 7) -> float:
    """Seconds of one epoch's matrix products of the MLP alone (forward, and backward for every kernel)."""
    import tensorflow as tf

    sizes = (int(math.prod(dataset.x_train.shape[1:])), *hidden, dataset.info.num_classes)
    kernels = [tf.random.normal((a, b)) * 0.1 for a, b in zip(sizes, sizes[1:])]
    x = tf.random.normal((batch_size, sizes[0]))
    steps = math.ceil(len(dataset.x_train) / batch_size)

    def body(i, total):
        outputs = [x]
        for kernel in kernels:
            outputs.append(tf.matmul(outputs[-1], kernel))
        grad, sums = outputs[-1], []
        for layer in reversed(range(len(kernels))):
            sums.append(tf.reduce_sum(tf.matmul(outputs[layer], grad, transpose_a=True)))  # the kernel's gradient
            if layer:
                grad = tf.matmul(grad, kernels[layer], transpose_b=True)  # the layer input's gradient
        return i + 1, total + tf.add_n(sums)

    epoch = tf.function(lambda: tf.while_loop(lambda i, _: i < steps, body, (0, 0.0), parallel_iterations=1)[1])
    epoch()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        epoch().numpy()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def report(runs: dict[str, list[dict]], args) -> None:
    """Each contender's medians over its processes, then digitune over fit and the MLP's epoch over its arithmetic."""
    setting = (f"{args.optimizer}, batch {args.batch_size}, {args.epochs} epochs, {args.trials} trials x "
               f"{args.rounds} processes, {args.dataset}{', recipe' if args.recipe else ''}")
    medians: dict[str, dict[str, dict[str, float]]] = {}
    for name, processes in runs.items():
        loads = ", ".join(f"{p['load']['load']:.1f}" for p in processes)
        label = (args.label or name) if name == "digitune" else "keras fit"
        print(f"{label} ({setting}; load {loads})")
        medians[name] = {}
        for family in ("mlp", "cnn"):
            values = {k: statistics.median(p[family].get(k, math.nan) for p in processes) for k in (*FIGURES,
                                                                                                "accuracy")}
            medians[name][family] = values
            phases = "" if math.isnan(values["build"]) else f", clear {values['clear']:.3f}, build {values['build']:.3f}"
            if not math.isnan(values["validation"]):
                phases += f", validation {values['validation']:.4f} an epoch"
            print(f"  {family}: {values['trial']:.3f} s per trial, first epoch {values['first']:.3f} s, later "
                  f"epoch {values['later']:.4f} s, fixed {values['fixed']:.3f} s{phases}, "
                  f"val. accuracy {values['accuracy']:.4f}")
    mlp = medians.get("digitune", medians[next(iter(medians))])["mlp"]
    print(f"MLP: a later epoch {mlp['later']:.4f} s against its arithmetic {mlp['arithmetic']:.4f} s: "
          f"{mlp['later'] / mlp['arithmetic']:.2f}x (target 1.5x)")
    if "digitune" in medians:
        for family in ("mlp", "cnn"):
            print(f"{family}: digitune's fixed cost {medians['digitune'][family]['fixed']:.3f} s (target 0.1 s)")
    if {"digitune", "fit"} <= set(medians):
        for family in ("mlp", "cnn"):
            ours, theirs = medians["digitune"][family], medians["fit"][family]
            print(f"{family}: digitune / keras fit: trial {ours['trial'] / theirs['trial']:.2f}x, first epoch "
                  f"{ours['first'] / theirs['first']:.2f}x, later epoch {ours['later'] / theirs['later']:.2f}x, "
                  f"fixed {ours['fixed'] / theirs['fixed']:.2f}x")


if __name__ == "__main__":
    main()
