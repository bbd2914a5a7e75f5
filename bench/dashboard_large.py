"""How the dashboard copes with a study of 10,000 trials (a benchmark, not a test).

Builds a SQLite study of N realistic trials (MLP and CNN parameters, learning curves,
intermediate values, confusion matrices; complete, pruned and failed) with
``optuna.trial.create_trial`` + ``study.add_trials``, then times:

  (a) the Study page's data from cold: open the storage, read every trial, summary, history figure;
  (b) a refresh with nothing changed;
  (c) a refresh after 10 new trials;
  (d) ``AppTest`` running the Study page once (a fresh reader, so a cold read inside), and once more warm.

Usage: python bench/dashboard_large.py [--trials 10000] [--db PATH] [--keep]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

ROOT = Path(__file__).resolve().parents[1]
STUDY = "large"
COMMON = {
    "family": CategoricalDistribution(["mlp", "cnn"]),
    "learning_rate": FloatDistribution(3e-4, 1e-2, log=True),
    "batch_size": CategoricalDistribution([32, 64, 128]),
    "epochs": IntDistribution(3, 12),
}
FAMILY = {
    "mlp": {"mlp_hidden_layers": IntDistribution(1, 5), "mlp_units": IntDistribution(32, 512, log=True),
            "mlp_dropout": FloatDistribution(0.0, 0.5)},
    "cnn": {"cnn_blocks": IntDistribution(1, 3), "cnn_filters": IntDistribution(8, 64, log=True),
            "cnn_kernel_size": CategoricalDistribution([3, 5]), "cnn_dense_units": IntDistribution(16, 128)},
}
SPEC = {"study": {"name": STUDY, "objectives": ["val_accuracy:max"], "trials": 10_000, "sampler": "tpe",
                  "pruner": "hyperband", "seed": 128, "baselines": "none", "early_stopping": 0},
        "data": {"source": "mnist"}, "space": {}}
DATASET = {"name": "mnist", "source": "mnist", "format": "keras-npz", "image_shape": [28, 28], "num_classes": 10,
           "fingerprint": "bench", "n_train": 42000, "n_val": 18000, "n_test": 10000, "test_from": "file"}


def fake_trial(rng: random.Random, number: int, start: dt.datetime) -> optuna.trial.FrozenTrial:
    family = rng.choice(["mlp", "cnn"])
    distributions = {**COMMON, **FAMILY[family]}
    params = {}
    for name, dist in distributions.items():
        if isinstance(dist, CategoricalDistribution):
            params[name] = family if name == "family" else rng.choice(dist.choices)
        elif isinstance(dist, IntDistribution):
            params[name] = rng.randint(dist.low, dist.high)
        else:
            params[name] = rng.uniform(dist.low, dist.high)
    roll = rng.random()
    state = TrialState.COMPLETE if roll < 0.7 else TrialState.PRUNED if roll < 0.95 else TrialState.FAIL
    epochs = params["epochs"] if state == TrialState.COMPLETE else rng.randint(1, params["epochs"])
    ceiling = (0.99 if family == "cnn" else 0.98) - rng.random() * 0.1
    acc = [ceiling * (1 - 0.6 ** (e + 1)) + rng.gauss(0, 0.005) for e in range(epochs)]
    curves = {"loss": [1.5 * 0.6 ** e for e in range(epochs)], "accuracy": [a + 0.01 for a in acc],
              "val_loss": [1.6 * 0.62 ** e for e in range(epochs)], "val_accuracy": acc,
              "epoch_seconds": [round(rng.uniform(2, 9), 3) for _ in range(epochs)]}
    seconds = sum(curves["epoch_seconds"])
    params_count = rng.randint(10_000, 2_000_000)
    attrs = {"family": family, "curves": curves, "params_count": params_count, "train_seconds": round(seconds, 3),
             "epochs_run": epochs, "keras_backend": "tensorflow", "device": "cpu:0",
             "model_config": ({"family": "mlp", "hidden_layers": params["mlp_hidden_layers"],
                               "units": params["mlp_units"], "dropout": params["mlp_dropout"]} if family == "mlp"
                              else {"family": "cnn", "blocks": [{"filters": params["cnn_filters"], "kernel_size":
                                                                 params["cnn_kernel_size"], "padding": "same"}],
                                    "dense_units": params["cnn_dense_units"]}),
             "train_config": {"optimizer": "adam", "learning_rate": params["learning_rate"],
                              "batch_size": params["batch_size"], "epochs": params["epochs"], "seed": 128 + number}}
    if state == TrialState.COMPLETE:
        matrix = [[0] * 10 for _ in range(10)]
        for i in range(10):
            matrix[i][i] = 1700
            matrix[i][rng.randrange(10)] += 100
        attrs["confusion_matrix"] = matrix
        attrs["per_class_accuracy"] = [round(matrix[i][i] / sum(matrix[i]), 4) for i in range(10)]
    if state == TrialState.FAIL:
        attrs["fail_reason"] = "TrainingError: the loss became NaN at epoch 2; try a lower learning rate"
    trial = create_trial(
        state=state, params=params, distributions=distributions,
        value=acc[-1] if state != TrialState.FAIL else None, user_attrs=attrs,
        intermediate_values={e: a for e, a in enumerate(acc)} if state != TrialState.FAIL else None,
    )
    trial.datetime_start = start
    trial.datetime_complete = start + dt.timedelta(seconds=seconds + 1)
    return trial


def build(url: str, n: int) -> None:
    rng = random.Random(128)
    study = optuna.create_study(study_name=STUDY, storage=url, direction="maximize")
    study.set_user_attr("digitune_spec", SPEC)
    study.set_user_attr("dataset", DATASET)
    start = dt.datetime.now() - dt.timedelta(days=3)
    batch = []
    for number in range(n):
        batch.append(fake_trial(rng, number, start + dt.timedelta(seconds=25 * number)))
        if len(batch) == 500:
            study.add_trials(batch)
            batch = []
    study.add_trials(batch)


def timed(label: str, func, results: dict[str, float]):
    start = time.perf_counter()
    value = func()
    results[label] = time.perf_counter() - start
    print(f"{label:<58} {results[label]:8.2f} s", flush=True)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--db", type=Path, help="SQLite file (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="reuse --db if it already holds the study")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = args.db or Path(tempfile.mkdtemp(prefix="digitune-bench-")) / "large.db"
    url = f"sqlite:///{path}"
    results: dict[str, float] = {}
    if not (args.keep and path.exists()):
        if path.exists():
            path.unlink()
        from search import open_storage

        open_storage(url).engine.dispose()  # digitune's WAL settings, as a real study file has
        timed(f"build: {args.trials:,} trials with add_trials", lambda: build(url, args.trials), results)
    print(f"database: {path} ({path.stat().st_size / 1e6:.1f} MB)")

    from dashboard import Reader, history_figure, learning_curves, study_summary, curves_figure

    def study_page(reader: Reader):
        data = reader.study(STUDY)
        study_summary(data)
        data.memoized(("history", 0, False), lambda: history_figure(data))
        return data

    reader = Reader.open(url)
    data = timed("(a) Study page data from cold (read all, summary, history)", lambda: study_page(reader), results)
    assert len(data.records) >= args.trials
    reads = reader.reads
    timed("(b) refresh, nothing changed", lambda: study_page(reader), results)
    print(f"    trials read again: {reader.reads - reads}")
    rng = random.Random(7)
    study = optuna.load_study(study_name=STUDY, storage=url)
    last = data.records[-1]["datetime_start"]
    study.add_trials([fake_trial(rng, args.trials + i, last + dt.timedelta(seconds=30 * (i + 1))) for i in range(10)])
    reads = reader.reads
    fresh = timed("(c) refresh after 10 new trials", lambda: study_page(reader), results)
    print(f"    trials read again: {reader.reads - reads}; trials now {len(fresh.records):,}")
    timed("    learning curves of every trial (figure, grouped)",
          lambda: curves_figure(learning_curves(fresh)), results)
    timed("    in-memory copy for Optuna's plots", lambda: fresh.optuna_study, results)

    from streamlit.testing.v1 import AppTest

    os.environ["DIGITUNE_STORAGE"] = url
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=600)
    at.query_params.update(page="Study", study=STUDY)
    timed("(d) AppTest: Study page once (cold reader in the app)", lambda: at.run(timeout=600), results)
    assert not at.exception, at.exception
    timed("    AppTest: Study page again (warm)", lambda: at.run(timeout=600), results)
    assert not at.exception, at.exception
    print(f"python {sys.version.split()[0]}, optuna {optuna.__version__}")


if __name__ == "__main__":
    main()  # a temporary database (no --db) is left in place for a look; its path is printed above
