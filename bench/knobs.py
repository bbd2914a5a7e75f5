"""The training recipe, knob by knob: each family's start trial, and the same with one knob changed.

    python bench/knobs.py [--dataset digits fashion-mnist] [--seeds 1 2 3] [--limit 12000] [--epochs 4]
                          [--only schedule translate ...]

For each data set's shipped study (``studies/digits.toml``, ``studies/fashion.toml``) and
each family it searches, the study's start configuration (``search._space.default_params``:
every knob's known-good ``start`` moved into the study's space, as a study's first trials
run it) is trained with digitune's own ``models.train``, then the same configuration with
one knob changed, its start value against off: schedule (one-cycle against constant),
weight decay and label smoothing (the start against 0), translation and zoom (0.1 against
0), batch normalization (on against off), a CNN's convolutions a block (2 against 1) and,
at batches of 256, the learning rate scaled by the square root of the batch size against
not scaled. Each row runs over ``--seeds`` (the training seed; the data split is the
study's). The digits use every image and the start's epochs; Fashion-MNIST ``--limit``
training images (before the validation split; 0: all) and ``--epochs`` epochs, to keep it
short. A short training run off the record warms the backend up first.

Prints one Markdown table per family: validation accuracy (mean and standard deviation
over seeds; the difference to the start row), held-out test accuracy (mean), seconds per
trial (``train``'s wall time: build, fit and validation) and the first epoch's seconds
(tracing included).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
import _checkout  # noqa: E402

_checkout.install()

STUDIES = {"digits": "studies/digits.toml", "fashion-mnist": "studies/fashion.toml"}
# A knob's value when "on" (the other end is off: constant, 0, False); None: the knob's own start.
ON = {"schedule": "one-cycle", "weight_decay": None, "label_smoothing": None, "translate": 0.1, "zoom": 0.1,
      "batch_norm": True}
OFF = {"schedule": "constant", "weight_decay": 0.0, "label_smoothing": 0.0, "translate": 0.0, "zoom": 0.0,
       "batch_norm": False}
MODEL_KNOBS = ("batch_norm",)
SCALED_BATCH = 256


def start_configs(spec, image_shape) -> list:
    """(model config, train config) of each family's start trial in ``spec``'s space."""
    import optuna

    from digitune.search._space import default_params, sample_configs

    return [sample_configs(optuna.trial.FixedTrial(params), spec) for params in default_params(spec, image_shape)]


def variants(model, train) -> list[tuple[str, object, object]]:
    """(label, model config, train config): the start, then one knob changed at a time."""
    from digitune.models import TrainConfig

    rows = [("start", model, train)]
    for name, off in OFF.items():
        on = ON[name] if ON[name] is not None else TrainConfig.search_knobs()[name].start
        owner = model if name in MODEL_KNOBS else train
        value = off if getattr(owner, name) != off else on
        changed = dataclasses.replace(owner, **{name: value})
        rows.append((f"{name} = {value}", changed if owner is model else model,
                     changed if owner is train else train))
    if model.family == "cnn":  # a block-level knob: every block gets it
        convs = 2 if model.blocks[0].convs == 1 else 1
        blocks = tuple(dataclasses.replace(b, convs=convs) for b in model.blocks)
        rows.append((f"convs = {convs}", dataclasses.replace(model, blocks=blocks), train))
    for scaling in ("none", "sqrt"):
        rows.append((f"batch {SCALED_BATCH}, lr_scaling = {scaling}", model,
                     dataclasses.replace(train, batch_size=SCALED_BATCH, lr_scaling=scaling)))
    return rows


def describe(model, train) -> str:
    """The start trial in one line: the family's and the recipe's settings."""
    head = model.search_values()
    recipe = {k: getattr(train, k) for k in ("optimizer", "learning_rate", "batch_size", "epochs", "schedule",
                                             "lr_scaling", "weight_decay", "label_smoothing", "translate", "zoom")}
    return ", ".join(f"{k}={v}" for k, v in {**head, **recipe}.items())


def measure(model, train, dataset, seeds: list[int]) -> dict:
    """Validation accuracy, seconds and first-epoch seconds of ``model``/``train`` over ``seeds``."""
    from digitune.models import train as fit

    runs = []
    for seed in seeds:
        started = time.perf_counter()
        result = fit(model, dataclasses.replace(train, seed=seed), dataset, evaluate_test=True)
        runs.append({"val": float(result.val_accuracy), "seconds": time.perf_counter() - started,
                     "test": float(result.test_accuracy),
                     "first": float(result.log.timings.get("first_epoch", float("nan")))})
    values = [r["val"] for r in runs]
    return {"val": statistics.mean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "test": statistics.mean(r["test"] for r in runs),
            "seconds": statistics.mean(r["seconds"] for r in runs),
            "first": statistics.mean(r["first"] for r in runs), "runs": values}


def bench_dataset(name: str, args) -> None:
    from digitune.models import load_dataset, train as fit
    from digitune.search import load_spec

    spec = load_spec(ROOT / STUDIES[name])
    limit = (args.limit or None) if name != "digits" else spec.data.limit
    dataset = load_dataset(spec.data.source, **{**spec.data.load_kwargs(), "limit": limit})
    configs = start_configs(spec, dataset.x_train.shape[1:])
    if name != "digits":
        configs = [(m, dataclasses.replace(t, epochs=args.epochs)) for m, t in configs]
    fit(configs[0][0], dataclasses.replace(configs[0][1], epochs=1), dataset)  # warm up, off the record
    print(f"\n## {name}: {STUDIES[name]}, {len(dataset.y_train)} training / {len(dataset.y_val)} validation "
          f"images, seeds {args.seeds}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}", flush=True)
    for model, train in configs:
        print(f"\n{model.family}: start trial {describe(model, train)}\n")
        print("| variant | val accuracy | vs start | test accuracy | s / trial | first epoch s |")
        print("| --- | --- | --- | --- | --- | --- |")
        base = None
        for label, m, t in variants(model, train):
            if args.only and label != "start" and not any(label.startswith(k) for k in args.only):
                continue
            row = measure(m, t, dataset, args.seeds)
            base = row["val"] if base is None else base
            print(f"| {label} | {row['val']:.4f} ± {row['sd']:.4f} | {row['val'] - base:+.4f} | {row['test']:.4f} | "
                  f"{row['seconds']:.1f} | {row['first']:.2f} |", flush=True)
    print(f"(load {os.getloadavg()[0]:.1f} at the end)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", nargs="+", choices=sorted(STUDIES), default=["digits", "fashion-mnist"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--limit", type=int, default=12000, help="Fashion-MNIST's training images (0: every one)")
    parser.add_argument("--epochs", type=int, default=4, help="Fashion-MNIST's epochs a trial")
    parser.add_argument("--only", nargs="+", help="run only the start and these rows (knob names: schedule ...; "
                                                  "batch for the two lr_scaling rows)")
    args = parser.parse_args()
    import logging

    logging.getLogger("digitune").setLevel(logging.WARNING)
    for name in args.dataset:
        bench_dataset(name, args)


if __name__ == "__main__":
    main()
