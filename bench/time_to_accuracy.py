"""Time to accuracy: digitune against an Optuna study written the usual way and KerasTuner's Hyperband.

    python bench/time_to_accuracy.py --dataset digits --budget 120 --seeds 1 2 3 [--plot docs/tta-digits.png]
    python bench/time_to_accuracy.py --dataset fashion-mnist --budget 600 --seeds 1 --plot docs/tta-fashion.png

Every contender searches the same space (``studies/digits.toml``'s, at most 10 epochs a
trial) on the same data split, in its own process, one after the other, seed by seed,
in an order that rotates from seed to seed so the machine's load falls on all of them:

- ``optuna``: the usual script: TPE, an objective that clears the Keras session, builds
  a fresh model and fits it for 10 epochs with ``validation_data``, no pruning, in-memory
  storage, one process using every core;
- ``kerastuner``: ``keras_tuner.Hyperband(max_epochs=10, factor=3)`` on the same space
  (batch size tuned through ``HyperModel.fit``), one process;
- ``digitune``: ``digitune run`` with its defaults (the worker layout included) on a
  SQLite file, stopped with SIGINT at the budget.

Every contender runs with TensorFlow's own defaults (oneDNN on, as a script written the
usual way gets it). Each process's clock starts when it starts (imports included). A trial counts if it ended
within the budget; the best validation accuracy so far is the best final-epoch validation
accuracy of a finished trial. Whenever a contender's best improves, its model's accuracy on
the held-out test set is measured (outside the clock for the two others; digitune's best
model is read back from its saved models after the run). Prints, per seed and as medians:
epochs trained per second, best validation accuracy, the time each contender took to reach
the best the usual Optuna study and KerasTuner reached in the budget, and the test accuracy
of each best model; with --plot, writes the best-so-far curves (matplotlib) to a PNG.
Needs the bench extra: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START = time.time()  # the contender's clock: process start, before any import
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONTENDERS = ("digitune", "optuna", "kerastuner")
MAX_EPOCHS = 10


# --------------------------------------------------------------------------- shared by the contenders


def bench_spec(dataset: str, seed: int, budget: float):
    """studies/digits.toml's space, on ``dataset``, at most MAX_EPOCHS epochs, seeded, with a timeout."""
    from search import load_spec, spec_from_dict

    data = load_spec(ROOT / "studies/digits.toml").to_dict()
    data["study"].update(name=f"tta-{dataset}-{seed}", trials=100000, seed=seed, timeout=budget)
    data["data"]["source"] = dataset
    epochs = data["space"]["epochs"]
    if isinstance(epochs, dict):
        data["space"]["epochs"] = {**epochs, "high": min(epochs["high"], MAX_EPOCHS),
                                   "low": min(epochs["low"], MAX_EPOCHS)}
    elif isinstance(epochs, int):
        data["space"]["epochs"] = min(epochs, MAX_EPOCHS)
    return spec_from_dict(data, source=f"bench space on {dataset}")


class Events:
    """JSON lines on a file: one per finished trial, and a final summary; time outside the clock is subtracted."""

    def __init__(self, path: Path, budget: float):
        self.file = open(path, "a", buffering=1)
        self.budget = budget
        self.paused = 0.0
        self.best = -1.0
        self.epochs = 0
        self.trials = 0
        self.test_accuracy = float("nan")

    def now(self) -> float:
        return time.time() - START - self.paused

    def over(self) -> bool:
        return self.now() >= self.budget

    def trial(self, val_accuracy: float, epochs: int, model=None, dataset=None) -> None:
        if self.over():
            return
        self.epochs += epochs
        self.trials += 1
        t = self.now()
        if val_accuracy > self.best:
            self.best = val_accuracy
            if model is not None:  # the held-out test accuracy of the new best, off the clock
                pause = time.time()
                from models import evaluate

                self.test_accuracy = evaluate(model, dataset.x_test, dataset.y_test)[1]
                self.paused += time.time() - pause
        self.file.write(json.dumps({"t": t, "val": val_accuracy, "best": self.best, "epochs": self.epochs}) + "\n")

    def finish(self, **extra) -> None:
        elapsed = min(self.now(), self.budget)
        self.file.write(json.dumps({"final": {"best": self.best, "epochs": self.epochs, "trials": self.trials,
                                              "elapsed": elapsed, "test_accuracy": self.test_accuracy,
                                              **extra}}) + "\n")


# --------------------------------------------------------------------------- the usual Optuna script


def run_optuna(dataset_name: str, seed: int, budget: float, events_path: Path) -> None:
    import keras
    import optuna

    from models import TrainConfig, build_model, load_dataset
    from search._space import sample_configs

    spec = bench_spec(dataset_name, seed, budget)
    data = load_dataset(dataset_name)
    events = Events(events_path, budget)

    def objective(trial: optuna.Trial) -> float:
        keras.backend.clear_session()
        model_config, train_config = sample_configs(trial, spec)
        model = build_model(model_config, data.x_train.shape[1:])
        optimizer = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop,
                     "sgd": lambda learning_rate: keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9),
                     }[train_config.optimizer](learning_rate=train_config.learning_rate)
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        history = model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                            batch_size=train_config.batch_size, epochs=MAX_EPOCHS, verbose=0)
        value = float(history.history["val_accuracy"][-1])
        events.trial(value if math.isfinite(value) else 0.0, len(history.history["loss"]), model, data)
        return value

    def stop(study: optuna.Study, trial) -> None:
        if events.over():
            study.stop()

    assert isinstance(TrainConfig, type)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, callbacks=[stop], catch=(Exception,))
    events.finish()


# --------------------------------------------------------------------------- KerasTuner's Hyperband


def run_kerastuner(dataset_name: str, seed: int, budget: float, events_path: Path) -> None:
    import keras
    import keras_tuner as kt

    from models import CNNConfig, ConvBlock, MLPConfig, build_model, load_dataset
    from search._spec import Choice, Range

    spec = bench_spec(dataset_name, seed, budget)
    data = load_dataset(dataset_name)
    events = Events(events_path, budget)

    def param(hp, name: str, p):
        if isinstance(p, Choice):
            if all(isinstance(c, bool) for c in p.choices):
                return hp.Boolean(name) if len(p.choices) > 1 else p.choices[0]
            return hp.Choice(name, list(p.choices))
        if isinstance(p, Range):
            if p.is_int:
                return hp.Int(name, int(p.low), int(p.high), step=None if p.log else int(p.step or 1),
                              sampling="log" if p.log else "linear")
            return hp.Float(name, p.low, p.high, sampling="log" if p.log else "linear")
        return p

    class Space(kt.HyperModel):
        def build(self, hp):
            family = param(hp, "family", spec.space["family"])
            values = {}
            with hp.conditional_scope("family", [family]):
                for name, p in spec.family_space[family].items():
                    values[name] = param(hp, f"{family}_{name}", p)
            if family == "mlp":
                config = MLPConfig(**values)
            else:
                block = ConvBlock(filters=values["filters"], kernel_size=values["kernel_size"],
                                  stride=values["stride"], padding=values["padding"],
                                  activation=values["activation"], pool=values["pool"],
                                  pool_size=values["pool_size"])
                config = CNNConfig(blocks=(block,) * values["blocks"], dense_units=values["dense_units"],
                                   dropout=values["dropout"], activation=values["activation"],
                                   initializer=values["initializer"], batch_norm=values["batch_norm"])
            rate = param(hp, "learning_rate", spec.space["learning_rate"])
            optimizer = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop,
                         "sgd": lambda learning_rate: keras.optimizers.SGD(learning_rate=learning_rate,
                                                                           momentum=0.9),
                         }[param(hp, "optimizer", spec.space["optimizer"])](learning_rate=rate)
            model = build_model(config, data.x_train.shape[1:])
            model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            return model

        def fit(self, hp, model, *args, **kwargs):
            return model.fit(*args, batch_size=param(hp, "batch_size", spec.space["batch_size"]), **kwargs)

    class Probe(keras.callbacks.Callback):
        def __deepcopy__(self, memo):  # KerasTuner copies the callbacks for every trial; they share one log
            return Probe()

        def on_train_begin(self, logs=None):
            self.epochs, self.last = 0, 0.0

        def on_epoch_end(self, epoch, logs=None):
            self.epochs += 1
            self.last = float((logs or {}).get("val_accuracy", 0.0))
            if events.over():
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            events.trial(self.last if math.isfinite(self.last) else 0.0, self.epochs, self.model, data)
            if events.over():
                raise KeyboardInterrupt  # KerasTuner has no time budget: leave the search here

    # One Hyperband iteration (KerasTuner's default) is 30 trials here: on the digits it ends in
    # about 80 s, so let it start more iterations until the budget is spent.
    tuner = kt.Hyperband(Space(), objective="val_accuracy", max_epochs=MAX_EPOCHS, factor=3, seed=seed,
                         hyperband_iterations=1000,
                         directory=tempfile.mkdtemp(prefix="digitune-kt-"), project_name="tta", overwrite=True,
                         max_consecutive_failed_trials=100)
    try:
        tuner.search(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), callbacks=[Probe()],
                     verbose=0)
    except KeyboardInterrupt:
        pass
    events.finish()


# --------------------------------------------------------------------------- digitune


def run_digitune(dataset_name: str, seed: int, budget: float, events_path: Path) -> None:
    import datetime

    import optuna
    from optuna.trial import TrialState

    from models import load_dataset
    from search import ModelKeeper, artifact_dir, export_model, load_study

    spec = bench_spec(dataset_name, seed, budget)
    folder = Path(tempfile.mkdtemp(prefix="digitune-tta-"))
    url = f"sqlite:///{folder / 'tta.db'}"
    study_file = folder / "study.toml"
    import tomli_w

    study_file.write_bytes(tomli_w.dumps(spec.to_dict()).encode())
    cmd = [sys.executable, "-m", "search.cli", "run", str(study_file), "--storage", url]
    cmd += os.environ.get("DIGITUNE_BENCH_ARGS", "").split()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = START + budget
    while proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C: the running trials fail as interrupted
    proc.wait()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = load_study(spec.name, optuna.storages.RDBStorage(url))
    events = Events(events_path, budget)
    trials = sorted((t for t in study.get_trials(deepcopy=False) if t.datetime_complete),
                    key=lambda t: t.datetime_complete)
    for t in trials:
        events.paused = 0.0
        at = t.datetime_complete.replace(tzinfo=datetime.timezone.utc).timestamp() \
            if t.datetime_complete.tzinfo else t.datetime_complete.timestamp()
        if at - START > budget:
            continue
        value = t.value if t.state == TrialState.COMPLETE and t.value is not None else -1.0
        events.epochs += int(t.user_attrs.get("epochs_run", 0))
        events.trials += 1
        events.best = max(events.best, value)
        events.file.write(json.dumps({"t": at - START, "val": value, "best": events.best,
                                      "epochs": events.epochs}) + "\n")
    try:
        data = load_dataset(spec.data.source, **spec.data.load_kwargs())
        result = export_model(study, data, folder / "best.keras", ModelKeeper(artifact_dir(url), spec.save_models))
        events.test_accuracy = result.test_accuracy
        events.file.write(json.dumps({"final": {"best": events.best, "epochs": events.epochs,
                                                "trials": events.trials, "elapsed": budget,
                                                "test_accuracy": events.test_accuracy,
                                                "test_source": result.source}}) + "\n")
    except Exception as exc:  # no completed trial in the budget
        events.finish(error=str(exc))


# --------------------------------------------------------------------------- the driver


def read_events(path: Path) -> tuple[list[dict], dict]:
    rows, final = [], {}
    if path.exists():
        for line in path.read_text().splitlines():
            item = json.loads(line)
            if "final" in item:
                final = item["final"]
            else:
                rows.append(item)
    return rows, final


def time_to(rows: list[dict], target: float) -> float:
    """Seconds until the best so far first reached ``target`` (inf if never)."""
    for row in rows:  # Keras logs float32 accuracies, digitune float64 ones: one image is 1/432 here
        if row["best"] >= target - 1e-6:
            return row["t"]
    return math.inf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds per contender and seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--plot", type=Path, help="write the curves to this PNG (needs matplotlib)")
    parser.add_argument("--out", type=Path, help="keep the raw event files in this folder")
    parser.add_argument("--report", action="store_true",
                        help="run nothing: report (and plot) the event files already in --out")
    parser.add_argument("--run", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--events", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        {"digitune": run_digitune, "optuna": run_optuna, "kerastuner": run_kerastuner}[args.run](
            args.dataset, args.seed, args.budget, args.events)
        return

    contenders = [c for c in args.contenders.split(",") if c]
    out = args.out or Path(tempfile.mkdtemp(prefix="digitune-tta-events-"))
    out.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[str, int], tuple[list[dict], dict]] = {}
    loads: list[float] = []
    if args.report:
        results = {(name, seed): read_events(out / f"{args.dataset}-{name}-{seed}.jsonl")
                   for name in contenders for seed in args.seeds}
        report(args, contenders, results, [float("nan")])
        if args.plot:
            plot(args, contenders, results)
        return
    for i, seed in enumerate(args.seeds):
        order = contenders[i % len(contenders):] + contenders[:i % len(contenders)]
        for name in order:
            path = out / f"{args.dataset}-{name}-{seed}.jsonl"
            path.unlink(missing_ok=True)
            loads.append(os.getloadavg()[0])
            cmd = [sys.executable, __file__, "--run", name, "--dataset", args.dataset, "--seed", str(seed),
                   "--budget", str(args.budget), "--events", str(path)]
            proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                proc.wait(timeout=args.budget * 2 + 300)  # a trial past the budget finishes; then the test pass
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            results[(name, seed)] = read_events(path)
            rows, final = results[(name, seed)]
            print(f"seed {seed} {name:<10}: {final.get('trials', len(rows))} trials, "
                  f"{final.get('epochs', 0)} epochs, best val {final.get('best', float('nan')):.4f}, "
                  f"test {final.get('test_accuracy', float('nan')):.4f} (load {loads[-1]:.1f})", flush=True)
    report(args, contenders, results, loads)
    if args.plot:
        plot(args, contenders, results)
    print(f"raw events: {out}")


def report(args, contenders, results, loads) -> None:
    print(f"\n{args.dataset}, {args.budget:.0f} s per contender, seeds {args.seeds}, {os.cpu_count()} cores, "
          f"load average {min(loads):.1f}-{max(loads):.1f} at the starts")
    print(f"{'contender':<12}{'epochs/s':>9}{'trials':>8}{'best val':>10}{'test acc':>10}")
    for name in contenders:
        finals = [results[(name, s)][1] for s in args.seeds]
        eps = statistics.median(f.get("epochs", 0) / max(f.get("elapsed", args.budget), 1e-9) for f in finals)
        print(f"{name:<12}{eps:>9.2f}{statistics.median(f.get('trials', 0) for f in finals):>8.0f}"
              f"{statistics.median(f.get('best', float('nan')) for f in finals):>10.4f}"
              f"{statistics.median(f.get('test_accuracy', float('nan')) for f in finals):>10.4f}")
    if "digitune" not in contenders:
        return
    for other in (c for c in contenders if c != "digitune"):
        ratios, throughput = [], []
        for s in args.seeds:
            rows, final = results[(other, s)]
            mine, my_final = results[("digitune", s)]
            if not rows:
                continue
            target = final.get("best", max(r["best"] for r in rows))
            theirs = time_to(rows, target)
            ours = time_to(mine, target)
            ratios.append(ours / theirs if theirs > 0 else math.inf)
            throughput.append((my_final.get("epochs", 0) / max(my_final.get("elapsed", args.budget), 1e-9))
                              / max(final.get("epochs", 0) / max(final.get("elapsed", args.budget), 1e-9), 1e-9))
            print(f"seed {s}: {other} reached {target:.4f} at {theirs:.1f} s; digitune at {ours:.1f} s "
                  f"(ratio {ratios[-1]:.2f}); test {my_final.get('test_accuracy', float('nan')):.4f} vs "
                  f"{final.get('test_accuracy', float('nan')):.4f}; epochs/s ratio {throughput[-1]:.2f}")
        if ratios:
            print(f"vs {other}: time-to-accuracy ratio median {statistics.median(ratios):.2f} "
                  f"(target <= 0.5), throughput ratio median {statistics.median(throughput):.2f}")


def plot(args, contenders, results) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"digitune": "tab:blue", "optuna": "tab:orange", "kerastuner": "tab:green"}
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for name in contenders:
        for j, s in enumerate(args.seeds):
            rows = [r for r in results[(name, s)][0] if r["best"] >= 0]
            if not rows:
                continue
            xs = [r["t"] for r in rows] + [args.budget]
            ys = [r["best"] for r in rows] + [rows[-1]["best"]]
            ax.step(xs, ys, where="post", color=colors.get(name), alpha=0.85,
                    label=f"{name}" if j == 0 else None, linewidth=1.6)
    ax.set_xlabel("seconds since the process started")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title(f"{args.dataset}: time to accuracy, {len(args.seeds)} seed(s), {os.cpu_count()} cores")
    ax.set_xlim(0, args.budget)
    low = [r["best"] for v in results.values() for r in v[0] if r["best"] > 0]
    if low:
        ax.set_ylim(max(0.0, sorted(low)[len(low) // 10] - 0.05), 1.0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
