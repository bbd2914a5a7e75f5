"""Hyperband against asynchronous successive halving, each counting epochs or time, on a fixed budget.

    python bench/pruners.py [--dataset digits] [--budget 60] [--seeds 1 2 3] [--limit 6000]
                            [--pruners hyperband successive-halving]

Runs the same study (``studies/quickstart.toml``'s space on the 8x8 digits;
``bench/fashion-short.toml``'s on Fashion-MNIST, ``--limit`` images, epochs widened to 3..12
as quickstart's) with four pruner settings: ``hyperband`` and ``successive-halving``,
each with ``fidelity = "epochs"`` and ``"time"`` (``search/_fidelity.py``). Every run is
``run_study`` in this process with a ``--budget`` time limit on a fresh SQLite file, TPE
seeded with the seed, its first trials drawn by the sampler (``start = "sampler"``: the
space's known-good start trials would reach most of the best at once, whatever the pruner),
the data loaded once outside the clock and the backend warmed up by a run off the record;
the four settings run seed by seed, in an order that rotates from seed to seed, so the
machine's load falls on all of them.

Prints per run and as medians over seeds: the best validation accuracy of a completed
trial, trials finished (pruned among them), epochs trained, the seconds to reach the
lowest of the settings' bests in that seed (``t(all)``: what every setting reached), and the
seconds to reach the best of the same pruner with the other fidelity (``t(other)``;
``-`` when never reached). Ratios are taken within a seed, side by side.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
import _checkout  # noqa: E402

_checkout.install()

SETTINGS = (("hyperband", "epochs"), ("hyperband", "time"), ("successive-halving", "epochs"),
            ("successive-halving", "time"))


def label(setting: tuple[str, str]) -> str:
    return f"{'HB' if setting[0] == 'hyperband' else 'ASHA'}/{setting[1]}"


def bench_spec(dataset: str, setting: tuple[str, str], seed: int, budget: float, limit: int):
    """The study for one run: the dataset's space, the setting's pruner and fidelity, seeded, with a timeout."""
    from digitune.search import load_spec, spec_from_dict

    if dataset == "digits":
        data = load_spec(ROOT / "studies/quickstart.toml").to_dict()
    else:
        data = load_spec(ROOT / "bench/fashion-short.toml").to_dict()
        data["data"].update(source=dataset, limit=limit)
        data["space"]["epochs"] = {"low": 3, "high": 12}
    data["study"].update(name=f"pruners-{label(setting)}-{seed}", trials=100_000, timeout=budget, seed=seed,
                         pruner=setting[0], fidelity=setting[1], start="sampler")
    return spec_from_dict(data)


def run_one(spec, dataset) -> tuple[list[tuple[float, float]], dict[str, int]]:
    """Run ``spec`` to its timeout: (seconds from the start, value) of every completed trial in order, and counts."""
    from digitune.search import open_storage, run_study

    folder = Path(tempfile.mkdtemp(prefix="digitune-pruners-"))
    storage = open_storage(f"sqlite:///{folder / 'bench.db'}")
    started = time.time()
    summary = run_study(spec, storage, dataset=dataset)
    trials = summary.study.get_trials(deepcopy=False)
    done = sorted((t.datetime_complete.timestamp() - started, t.value, t.state.name, t.user_attrs.get("epochs_run", 0))
                  for t in trials if t.datetime_complete is not None)
    counts = {"finished": sum(s in ("COMPLETE", "PRUNED") for _, _, s, _ in done),
              "pruned": sum(s == "PRUNED" for _, _, s, _ in done), "epochs": sum(e for *_, e in done)}
    completed = [(at, v) for at, v, s, _ in done if s == "COMPLETE" and v is not None and math.isfinite(v)]
    return completed, counts


def time_to(curve: list[tuple[float, float]], target: float) -> float | None:
    """Seconds until a completed trial reached ``target`` (None if none did)."""
    return next((at for at, value in curve if value >= target - 1e-12), None)


def fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:5.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits", help="digits, or fashion-mnist (or its folder)")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--limit", type=int, default=6000, help="Fashion-MNIST images (data.limit)")
    parser.add_argument("--pruners", nargs="+", default=["hyperband", "successive-halving"],
                        choices=["hyperband", "successive-halving"])
    args = parser.parse_args()
    settings = tuple(s for s in SETTINGS if s[0] in args.pruners)
    import logging

    import optuna

    from digitune.models import load_dataset

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("digitune").setLevel(logging.WARNING)
    first = bench_spec(args.dataset, settings[0], args.seeds[0], args.budget, args.limit)
    dataset = load_dataset(first.data.source, **first.data.load_kwargs())
    run_one(bench_spec(args.dataset, settings[0], 0, 10, args.limit), dataset)  # warm up, off the record
    rows: dict[tuple[str, str], list[dict]] = {s: [] for s in settings}
    for i, seed in enumerate(args.seeds):
        order = settings[i % len(settings):] + settings[:i % len(settings)]
        runs = {}
        for setting in order:
            load = os.getloadavg()[0]
            curve, counts = run_one(bench_spec(args.dataset, setting, seed, args.budget, args.limit), dataset)
            runs[setting] = {"curve": curve, "best": max((v for _, v in curve), default=0.0), "load": load, **counts}
        floor = min(r["best"] for r in runs.values())
        for setting, run in runs.items():
            other = runs[(setting[0], "time" if setting[1] == "epochs" else "epochs")]
            run.update(t_all=time_to(run["curve"], floor), t_other=time_to(run["curve"], other["best"]))
            rows[setting].append(run)
            print(f"seed {seed} {label(setting):<12} best {run['best']:.4f}  finished {run['finished']:3d} "
                  f"(pruned {run['pruned']:3d})  epochs {run['epochs']:4d}  t(all) {fmt(run['t_all'])}  "
                  f"t(other) {fmt(run['t_other'])}  (load before {run['load']:.1f})", flush=True)
    summarize(rows, args)


def summarize(rows: dict[tuple[str, str], list[dict]], args) -> None:
    """Medians over seeds, and each setting's t(all) against the first setting's in the same seed."""
    print(f"\nmedians over seeds {args.seeds}, {args.budget:.0f} s a run, {args.dataset}:")
    first = next(iter(rows))
    base = rows[first]
    for setting, runs in rows.items():
        ratios = [r["t_all"] / b["t_all"] for r, b in zip(runs, base) if r["t_all"] and b["t_all"]]
        reached = sum(r["t_other"] is not None for r in runs)
        print(f"  {label(setting):<12} best {statistics.median(r['best'] for r in runs):.4f}  "
              f"finished {statistics.median(r['finished'] for r in runs):5.1f}  "
              f"pruned {statistics.median(r['pruned'] for r in runs):5.1f}  "
              f"epochs {statistics.median(r['epochs'] for r in runs):6.1f}  "
              f"t(all)/{label(first)} {statistics.median(ratios) if ratios else float('nan'):4.2f}  "
              f"reached the other fidelity's best in {reached}/{len(runs)} seeds")


if __name__ == "__main__":
    main()
