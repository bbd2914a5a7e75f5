"""Storage throughput: trials per second on SQLite and PostgreSQL with 1 to 8 workers, no training.

    python bench/storage.py [--trials 300] [--workers 1 2 4 8] [--epochs 5]
                            [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]

Each worker is a process running digitune's own trial loop (the slot lock that hands out
trials, heartbeats, ``study.tell``) on one shared study, with an objective that trains
nothing but writes what a digitune trial writes: its configs, a validation accuracy per
epoch with a pruning check (Hyperband), its curves and attributes in one transaction.
So the figures are the ceiling the storage sets on trials per second. PostgreSQL is
skipped (with a note) when the server does not answer.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
import uuid
from pathlib import Path

import _checkout  # noqa: E402

_checkout.install()
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class TrivialObjective:
    """Writes what ``search.Objective`` writes for a trial, with a made-up learning curve and no model."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def __call__(self, trial):
        import optuna

        from digitune.search.storage._writes import write_trial_attrs as set_user_attrs

        width = trial.suggest_int("mlp_units", 16, 512, log=True)
        rate = trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
        set_user_attrs(trial, {"family": "mlp", "model_config": {"units": width}, "train_config": {"lr": rate}})
        curve = []
        for epoch in range(self.epochs):
            accuracy = 1.0 - 0.5 / (epoch + 1) - abs(rate - 0.01)
            curve.append(accuracy)
            trial.report(accuracy, epoch)
            if trial.should_prune():
                set_user_attrs(trial, {"curves": {"val_accuracy": curve}, "epochs_run": len(curve)})
                raise optuna.TrialPruned()
        set_user_attrs(trial, {"curves": {"val_accuracy": curve}, "params_count": width * 74, "epochs_run": len(curve),
                               "train_seconds": 0.0, "confusion_matrix": [[0] * 10] * 10})
        return curve[-1]


def worker(url: str, name: str, target: int, epochs: int) -> None:
    import optuna

    from digitune.search import open_storage
    from digitune.search._claim import SlotLock
    from digitune.search.loop._trials import _run_one

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(url)
    study = optuna.load_study(study_name=name, storage=storage,
                              sampler=optuna.samplers.TPESampler(seed=os.getpid(), n_startup_trials=10),
                              pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs))
    objective = TrivialObjective(epochs)
    with SlotLock(storage, name) as slots:
        while (trial := slots.claim(study, target)) is not None:
            _run_one(study, storage, trial, objective)


def measure(url: str, workers: int, trials: int, epochs: int) -> float:
    import optuna

    from digitune.search import open_storage

    name = f"storage-bench-{uuid.uuid4().hex[:8]}"
    storage = open_storage(url)
    optuna.create_study(study_name=name, storage=storage, direction="maximize")
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=worker, args=(url, name, trials, epochs)) for _ in range(workers)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    wall = time.perf_counter() - start
    study = optuna.load_study(study_name=name, storage=storage)
    done = len([t for t in study.get_trials(deepcopy=False) if t.state.is_finished()])
    # Workers need about a second to import; count from the first trial's start instead.
    first = min(t.datetime_start for t in study.get_trials(deepcopy=False) if t.datetime_start)
    last = max(t.datetime_complete for t in study.get_trials(deepcopy=False) if t.datetime_complete)
    span = (last - first).total_seconds() or wall
    optuna.delete_study(study_name=name, storage=storage)
    return done / span


def postgres_reachable(url: str) -> bool:
    try:
        from digitune.search import open_storage

        open_storage(url)
        return True
    except Exception as exc:  # no server, no driver: say so and go on with SQLite
        print(f"PostgreSQL skipped: {str(exc).splitlines()[0][:160]}")
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--postgres", default=os.environ.get("DIGITUNE_BENCH_POSTGRES", DEFAULT_POSTGRES))
    args = parser.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    folder = Path(tempfile.mkdtemp(prefix="digitune-storage-"))
    storages = [("SQLite", f"sqlite:///{folder / 'bench.db'}")]
    if args.postgres and postgres_reachable(args.postgres):
        storages.append(("PostgreSQL", args.postgres))
    print(f"{args.trials} trials of {args.epochs} epochs each (no training), {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'storage':<12}" + "".join(f"{f'{n} workers':>12}" for n in args.workers) + "   (trials/s)")
    for label, url in storages:
        rates = [measure(url, n, args.trials, args.epochs) for n in args.workers]
        print(f"{label:<12}" + "".join(f"{r:>12.1f}" for r in rates), flush=True)


if __name__ == "__main__":
    main()
