"""Epochs trained per second by worker layout on this machine's CPU cores.

    python bench/layouts.py [--seconds 60] [--rounds 2] [--study studies/digits.toml] [--dataset digits]

Runs the same study for --seconds with each layout: one worker using every core, one
worker on one thread, and N single-thread workers (N = the core count), as
``digitune run --timeout`` in a fresh SQLite file, interleaved round by round so that
noise from other programs falls on every layout alike. Counts every epoch trained (complete,
pruned and interrupted trials) between the first trial's start and the last trial's end,
and prints epochs and trials per second, per layout and round, and the median.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
import _checkout  # noqa: E402

_checkout.install()


def layouts(cores: int) -> list[tuple[str, int, int]]:
    """(label, workers, threads per worker)."""
    found = [(f"1 worker x {cores} threads", 1, cores), ("1 worker x 1 thread", 1, 1)]
    if cores > 1:
        found.append((f"{cores} workers x 1 thread", cores, 1))
        found.append((f"{cores * 2} workers x 1 thread", cores * 2, 1))
    return found


def run_layout(study: Path, dataset: str, seconds: int, workers: int, threads: int) -> dict[str, float]:
    import optuna

    from digitune.search import load_spec

    folder = Path(tempfile.mkdtemp(prefix="digitune-layout-"))
    url = f"sqlite:///{folder / 'layout.db'}"
    name = load_spec(study).name
    cmd = [*_checkout.cli(), "run", str(study), "--storage", url, "--timeout", str(seconds + 5),
           "--trials", "100000", "--dataset", dataset]
    env = {**os.environ, "DIGITUNE_THREADS": str(threads)}
    # Always named: without --workers, run takes $DIGITUNE_WORKERS, the study file's workers or one per core.
    # Each worker gets cores // workers threads.
    cmd += ["--workers", str(workers)]
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, check=False)
    trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    ended = [t for t in trials if t.datetime_complete and t.datetime_start]
    if not ended:
        return {"epochs_per_s": 0.0, "trials_per_s": 0.0, "epochs": 0, "trials": 0}
    # Count what ended inside one window of --seconds from the first trial's start (workers still
    # finish the trials they hold at the timeout): each epoch's end is its trial's start plus the
    # epoch seconds so far (plus the build before the first epoch, which this leaves out).
    start = min(t.datetime_start for t in ended)
    window_end = start + datetime.timedelta(seconds=seconds)
    epochs = 0
    for t in ended:
        at = t.datetime_start
        for s in t.user_attrs.get("curves", {}).get("epoch_seconds", []):
            at += datetime.timedelta(seconds=s)
            epochs += at <= window_end
    trials = sum(t.datetime_complete <= window_end for t in ended)
    return {"epochs_per_s": epochs / seconds, "trials_per_s": trials / seconds, "epochs": epochs, "trials": trials}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--study", type=Path, default=ROOT / "studies/digits.toml")
    parser.add_argument("--dataset", default="digits")
    args = parser.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    cores = os.cpu_count() or 1
    results: dict[str, list[dict[str, float]]] = {}
    for round_ in range(1, args.rounds + 1):
        order = layouts(cores)
        if round_ % 2 == 0:
            order.reverse()
        for label, workers, threads in order:
            load = os.getloadavg()[0]
            row = run_layout(args.study, args.dataset, args.seconds, workers, threads)
            results.setdefault(label, []).append(row)
            print(f"round {round_}: {label:<24} {row['epochs_per_s']:6.2f} epochs/s {row['trials_per_s']:5.2f} "
                  f"trials/s ({row['trials']} trials, {row['epochs']} epochs; load before {load:.1f})", flush=True)
    print(f"\nmedian over {args.rounds} rounds, {cores} cores, {args.seconds} s each, {args.study.name} "
          f"on {args.dataset}:")
    best = max(results, key=lambda k: statistics.median(r["epochs_per_s"] for r in results[k]))
    for label, rows in results.items():
        eps = statistics.median(r["epochs_per_s"] for r in rows)
        tps = statistics.median(r["trials_per_s"] for r in rows)
        print(f"  {label:<24} {eps:6.2f} epochs/s {tps:5.2f} trials/s{'   <- most epochs/s' if label == best else ''}")


if __name__ == "__main__":
    main()
