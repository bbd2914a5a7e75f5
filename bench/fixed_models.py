"""Seconds per trial for two fixed models, trained again and again as a search would.

    python bench/fixed_models.py [--dataset digits] [--trials 8] [--epochs 5] [--optimizer adam]
    DIGITUNE_CHECKOUT=/path/to/older/checkout python bench/fixed_models.py --label before

Trains a two-layer MLP (64 units) and a two-block CNN (16 filters, 3x3, max pooling, 32
dense units) with ``models.train``, one thread, after two warm-up trials each, and prints
for each the median seconds per trial, of the first epoch (tracing the training step plus
one epoch) and of a later epoch, with the last trial's validation accuracy (the same on
every checkout that does the same arithmetic). Unlike ``trial_breakdown.py`` every trial
is the same model, so two checkouts, or two settings (``DIGITUNE_TF_GRAPPLER=on``), compare
like for like.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.environ.get("DIGITUNE_CHECKOUT", str(Path(__file__).resolve().parent.parent)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--optimizer", default="adam", choices=("adam", "sgd", "rmsprop"))
    parser.add_argument("--label", default="")
    args = parser.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from models import CNNConfig, ConvBlock, MLPConfig, TrainConfig, load_dataset, train

    dataset = load_dataset(args.dataset)
    block = ConvBlock(filters=16, kernel_size=3, padding="same", pool="max", pool_size=2)
    configs = {"mlp": MLPConfig(hidden_layers=2, units=64), "cnn": CNNConfig(blocks=(block, block), dense_units=32)}
    for family, config in configs.items():
        for seed in range(2):
            train(config, TrainConfig(epochs=1, batch_size=32, seed=seed, optimizer=args.optimizer), dataset)
        totals, firsts, laters = [], [], []
        for seed in range(10, 10 + args.trials):
            start = time.perf_counter()
            result = train(config, TrainConfig(epochs=args.epochs, batch_size=32, seed=seed, optimizer=args.optimizer),
                           dataset)
            totals.append(time.perf_counter() - start)
            seconds = result.log.curves["epoch_seconds"]
            firsts.append(seconds[0])
            laters.extend(seconds[1:])
        print(f"{args.label or 'digitune'} {family}: {statistics.median(totals):.3f} s per trial, first epoch "
              f"{statistics.median(firsts):.3f} s, later epoch {statistics.median(laters):.4f} s, "
              f"val. accuracy {result.val_accuracy:.4f} ({args.optimizer}, {args.epochs} epochs, "
              f"{args.trials} trials, {args.dataset})", flush=True)


if __name__ == "__main__":
    main()
