"""Time short studies on the Keras backend of this machine's choosing: GPU against CPU, side by side.

Meant for a GPU machine (the JAX backend, since such images often lack TensorFlow):

    KERAS_BACKEND=jax python bench/gpu_check.py [--fashion FOLDER] [--out DIR]

Runs studies/quickstart.toml on the GPU and on the CPU (JAX_PLATFORMS=cpu), and, with
--fashion, bench/fashion-short.toml on the GPU; prints wall time, trials, the best value,
the device each trial ran on and seconds per epoch, and the GPU/CPU ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

import optuna

import _checkout

_checkout.install()
REPO = Path(__file__).resolve().parent.parent


def run_study(label: str, study_file: Path, db: Path, env: dict[str, str], extra: list[str]) -> dict:
    start = time.perf_counter()
    cmd = [*_checkout.cli(), "run", str(study_file), "--storage", f"sqlite:///{db}", *extra]
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(f"{label}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
        return {"label": label, "wall": wall, "ok": False}
    name = optuna.get_all_study_names(storage=f"sqlite:///{db}")[0]
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    trials = [t for t in study.trials if t.state.is_finished()]
    later_epochs = [s for t in trials for s in t.user_attrs.get("curves", {}).get("epoch_seconds", [])[1:]]
    first_epochs = [t.user_attrs["curves"]["epoch_seconds"][0] for t in trials
                    if t.user_attrs.get("curves", {}).get("epoch_seconds")]
    epochs = sum(t.user_attrs.get("epochs_run", 0) for t in trials)
    return {
        "label": label, "ok": True, "wall": wall, "trials": len(trials),
        "states": {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL")},
        "best": study.best_value, "devices": sorted({t.user_attrs.get("device") for t in trials}),
        "backend": sorted({t.user_attrs.get("keras_backend") for t in trials}),
        "epochs": epochs, "epochs_per_s": epochs / wall,
        "first_epoch_s": statistics.median(first_epochs) if first_epochs else None,
        "later_epoch_s": statistics.median(later_epochs) if later_epochs else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fashion", help="folder with the Fashion-MNIST IDX gz files")
    parser.add_argument("--out", default=os.environ.get("OUT", "/tmp/gpu-check"))
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    quick = REPO / "studies" / "quickstart.toml"
    results = [
        run_study("digits on GPU", quick, out / "digits-gpu.db", {}, ["--trials", str(args.trials)]),
        run_study("digits on CPU", quick, out / "digits-cpu.db", {"JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""},
                  ["--trials", str(args.trials)]),
    ]
    if args.fashion:
        results.append(run_study("fashion-mnist on GPU", REPO / "bench" / "fashion-short.toml", out / "fashion-gpu.db",
                                 {}, ["--dataset", f"fashion-mnist:{args.fashion}"]))
    for r in results:
        print(r)
    gpu, cpu = results[0], results[1]
    if gpu["ok"] and cpu["ok"]:
        print(f"digits, same study and seed: GPU wall {gpu['wall']:.1f} s, CPU wall {cpu['wall']:.1f} s, "
              f"CPU/GPU ratio {cpu['wall'] / gpu['wall']:.2f}; later epochs median GPU {gpu['later_epoch_s']:.3f} s, "
              f"CPU {cpu['later_epoch_s']:.3f} s")


if __name__ == "__main__":
    main()
