"""Time to accuracy: digitune against an Optuna study written the usual way and KerasTuner's Hyperband.

    python bench/time_to_accuracy.py --dataset digits --budget 120 --seeds 1 2 3 [--space tutorial|digitune]
    python bench/time_to_accuracy.py --dataset fashion-mnist --budget 600 --seeds 1 --plot docs/tta-fashion.png

digitune always runs its shipped study file for the data set (``studies/digits.toml``,
``studies/fashion.toml``) as a user runs it: ``digitune run`` with its defaults (the worker
layout included) on a SQLite file; only its name, seed and time budget change (its trial count: unbounded).
Its epochs are not capped: the files ask at most 30 (digits) and 10 (Fashion-MNIST), its
Hyperband pruner stops the models that fall behind, and the epochs are part of the recipe
being measured. ``--space`` chooses what the two others search (``bench/tta_contenders.py``):

- ``tutorial`` (default): ``bench/tutorial-space.toml``, the space a user writes from the
  tutorial (the knobs it turned by hand, no training recipe), with at most ``MAX_EPOCHS`` (10)
  epochs a trial: the bench always capped its 5 to 50, which only helps them, since
  without a pruner 50-epoch trials would spend most of their budget;
- ``digitune``: the same study file digitune runs, recipe and epochs included.

The contenders, each in its own process, one after the other, seed by seed, in an order
that rotates from seed to seed so the machine's load falls on all of them:

- ``optuna``: the usual script: TPE, an objective that clears the Keras session, builds a
  fresh model and fits it for its epochs with ``validation_data``, no pruning, in-memory
  storage, one process using every core;
- ``kerastuner``: ``keras_tuner.Hyperband(max_epochs=the space's highest, factor=3)`` (the
  batch size tuned through ``HyperModel.fit``; a schedule runs over ``max_epochs``), one process;
- ``digitune``: as above.

Both others build their configs from the space generically and apply the recipe as a Keras
user would (plain Keras optimizers, not digitune's fused ones), on the data split of
digitune's study file. Every contender runs with TensorFlow's own defaults (oneDNN on).

The clock and what counts, the same rule for all: each process's clock starts when it
starts (imports included). At the budget every contender stops its running trials at their
next epoch end: digitune itself (``--timeout``, given the budget left when the bench starts
it; it counts that from after Python's start and the CLI's imports, so its deadline falls
1 to 2 s after the bench's and its running trials may train that much longer), the two
others through a bench callback (Optuna's timeout lets a running trial train all its
epochs, KerasTuner has none). A trial counts, with its last epoch's
validation accuracy, when it started within the budget and ended at most ``grace`` (10 s,
or 5% of the budget when longer) after it; digitune gets SIGINT at the budget plus the
grace, a hard stop whose interrupted trials fail and do not count. The best validation
accuracy so far is the best final-epoch validation accuracy of a counted trial. The
held-out test accuracy is measured for each new best (off the clock for the two others;
for digitune, its counted best trial's saved model after the run).

Prints, per seed and as medians: trials, epochs trained per second, best validation and
test accuracy, when each reached its own best, the time digitune took to reach the best the
Optuna study and KerasTuner reached, and whether digitune's best trial was a start trial (a
known-good start, user attribute ``start``, or a warm start, ``warm_start``); with --plot,
the best-so-far curves (matplotlib) as a PNG. ``--contenders optuna,kerastuner --out DIR``
reuses digitune's event files already in DIR (they do not depend on ``--space``).
Needs the bench extra: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import datetime
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
import _checkout  # noqa: E402

_checkout.install()

from tta_contenders import STUDY_FILES, Events, digitune_spec, grace, run_kerastuner, run_optuna  # noqa: E402

CONTENDERS = ("digitune", "optuna", "kerastuner")
SPACES = ("tutorial", "digitune")
START_ATTRS = ("start", "warm_start")  # search._schema.START_ATTR, search._schema.WARM_ATTR


# --------------------------------------------------------------------------- digitune


def run_digitune(dataset_name: str, space: str, seed: int, budget: float, events_path: Path, start: float,
                 study: str | None = None) -> None:
    """``digitune run`` on the study (shipped) with the budget left, SIGINT at the budget plus the grace."""
    import tomli_w

    spec = digitune_spec(dataset_name, seed, budget, study)
    folder = Path(tempfile.mkdtemp(prefix="digitune-tta-"))
    url = f"sqlite:///{folder / 'tta.db'}"
    file = folder / "study.toml"
    file.write_bytes(tomli_w.dumps(spec.to_dict()).encode())
    left = budget - (time.time() - start)
    cmd = [*_checkout.cli(), "run", str(file), "--storage", url, "--timeout", f"{max(left, 1):.2f}"]
    cmd += os.environ.get("DIGITUNE_BENCH_ARGS", "").split()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    hard_stop = start + budget + grace(budget)
    while proc.poll() is None and time.time() < hard_stop:
        time.sleep(0.2)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C: the running trials fail as interrupted
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    record_digitune(spec, url, Events(events_path, budget, start))


def _seconds(moment: datetime.datetime, start: float) -> float:
    """A trial's stored time (naive: local time) as seconds on the bench clock."""
    return moment.timestamp() - start


def record_digitune(spec, url: str, events: Events) -> None:
    """The counted trials of digitune's study as events; the test accuracy of its counted best trial's model."""
    import optuna
    from optuna.trial import TrialState

    from digitune.models import evaluate, load_dataset
    from digitune.search import ModelKeeper, artifact_dir, load_study
    from digitune.search._final import kept_model

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = load_study(spec.name, optuna.storages.RDBStorage(url))
    trials = sorted((t for t in study.get_trials(deepcopy=False) if t.datetime_complete and t.datetime_start),
                    key=lambda t: t.datetime_complete)
    best = None
    for t in trials:
        at = _seconds(t.datetime_complete, events.start)
        if not events.counts(_seconds(t.datetime_start, events.start), at):
            continue
        value = t.value if t.state == TrialState.COMPLETE and t.value is not None else -1.0
        origin = next((f"{a}={t.user_attrs[a]}" for a in START_ATTRS if a in t.user_attrs), "")
        if best is None or value > best[1]:
            best = (t.number, value, origin)
        events.row(at, value, int(t.user_attrs.get("epochs_run", 0)), trial=t.number, start=origin)
    extra = {"elapsed": events.budget}
    if best is not None and best[1] >= 0:
        extra.update(best_trial=best[0], best_start=best[2])
        data = load_dataset(spec.data.source, **spec.data.load_kwargs())
        model = kept_model(study, ModelKeeper(artifact_dir(url), spec.save_models), best[0])
        if model is not None:
            events.test_accuracy = evaluate(model, data.x_test, data.y_test)[1]
    events.file.write(json.dumps({"final": {"best": events.best, "epochs": events.epochs, "trials": events.trials,
                                            "test_accuracy": events.test_accuracy, **extra}}) + "\n")


# --------------------------------------------------------------------------- the driver

RUNNERS = {"digitune": run_digitune, "optuna": run_optuna, "kerastuner": run_kerastuner}


def event_path(out: Path, dataset: str, space: str, name: str, seed: int) -> Path:
    """A contender's event file; digitune's does not depend on the contenders' space."""
    return out / f"{dataset}-{name if name == 'digitune' else f'{space}-{name}'}-{seed}.jsonl"


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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits", help="digits or fashion-mnist")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds per contender and seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--space", choices=SPACES, default="tutorial",
                        help="what optuna and kerastuner search: the tutorial's space or digitune's study file")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--study", help="digitune's study file (default: the shipped one for --dataset)")
    parser.add_argument("--plot", type=Path, help="write the curves to this PNG (needs matplotlib)")
    parser.add_argument("--out", type=Path, help="keep the raw event files in this folder")
    parser.add_argument("--report", action="store_true",
                        help="run nothing: report (and plot) the event files already in --out")
    parser.add_argument("--run", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--events", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.contenders = [c for c in args.contenders.split(",") if c]
    unknown = [c for c in args.contenders if c not in CONTENDERS]
    problem = (f"--dataset must be one of {', '.join(STUDY_FILES)}, got {args.dataset!r}"
               if args.dataset not in STUDY_FILES else
               f"--contenders takes some of {','.join(CONTENDERS)}, got {','.join(unknown) or 'none'}"
               if unknown or not args.contenders else
               f"--budget must be a positive number of seconds, got {args.budget:g}" if args.budget <= 0 else
               f"--study {args.study}: no such file; give a study file's path" if args.study
               and not Path(args.study).is_file() else None)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    args.study = args.study and str(Path(args.study).resolve())  # the runs start in the checkout's root
    return args


def run_all(args, out: Path) -> list[float]:
    """Every contender, seed by seed, in a rotating order; the load average at each start."""
    loads = []
    names = args.contenders
    for i, seed in enumerate(args.seeds):
        for name in names[i % len(names):] + names[:i % len(names)]:
            path = event_path(out, args.dataset, args.space, name, seed)
            path.unlink(missing_ok=True)
            loads.append(os.getloadavg()[0])
            cmd = [sys.executable, __file__, "--run", name, "--dataset", args.dataset, "--space", args.space,
                   "--seed", str(seed), "--budget", str(args.budget), "--events", str(path)]
            cmd += ["--study", args.study] if args.study else []
            proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                proc.wait(timeout=args.budget * 2 + 300)  # a trial past the budget finishes; then the test pass
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            rows, final = read_events(path)
            print(f"seed {seed} {name:<10}: {final.get('trials', len(rows))} trials, "
                  f"{final.get('epochs', 0)} epochs, best val {final.get('best', float('nan')):.4f}, "
                  f"test {final.get('test_accuracy', float('nan')):.4f} (load {loads[-1]:.1f})", flush=True)
    return loads


def main() -> None:
    args = parse_args()
    if args.run:
        RUNNERS[args.run](args.dataset, args.space, args.seed, args.budget, args.events, START, study=args.study)
        return
    out = args.out or Path(tempfile.mkdtemp(prefix="digitune-tta-events-"))
    out.mkdir(parents=True, exist_ok=True)
    loads = [float("nan")] if args.report else run_all(args, out)
    shown = list(args.contenders)
    if "digitune" not in shown and all(event_path(out, args.dataset, args.space, "digitune", s).exists()
                                       for s in args.seeds):
        shown.insert(0, "digitune")  # an earlier run's, in the same folder
    results = {(name, seed): read_events(event_path(out, args.dataset, args.space, name, seed))
               for name in shown for seed in args.seeds}
    report(args, shown, results, loads)
    if args.plot:
        plot(args, shown, results)
    print(f"raw events: {out}")


# --------------------------------------------------------------------------- the report


def rate(final: dict, budget: float) -> float:
    return final.get("epochs", 0) / max(final.get("elapsed", budget), 1e-9)


def seed_rows(args, contenders, results, seed: int) -> list[dict]:
    """One seed's figures per contender: trials, epochs/s, best, test, its time to its best, digitune's to it."""
    mine = results.get(("digitune", seed), ([], {}))[0]
    rows = []
    for name in contenders:
        events, final = results[(name, seed)]
        best = final.get("best", max((r["best"] for r in events), default=float("nan")))
        row = {"name": name, "trials": final.get("trials", len(events)), "rate": rate(final, args.budget),
               "best": best, "test": final.get("test_accuracy", float("nan")), "t_best": time_to(events, best)}
        if name != "digitune" and "digitune" in contenders and events:
            row["digitune_t"] = time_to(mine, best)
            row["ratio"] = row["digitune_t"] / row["t_best"] if row["t_best"] > 0 else math.inf
        if name == "digitune" and "best_trial" in final:
            row["origin"] = f"best trial #{final['best_trial']}: " + (final.get("best_start") or "sampled")
        rows.append(row)
    return rows


def print_row(label: str, row: dict) -> None:
    to_it = f"{row['digitune_t']:8.1f} s ({row['ratio']:.2f})" if "digitune_t" in row else f"{'-':>17}"
    print(f"{label:<8}{row['name']:<12}{row['trials']:>7.0f}{row['rate']:>9.2f}{row['best']:>10.4f}"
          f"{row['test']:>10.4f}{row['t_best']:>9.1f} s {to_it}  {row.get('origin', '')}")


def report(args, contenders, results, loads) -> None:
    print(f"\n{args.dataset}, contenders' space {args.space}, {args.budget:.0f} s per contender, seeds {args.seeds}, "
          f"{os.cpu_count()} cores, load average {min(loads):.1f}-{max(loads):.1f} at the starts")
    print(f"{'seed':<8}{'contender':<12}{'trials':>7}{'epochs/s':>9}{'best val':>10}{'test acc':>10}"
          f"{'t(best)':>11}  digitune to it (ratio)")
    per_seed = {s: seed_rows(args, contenders, results, s) for s in args.seeds}
    for s, rows in per_seed.items():
        for row in rows:
            print_row(str(s), row)
    for i, name in enumerate(contenders):
        rows = [per_seed[s][i] for s in args.seeds]
        median = {k: statistics.median(r[k] for r in rows) for k in ("trials", "rate", "best", "test", "t_best")}
        for k in ("digitune_t", "ratio"):
            if all(k in r for r in rows):
                median[k] = statistics.median(r[k] for r in rows)
        if name == "digitune":
            sampled = sum(1 for r in rows if r.get("origin", "").endswith(": sampled"))
            median["origin"] = f"best not a start trial in {sampled}/{len(rows)} seeds"
        print_row("median", {"name": name, **median})
    for other in (c for c in contenders if c != "digitune" and "digitune" in contenders):
        ratios = [rate(results[("digitune", s)][1], args.budget) / rate(results[(other, s)][1], args.budget)
                  for s in args.seeds if rate(results[(other, s)][1], args.budget) > 0]
        if ratios:
            print(f"vs {other}: digitune's epochs/s ratio median {statistics.median(ratios):.2f}")


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
            xs = [r["t"] for r in rows] + [args.budget + grace(args.budget)]
            ys = [r["best"] for r in rows] + [rows[-1]["best"]]
            ax.step(xs, ys, where="post", color=colors.get(name), alpha=0.85,
                    label=f"{name}" if j == 0 else None, linewidth=1.6)
    ax.set_xlabel("seconds since the process started")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title(f"{args.dataset} ({args.space} space): time to accuracy, {len(args.seeds)} seed(s), "
                 f"{os.cpu_count()} cores")
    ax.axvline(args.budget, color="gray", linewidth=0.8, linestyle="--")  # after it: trials stopped at the budget
    ax.set_xlim(0, args.budget + grace(args.budget))
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
