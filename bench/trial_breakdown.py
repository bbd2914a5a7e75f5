"""Where a trial's time goes: clear, build, first epoch, later epochs, validation, class report, storage.

    python bench/trial_breakdown.py [--study studies/quickstart.toml] [--trials 40] [--storage URL]
                                    [--pruner none] [--epochs 5] [--threads 1]

Runs the study in this process with digitune's own runner and objective (a fresh SQLite
file unless --storage names another), times every storage call (the RDB storage's methods)
and every phase of ``models.train`` (``TrainLog.timings``), and prints the mean seconds per
trial for each phase, the trials per second and the epochs trained per second. The first
trial (imports, first tracing of anything) is left out of the figures. Works on checkouts
from before ``TrainLog.timings`` too (then the phases come from the stored curves), so the
same script measures the code before and after a change.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import _checkout

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_checkout.install()

PHASES = ("clear", "build", "first_epoch", "later_epochs", "class_report", "storage", "other")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default=str(Path(__file__).resolve().parent.parent / "studies/quickstart.toml"))
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--storage")
    parser.add_argument("--pruner", help="replace the file's pruner (none: every trial runs all its epochs)")
    parser.add_argument("--epochs", type=int, help="a fixed number of epochs instead of the file's range")
    parser.add_argument("--threads", type=int, help="the backend's thread budget (default: all cores)")
    parser.add_argument("--label", default="", help="a name for this run in the printed line")
    args = parser.parse_args()
    if args.threads:
        os.environ["DIGITUNE_THREADS"] = str(args.threads)

    import optuna

    from digitune import models
    from digitune.search import load_spec, open_storage, run_study, spec_from_dict
    from digitune.search.service import apply_thread_budget

    apply_thread_budget()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    spec = load_spec(args.study)
    data = spec.to_dict()
    data["study"].update(name="breakdown", trials=args.trials, save_models=0)
    if args.pruner:
        data["study"]["pruner"] = args.pruner
    if args.epochs:
        data["space"]["epochs"] = args.epochs
    spec = spec_from_dict(data)
    folder = Path(tempfile.mkdtemp(prefix="digitune-breakdown-"))
    storage = open_storage(args.storage or f"sqlite:///{folder / 'breakdown.db'}")
    storage_seconds, storage_calls = _time_storage(storage)

    per_trial: list[dict[str, float]] = []
    current: dict[str, float] = defaultdict(float)
    real_train, real_report = models.train, models.class_report

    def timed_train(*a, **kw):
        log = kw.get("log")
        try:
            return real_train(*a, **kw)
        finally:
            if log is not None:
                timings = getattr(log, "timings", None) or {}
                seconds = log.curves.get("epoch_seconds", [])
                current["clear"] += timings.get("clear", 0.0)
                current["build"] += timings.get("build", 0.0)
                current["first_epoch"] += timings.get("first_epoch", seconds[0] if seconds else 0.0)
                current["later_epochs"] += timings.get("later_epochs", sum(seconds[1:]))
                current["validation"] += timings.get("validation", float("nan"))
                current["fit"] += log.train_seconds
                current["epochs"] += log.epochs_run

    def timed_report(*a, **kw):
        start = time.perf_counter()
        try:
            return real_report(*a, **kw)
        finally:
            current["class_report"] += time.perf_counter() - start

    models.train, models.class_report = timed_train, timed_report
    import digitune.search._objective as objective_module

    real_set_attrs = getattr(objective_module, "write_trial_attrs", None)
    if real_set_attrs is not None:  # batched user attributes: one transaction, through a private method

        def timed_set_attrs(*a, **kw):
            start, before = time.perf_counter(), storage_seconds[0]
            try:
                return real_set_attrs(*a, **kw)
            finally:
                storage_seconds[0] += time.perf_counter() - start - (storage_seconds[0] - before)
                storage_calls["set_user_attrs (batched)"][0] += 1
                storage_calls["set_user_attrs (batched)"][1] += time.perf_counter() - start

        objective_module.write_trial_attrs = timed_set_attrs
    state = {"last": time.perf_counter(), "storage": 0.0}

    def on_trial(study, trial) -> None:
        now = time.perf_counter()
        row = dict(current)
        row["wall"] = now - state["last"]
        row["storage"] = storage_seconds[0] - state["storage"]
        known = sum(row.get(k, 0.0) for k in ("clear", "build", "fit", "class_report", "storage"))
        row["other"] = row["wall"] - known
        row["state"] = trial.state.name
        per_trial.append(row)
        current.clear()
        state["last"], state["storage"] = time.perf_counter(), storage_seconds[0]

    start = time.perf_counter()
    run_study(spec, storage, on_trial=on_trial)
    wall = time.perf_counter() - start
    rows = per_trial[1:]  # the first trial pays for imports and first-time setup
    print(f"{args.label or 'digitune'}: {len(per_trial)} trials in {wall:.1f} s "
          f"(load {os.getloadavg()[0]:.1f}); figures from trials 2..{len(per_trial)}")
    total_wall = sum(r["wall"] for r in rows)
    epochs = sum(r.get("epochs", 0) for r in rows)
    print(f"  {len(rows) / total_wall:.2f} trials/s, {epochs / total_wall:.2f} epochs/s, "
          f"{epochs / len(rows):.2f} epochs per trial, {total_wall / len(rows):.3f} s per trial")
    print(f"  {'phase':<14}{'mean s':>9}{'median s':>10}{'share':>8}")
    for phase in (*PHASES, "validation"):
        values = [r.get(phase, 0.0) for r in rows]
        if any(v != v for v in values):  # NaN: not measured (digitune's fast epochs validate inside their calls)
            continue
        label = phase if phase != "validation" else "(validation)"
        print(f"  {label:<14}{statistics.mean(values):>9.3f}{statistics.median(values):>10.3f}"
              f"{100 * sum(values) / total_wall:>7.1f}%")
    print("  (validation is part of the epochs, and not timed apart where the epochs' own calls validate; "
          "other = sampler, pruner, Python between the phases)")
    top = sorted(storage_calls.items(), key=lambda kv: -kv[1][1])[:6]
    print("  storage calls per trial: " + ", ".join(
        f"{name} {count / len(per_trial):.1f}x {1000 * seconds / len(per_trial):.0f} ms"
        for name, (count, seconds) in top))


def _time_storage(storage) -> tuple[list[float], dict[str, list]]:
    """Wrap every public method of ``storage`` (an RDB storage) to add its seconds to the returned cell."""
    total = [0.0]
    calls: dict[str, list] = defaultdict(lambda: [0, 0.0])
    for name in dir(type(storage)):
        if name.startswith("_") or not callable(getattr(type(storage), name, None)):
            continue
        method = getattr(storage, name)

        def timed(*a, __method=method, __name=name, **kw):
            start = time.perf_counter()
            try:
                return __method(*a, **kw)
            finally:
                seconds = time.perf_counter() - start
                total[0] += seconds
                calls[__name][0] += 1
                calls[__name][1] += seconds

        setattr(storage, name, timed)
    return total, calls


if __name__ == "__main__":
    main()
