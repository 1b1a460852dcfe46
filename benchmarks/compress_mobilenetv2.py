"""Benchmark: MobileNetV2 (small-input) on Fashion-MNIST, 50% structured channel pruning + fine-tuning.

Bars (issue 4): measured onnxruntime fp32 latency ratio before/after >= 1.8 (one run, interleaved),
and test top-1 drop <= 1.0 point.

Full-scale training (width 1.0, 60k images, 15 epochs) takes hours on a small shared CPU, so the
scale is a parameter: by default width 0.5, 28 px, a seeded 6,000-image training subset, 6 epochs;
the script prints the scale it ran next to the numbers. Latency is single-image onnxruntime fp32,
the two models alternating run by run (so load from other processes hits both alike).

    .venv/bin/python benchmarks/compress_mobilenetv2.py                     # default scale
    .venv/bin/python benchmarks/compress_mobilenetv2.py --train-subset 0 --width 1.0 --epochs 15   # full
    .venv/bin/python benchmarks/compress_mobilenetv2.py --checkpoint runs/x/best.pt  # skip training
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--data-root", help="folder with the IDX files (default: Debian's /usr/share/datasets)")
    ap.add_argument("--checkpoint", help="an already trained MobileNetV2 checkpoint (skips training)")
    ap.add_argument("--width", type=float, default=0.5, help="width multiplier (default 0.5)")
    ap.add_argument("--img-size", type=int, default=28)
    ap.add_argument("--train-subset", type=int, default=6000, help="training images (0 = all; default 6000)")
    ap.add_argument("--epochs", type=int, default=6, help="baseline training epochs")
    ap.add_argument("--ratio", type=float, default=0.5, help="channel pruning ratio (default 0.5)")
    ap.add_argument("--round-to", type=int, default=8)
    ap.add_argument("--finetune-epochs", type=int, default=6)
    ap.add_argument("--eval-limit", type=int, help="test images (default: the whole test split)")
    ap.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads (default 1)")
    ap.add_argument("--latency-runs", type=int, default=500)
    ap.add_argument("--out", default="runs/bench-compress-mobilenetv2")
    args = ap.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from edgecnn.compress.prune import PruneSettings, prune_checkpoint
    from edgecnn.train.trainer import train

    out = Path(args.out)
    subset = args.train_subset or None
    t0 = time.perf_counter()
    if args.checkpoint:
        best = Path(args.checkpoint)
    else:
        best = train("mobilenet_v2", args.data, out / "baseline", epochs=args.epochs, width_mult=args.width,
                     small_input=True, img_size=args.img_size, train_limit=subset, data_root=args.data_root,
                     seed=0, overwrite=True, threads=args.threads, progress=False)
    t_train = time.perf_counter() - t0
    prune_checkpoint(best, PruneSettings(ratio=args.ratio, round_to=args.round_to),
                     finetune_epochs=args.finetune_epochs, out=out / "pruned", data_root=args.data_root,
                     train_limit=subset, eval_limit=args.eval_limit, threads=args.threads,
                     latency_runs=args.latency_runs)
    report = json.loads((out / "pruned" / "compress_report.json").read_text())
    orig, pruned = report["rows"]
    speedup, drop = pruned["speedup_median"], pruned["acc_drop_points"]
    summary = {
        "benchmark": "compress_mobilenetv2",
        "scale": {"data": args.data, "width_mult": args.width, "img_size": args.img_size,
                  "train_images": subset or "all", "baseline_epochs": None if args.checkpoint else args.epochs,
                  "checkpoint": str(best), "ratio": args.ratio, "round_to": args.round_to,
                  "finetune_epochs": args.finetune_epochs, "test_images": args.eval_limit or "all",
                  "threads": args.threads, "latency_runs": args.latency_runs},
        "before": orig, "after": pruned,
        "speedup_median": speedup, "acc_drop_points": drop,
        "bars": {"speedup>=1.8": speedup >= 1.8, "acc_drop<=1.0": drop <= 1.0},
        "seconds": {"train": round(t_train, 1), "total": round(time.perf_counter() - t0, 1)},
        "machine_note": f"{os.cpu_count()}-core machine shared with other jobs; latencies interleaved run by run",
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nMobileNetV2 x{args.width} small-input, {args.img_size}px, {args.data} "
          f"({subset or 'all'} train images, "
          f"{'baseline ' + str(best) if args.checkpoint else str(args.epochs) + ' epochs'}), "
          f"prune {args.ratio:.0%} round_to {args.round_to} + {args.finetune_epochs} fine-tune epochs")
    print(f"params {orig['params']:,} -> {pruned['params']:,}; MACs {orig['macs'] / 1e6:.1f}M -> "
          f"{pruned['macs'] / 1e6:.1f}M")
    print(f"onnxruntime fp32 latency ({args.threads} thread, {args.latency_runs} interleaved runs, shared "
          f"{os.cpu_count()}-core machine): median {orig['median_ms']:.3f} -> {pruned['median_ms']:.3f} ms, "
          f"p90 {orig['p90_ms']:.3f} -> {pruned['p90_ms']:.3f} ms; speed-up {speedup:.2f}x "
          f"[{'PASS' if speedup >= 1.8 else 'FAIL'} >= 1.8]")
    print(f"test top-1 {orig['test_acc']:.4f} -> {pruned['test_acc']:.4f}: drop {drop:.2f} points "
          f"[{'PASS' if drop <= 1.0 else 'FAIL'} <= 1.0]")
    print(f"summary: {out / 'summary.json'}")
    return 0 if all(summary["bars"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
