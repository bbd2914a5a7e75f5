"""What drawing a trial's parameters costs as a study grows: TPE under Optuna's Hyperband and digitune's.

    python bench/sampler_cost.py [--trials 200] [--every 50]

No training: each trial draws its parameters from ``studies/digits.toml``'s space exactly as
digitune's objective does (``sample_configs``), then reports made-up per-epoch accuracies
(a smooth function of its parameters plus noise) until the pruner stops it or it reaches
10 epochs. Three studies, each in its own SQLite file, are built side by side, trial by trial, with the
same seed: TPE under Optuna's ``HyperbandPruner``, under digitune's (``make_pruner``, whose
bracket views share the study's trial cache), and under no pruner. Prints the mean seconds
spent drawing one trial's parameters, and storage reads of the trial list per trial, over
each stretch of ``--every`` trials; and whether the two Hyperband studies drew the same
parameters (they should: the cache changes what is read, not what is seen).
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import _checkout  # noqa: E402

_checkout.install()

import optuna  # noqa: E402

from digitune.search._factories import make_pruner, make_sampler  # noqa: E402
from digitune.search._space import sample_configs  # noqa: E402
from digitune.search._spec import load_spec, spec_from_dict  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _count_reads(study: optuna.Study) -> list[int]:
    """Count how often ``study``'s storage hands out the whole trial list (a one-item list, updated in place)."""
    reads = [0]
    read = study._storage.get_all_trials

    def counting(*args, **kwargs):
        reads[0] += 1
        return read(*args, **kwargs)

    study._storage.get_all_trials = counting
    return reads


def _score(params: dict, epoch: int, rng) -> float:
    """A made-up learning curve: larger models and mid learning rates do better, with noise."""
    size = params.get("mlp_units", params.get("cnn_filters", 32))
    lr = params.get("learning_rate", 1e-3)
    top = 0.9 + 0.02 * math.tanh(math.log(size) - 3) - 0.03 * abs(math.log10(lr) + 2.7)
    return top * (1 - math.exp(-epoch / 2.5)) + rng.normal(0, 0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--every", type=int, default=50)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    import numpy as np

    data = load_spec(ROOT / "studies/digits.toml").to_dict()
    data["space"]["epochs"] = {"low": 5, "high": 10}
    spec = spec_from_dict(data)
    folder = tempfile.mkdtemp(prefix="sampler-cost-")
    contenders = {
        "Optuna's Hyperband": optuna.pruners.HyperbandPruner(min_resource=3, max_resource=10, reduction_factor=3),
        "digitune's Hyperband": make_pruner(spec, 1257),
        "no pruner": optuna.pruners.NopPruner(),
    }
    # One file each, one study name: Hyperband puts a trial in a bracket by the study's name and
    # the trial's number, so the two Hyperband studies put the same trials in the same brackets.
    studies = {name: optuna.create_study(study_name="sampler", direction="maximize", sampler=make_sampler(spec),
                                         storage=f"sqlite:///{folder}/{i}.db", pruner=pruner)
               for i, (name, pruner) in enumerate(contenders.items())}
    counters = {name: _count_reads(study) for name, study in studies.items()}
    seconds: dict[str, list[float]] = {name: [] for name in studies}
    reads: dict[str, list[int]] = {name: [] for name in studies}
    drawn: dict[str, list[dict]] = {name: [] for name in studies}
    for number in range(args.trials):
        for name, study in studies.items():
            rng = np.random.default_rng(number)
            before = counters[name][0]
            start = time.perf_counter()
            trial = study.ask()
            sample_configs(trial, spec)
            seconds[name].append(time.perf_counter() - start)
            reads[name].append(counters[name][0] - before)
            drawn[name].append(dict(trial.params))
            value, state = 0.0, optuna.trial.TrialState.COMPLETE
            for epoch in range(1, 11):
                value = _score(trial.params, epoch, rng)
                trial.report(value, epoch)
                if trial.should_prune():
                    state = optuna.trial.TrialState.PRUNED
                    break
            study.tell(trial, value if state == optuna.trial.TrialState.COMPLETE else None, state=state)

    print(f"{args.trials} trials each, TPE (digitune's settings), SQLite in {folder}")
    print(f"{'trials':<10}" + "".join(f"{name:>24}" for name in studies) + "   (ms per trial's draws; reads)")
    for low in range(0, args.trials, args.every):
        row = f"{low + 1}-{min(low + args.every, args.trials):<6}"
        for name in studies:
            part = slice(low, low + args.every)
            row += f"{1000 * statistics.mean(seconds[name][part]):>17.1f} ({statistics.mean(reads[name][part]):4.1f})"
        print(row)
    same = drawn["Optuna's Hyperband"] == drawn["digitune's Hyperband"]
    print(f"the two Hyperband studies drew the same parameters in every trial: {same}")


if __name__ == "__main__":
    main()
