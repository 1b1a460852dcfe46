"""Benchmark: `edgecnn optimize` on MobileNetV2 (small-input, width 0.5, 28 px) on Fashion-MNIST.

Bar (issue 18): the chosen bundle is at least 2x faster (p50, this CPU) than the plain fp32 ONNX export of
the same checkpoint on onnxruntime, at <= 1 point test top-1 drop, found in <= 60 minutes. The plain export
is timed in the same search (ratio 0, onnx fp32, onnxruntime) at every thread count tried, and the speed-up
is against its best one, so a thread count alone cannot make the bar.

Training the baseline to convergence (55k images, 15 epochs: 93.56%, docs/training.md) takes ~1.5 h on
this 2-core machine, so the scale is a parameter: by default a seeded 6,000-image training subset and 6
epochs (what benchmarks/compress_mobilenetv2.py uses), fine-tuning on the same subset. The script prints
and records the scale it ran next to the numbers. --checkpoint skips training.

    .venv/bin/python benchmarks/optimize_mobilenetv2.py                         # default scale
    .venv/bin/python benchmarks/optimize_mobilenetv2.py --checkpoint runs/mnv2/best.pt --train-subset 0
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--data-root", help="folder with the IDX files (default: Debian's /usr/share/datasets)")
    ap.add_argument("--checkpoint", help="an already trained MobileNetV2 checkpoint (skips training)")
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--img-size", type=int, default=28)
    ap.add_argument("--train-subset", type=int, default=6000, help="training/fine-tuning images (0 = all)")
    ap.add_argument("--epochs", type=int, default=6, help="baseline training epochs")
    ap.add_argument("--ratios", default="0,0.5,0.7")
    ap.add_argument("--finetune-epochs", type=int, default=6)
    ap.add_argument("--qat-epochs", type=int, default=2)
    ap.add_argument("--precisions", default="fp32,int8", help="fp16 is never faster on a CPU backend here")
    ap.add_argument("--test-limit", type=int, help="test images (default: all 10,000)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for training (default 1)")
    ap.add_argument("--budget-min", type=float, default=60.0)
    ap.add_argument("--out", default="runs/bench-optimize-mobilenetv2")
    args = ap.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from edgecnn.optimize.report import finish
    from edgecnn.optimize.search import SearchRun, SearchSpace, run_search
    from edgecnn.train.trainer import train

    out = Path(args.out)
    subset = args.train_subset or None
    t0 = time.perf_counter()
    if args.checkpoint:
        best = Path(args.checkpoint)
    else:
        best = out / "baseline" / "best.pt"
        if not best.is_file():
            best = train("mobilenet_v2", args.data, out / "baseline", epochs=args.epochs, width_mult=args.width,
                         small_input=True, img_size=args.img_size, train_limit=subset, data_root=args.data_root,
                         seed=0, overwrite=True, threads=args.threads, progress=False)
    t_train = time.perf_counter() - t0
    space = SearchSpace(ratios=[float(r) for r in args.ratios.split(",")], finetune_epochs=args.finetune_epochs,
                        qat_epochs=args.qat_epochs, precisions=args.precisions.split(","), round_to=8)
    run = SearchRun(checkpoint=best, data=args.data, out=out / "search", max_drop=1.0, budget_min=args.budget_min,
                    data_root=args.data_root, test_limit=args.test_limit, train_limit=subset,
                    train_threads=args.threads)
    t1 = time.perf_counter()
    state = run_search(run, space, progress=False)
    result = finish(state)
    t_search = time.perf_counter() - t1
    chosen = result["chosen"]
    speedup, drop = chosen["speedup_vs_plain_fp32_onnx"], chosen["drop_points"]
    summary = {
        "benchmark": "optimize_mobilenetv2",
        "scale": {"data": args.data, "width_mult": args.width, "img_size": args.img_size,
                  "train_images": subset or "all", "baseline_epochs": None if args.checkpoint else args.epochs,
                  "checkpoint": str(best), "ratios": space.ratios, "finetune_epochs": space.finetune_epochs,
                  "qat_epochs": space.qat_epochs, "precisions": space.precisions,
                  "test_images": result["test_images"]},
        "baseline_accuracy": result["baseline_accuracy"], "chosen": chosen,
        "plain_fp32_onnx_p50_ms": result["plain_fp32_onnx"]["latency_ms"]["p50"],
        "trials": result["trials_measured"], "speedup": speedup, "drop_points": drop,
        "seconds": {"train": round(t_train, 1), "search": round(t_search, 1),
                    "search_this_run": result["elapsed_s"]},
        "bars": {"speedup>=2": speedup >= 2.0, "drop<=1": drop <= 1.0, "search<=60min": t_search <= 3600},
        "machine_note": f"{os.cpu_count()}-core machine shared with other jobs",
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: summary[k] for k in ("speedup", "drop_points", "bars", "seconds")}, indent=2))
    return 0 if all(summary["bars"].values()) else 1


if __name__ == "__main__":
    from edgecnn.errors import run_script

    run_script(main)
