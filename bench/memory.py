"""Resident memory of one worker over many trials: does a long-lived worker grow?

    python bench/memory.py [--trials 200] [--storage sqlite:///tmp/memory.db] [--recycle-after K]

Runs small MLP and CNN trials on 300 digits, one worker, in this process, and prints the
resident set size (VmRSS) after trials 10, 50, 100, ... and its growth from trial 10 to
the last (the first trials warm up TensorFlow and the caches, so they are not the baseline).
With --recycle-after K it runs `digitune run --recycle-after K` instead and samples the
RSS of its worker processes every second: the largest any worker reached, per 50 trials.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import _checkout  # noqa: E402

_checkout.install()

STUDY = """
[study]
name = "memory"
trials = {trials}
sampler = "random"
pruner = "none"
save_models = 0

[data]
source = "digits"
limit = 300

[space]
family = ["mlp", "cnn"]
epochs = 1
batch_size = 64

[space.mlp]
hidden_layers = {{low = 1, high = 3}}
units = {{low = 16, high = 128, log = true}}

[space.cnn]
blocks = {{low = 1, high = 2}}
filters = {{low = 4, high = 16}}
kernel_size = 3
padding = "same"
dense_units = 16
"""


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    import optuna

    from digitune.search import load_spec, open_storage, run_study

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--storage")
    parser.add_argument("--recycle-after", type=int, default=0)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    folder = Path(tempfile.mkdtemp(prefix="digitune-memory-"))
    (folder / "memory.toml").write_text(STUDY.format(trials=args.trials))
    if args.recycle_after:
        recycled_run(folder, args.storage or f"sqlite:///{folder / 'memory.db'}", args.trials, args.recycle_after)
        return
    storage = open_storage(args.storage or f"sqlite:///{folder / 'memory.db'}")
    samples: dict[int, float] = {}
    marks = {10, 25, 50, 100, 150, 200, args.trials}

    def on_trial(study, trial) -> None:
        n = trial.number + 1
        if n in marks:
            samples[n] = rss_mib()
            print(f"after trial {n:4d}: {samples[n]:8.1f} MiB", flush=True)

    start = time.perf_counter()
    run_study(load_spec(folder / "memory.toml"), storage, on_trial=on_trial)
    wall = time.perf_counter() - start
    first, last = min(samples), max(samples)
    growth = 100 * (samples[last] - samples[first]) / samples[first]
    print(f"{args.trials} trials in {wall:.0f} s; RSS {samples[first]:.1f} MiB after trial {first}, "
          f"{samples[last]:.1f} MiB after trial {last}: {growth:+.1f} %")


def _worker_rss() -> list[float]:
    """VmRSS (MiB) of every running `search.cli worker` process."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
            if b"search.cli worker" not in cmdline:
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    found.append(int(line.split()[1]) / 1024)
        except OSError:
            continue
    return found


def recycled_run(folder: Path, storage: str, trials: int, recycle_after: int) -> None:
    import subprocess

    import optuna

    cmd = [*_checkout.cli(), "run", str(folder / "memory.toml"), "--storage", storage,
           "--recycle-after", str(recycle_after)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peaks: dict[int, float] = {}
    while proc.poll() is None:
        time.sleep(1.0)
        try:
            done = len(optuna.load_study(study_name="memory", storage=storage).trials)
        except KeyError:
            continue
        bucket = min(trials, (done // 50 + 1) * 50)
        peaks[bucket] = max([peaks.get(bucket, 0.0), *_worker_rss()])
    wall = time.perf_counter() - start
    for bucket in sorted(peaks):
        print(f"trials up to {bucket:4d}: largest worker RSS {peaks[bucket]:8.1f} MiB")
    print(f"{trials} trials in {wall:.0f} s with --recycle-after {recycle_after}; exit code {proc.returncode}")


if __name__ == "__main__":
    main()
