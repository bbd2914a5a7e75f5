"""How the dashboard copes with a study of 10,000 trials (a benchmark, not a test).

Builds a SQLite study of N realistic trials (MLP and CNN parameters, learning curves,
intermediate values, confusion matrices; complete, pruned and failed) with
``optuna.trial.create_trial`` + ``study.add_trials`` (about 5 minutes for 10,000 on 2 cores;
``--db PATH --keep`` builds it once and reuses it), then times, in wall and CPU seconds:

  (a) the Study page's data from cold: open the storage, read every trial, summary, history figure;
  (b) a refresh with nothing changed;
  (c) a refresh after 10 new trials (they stay in the database);
  (d) ``AppTest`` opening the Study page in a fresh Python process, as the first visitor after
      ``digitune dashboard`` starts: the app's imports, the page with a cold reader, then once more warm.

The reader takes the trials from Optuna's tables with plain SELECTs; ``--compare-api`` times
(a) and (d) through Optuna's storage API as well (the dashboard's path before), side by side.
``--tabs`` also times each tab's first visit and a rerun of it (the page's auto-refresh).

Usage: python bench/dashboard_large.py [--trials 10000] [--db PATH] [--keep] [--compare-api] [--tabs]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import subprocess
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


def timed(label: str, func, results: dict[str, tuple[float, float]]):
    wall, cpu = time.perf_counter(), time.process_time()
    value = func()
    results[label] = (time.perf_counter() - wall, time.process_time() - cpu)
    return value


def show(label: str, *columns: tuple[float, float] | None) -> None:
    cells = "".join(f"{'':>20}" if c is None else f"{c[0]:8.2f} s{c[1]:7.2f} s " for c in columns)
    print(f"{label:<52}{cells}", flush=True)


TABS = ("Curves", "MLP vs CNN", "Importance", "Parallel", "Slice", "Contour", "EDF", "Timeline", "Trials")


def apptest(url: str, *, sql: bool, tabs: bool) -> dict[str, tuple[float, float]]:
    """Run ``child_apptest`` in a fresh Python process; its timings."""
    command = [sys.executable, __file__, "--child-apptest", url] + ([] if sql else ["--api"]) + (["--tabs"] if tabs else [])
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600,
                          env={**os.environ, "DIGITUNE_STORAGE": url})
    if done.returncode != 0:
        raise SystemExit(f"the AppTest process failed:\n{done.stderr[-3000:]}")
    return {label: tuple(value) for label, value in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def child_apptest(url: str, *, sql: bool, tabs: bool) -> None:
    """In a fresh process: import the app's modules, open the Study page twice, optionally every tab; print JSON."""
    import importlib

    results: dict[str, tuple[float, float]] = {}
    # `digitune dashboard` has imported Streamlit before anyone visits; the first run of the page
    # imports the app's own modules (digitune, Optuna, SQLAlchemy, Plotly).
    AppTest = timed("streamlit", lambda: importlib.import_module("streamlit.testing.v1").AppTest, results)
    timed("imports", lambda: [importlib.import_module(m) for m in ("digitune.dashboard", "digitune.dashboard._model",
                                                                   "digitune.dashboard._launch")], results)
    os.environ["DIGITUNE_STORAGE"] = url
    if not sql:  # the dashboard's reader through Optuna's storage API, as before the SQL reader
        importlib.import_module("digitune.dashboard._reader").Reader.open.__func__.__kwdefaults__["sql"] = False
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=3600)
    at.query_params.update(page="Study", study=STUDY)

    def run(label: str) -> None:
        timed(label, lambda: at.run(timeout=3600), results)
        if at.exception:
            raise SystemExit(f"{label}: {at.exception}")

    run("cold")
    run("warm")
    if tabs:
        for tab in TABS:
            at.session_state["tab"] = tab
            run(f"tab {tab}")
            run(f"tab {tab} again")
    print(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--db", type=Path, help="SQLite file (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="reuse --db if it already holds the study")
    parser.add_argument("--compare-api", action="store_true",
                        help="also time (a) and (d) reading through Optuna's storage API (slow: a minute or more)")
    parser.add_argument("--tabs", action="store_true", help="also time each tab of the Study page in (d)")
    parser.add_argument("--child-apptest", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--api", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_apptest:
        return child_apptest(args.child_apptest, sql=not args.api, tabs=args.tabs)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = args.db or Path(tempfile.mkdtemp(prefix="digitune-bench-")) / "large.db"
    url = f"sqlite:///{path}"
    results: dict[str, tuple[float, float]] = {}
    if not (args.keep and path.exists()):
        if path.exists():
            path.unlink()
        from digitune.search import open_storage

        open_storage(url).engine.dispose()  # digitune's WAL settings, as a real study file has
        timed("build", lambda: build(url, args.trials), results)
        print(f"build: {args.trials:,} trials with add_trials: {results['build'][0]:.0f} s")
    print(f"database: {path} ({path.stat().st_size / 1e6:.1f} MB); {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at the start")

    from digitune.dashboard import Reader, curves_figure, history_figure, learning_curves, study_summary

    def study_page(reader: Reader):
        data = reader.study(STUDY)
        study_summary(data)
        data.memoized(("history", 0, False), lambda: history_figure(data))
        return data

    api: dict[str, tuple[float, float]] = {}
    if args.compare_api:
        timed("cold", lambda: study_page(Reader.open(url, sql=False)), api)
    reader = Reader.open(url)
    data = timed("cold", lambda: study_page(reader), results)
    assert len(data.records) >= args.trials
    header = f"{'':<52}{'SQL reader':>20}" + (f"{'Optuna API':>20}" if args.compare_api else "")
    print(header)
    print(f"{'':<52}" + f"{'wall':>8}  {'CPU':>7}   " * (2 if args.compare_api else 1))
    show("(a) Study page data from cold (read, summary, history)", results["cold"], api.get("cold"))
    reads = reader.reads
    timed("nothing", lambda: study_page(reader), results)
    show(f"(b) refresh, nothing changed ({reader.reads - reads} trials read)", results["nothing"])
    rng = random.Random(time.time_ns())
    study = optuna.load_study(study_name=STUDY, storage=url)
    last = data.records[-1]["datetime_start"]
    number = len(data.records)
    study.add_trials([fake_trial(rng, number + i, last + dt.timedelta(seconds=30 * (i + 1))) for i in range(10)])
    reads = reader.reads
    fresh = timed("new", lambda: study_page(reader), results)
    show(f"(c) refresh after 10 new trials ({reader.reads - reads} read, now {len(fresh.records):,})",
         results["new"])
    timed("curves", lambda: curves_figure(learning_curves(fresh)), results)
    show("    learning curves of every trial (figure, grouped)", results["curves"])
    timed("copy", lambda: fresh.optuna_study, results)
    show("    in-memory copy for Optuna's plots", results["copy"])

    page = apptest(url, sql=True, tabs=args.tabs)
    old = apptest(url, sql=False, tabs=False) if args.compare_api else {}
    show("(d) AppTest, a fresh process: import Streamlit", page["streamlit"], old.get("streamlit"))
    show("    the app's imports (search, plotly, ...)", page["imports"], old.get("imports"))
    show("    Study page, cold reader", page["cold"], old.get("cold"))
    show("    Study page again (warm)", page["warm"], old.get("warm"))
    for tab in TABS if args.tabs else ():
        show(f"    tab {tab}: first visit", page[f"tab {tab}"])
        show(f"    tab {tab}: again (a refresh)", page[f"tab {tab} again"])
    print(f"python {sys.version.split()[0]}, optuna {optuna.__version__}")


if __name__ == "__main__":
    main()  # a temporary database (no --db) is left in place for a look; its path is printed above
