"""Bar: LeNet-5 trained from scratch on Fashion-MNIST reaches >= 90% test top-1.

Uses the defaults `edgecnn train lenet5 --data fashion-mnist` gives (15 epochs on the 55,000
training images, one-cycle AdamW, no augmentation at this size). Prints the measured test accuracy and
wall time. Needs the Fashion-MNIST IDX files (Debian's fashion-mnist package, or --data-root).

    .venv/bin/python benchmarks/train_lenet5_fashion.py [--augment] [--epochs N] [--train-limit N]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

BAR = 0.90


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, help="default: edgecnn's default for the dataset size")
    ap.add_argument("--train-limit", type=int, help="train on a subset (then the bar is not claimed)")
    ap.add_argument("--augment", dest="augment", action="store_true", default=None,
                    help="force the small affine (default: off at this size; it measured 89.7%% vs 91.0%%)")
    ap.add_argument("--data-root")
    ap.add_argument("--out", help="run directory (default: a temporary one)")
    args = ap.parse_args()

    import torch

    from edgecnn.train.trainer import train

    out = args.out or tempfile.mkdtemp(prefix="bench-lenet5-fashion-")
    t0 = time.perf_counter()
    best = train("lenet5", "fashion-mnist", out, epochs=args.epochs, train_limit=args.train_limit,
                 data_root=args.data_root, augment=args.augment, overwrite=True)
    wall = time.perf_counter() - t0
    ckpt = torch.load(best, weights_only=True)
    acc = ckpt["metrics"]["test_acc"]
    print(f"\nLeNet-5 / Fashion-MNIST: test top-1 {acc:.4f} (bar {BAR:.2f}: {'PASS' if acc >= BAR else 'FAIL'}), "
          f"{ckpt['train_args']['epochs']} epochs, augment {ckpt['train_args']['augment']}, train_limit {args.train_limit}, wall {wall:.0f} s "
          f"on {platform.machine()} with {os.cpu_count()} CPUs (a shared machine: time is indicative)")
    return 0 if acc >= BAR or args.train_limit else 1


if __name__ == "__main__":
    raise SystemExit(main())
