"""MobileNetV2 (small-input variant) on Fashion-MNIST: train, prune, QAT, export, benchmark.

Shows the compression path of edgecnn's Python API:

    train  ->  compress_checkpoint (structured pruning + fine-tuning, then quantization-aware training)
           ->  export_bundle (ONNX + TFLite; the QAT int8 graph is exported as is, verified)
           ->  profile_bundle (latency percentiles, FPS and memory of every artifact)

Fashion-MNIST is read offline from Debian's `fashion-mnist` package (/usr/share/datasets/fashion-mnist),
a --data-root folder of the IDX files, or downloaded when online. The full run takes a while on a
small CPU; --fast trains on a 2,000-image subset (a smoke run, used by the tests).

Run:
    python examples/mobilenet_fashion_mnist.py [--epochs 10] [--width-mult 0.5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgecnn.errors import run_script


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=None, help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--out", default="runs/examples/mobilenetv2-fashion-mnist")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--width-mult", type=float, default=0.5, help="MobileNetV2 width multiplier (default 0.5)")
    p.add_argument("--prune-ratio", type=float, default=0.3, help="structured pruning ratio (default 0.3)")
    p.add_argument("--target-drop", type=float, default=1.0,
                   help="max test top-1 points lost by prune + QAT int8 (default 1.0)")
    p.add_argument("--fast", action="store_true",
                   help="2,000 training images, 2 epochs + 1 per compression step, short profile")
    args = p.parse_args(argv)

    from edgecnn.compress.pipeline import compress_checkpoint
    from edgecnn.compress.prune import PruneSettings
    from edgecnn.export.api import export_bundle
    from edgecnn.profile.profiler import profile_bundle
    from edgecnn.profile.report import console_summary
    from edgecnn.train.trainer import train

    out = Path(args.out)
    fast = args.fast
    limit = 2000 if fast else None  # training images per epoch
    eval_limit = 1000 if fast else None  # test images for the accuracy checks
    epochs = 1 if fast else args.epochs
    # The trainer's MobileNetV2 default (SGD 0.1, one-cycle, batch 128) needs many steps; a smoke run
    # learns with Adam 1e-3 and batch 32 (more steps, so BatchNorm's running statistics settle).
    fast_opts = {"epochs": 2, "optimizer": "adam", "lr": 1e-3, "batch_size": 32} if fast else {"epochs": epochs}

    print("1. train MobileNetV2 (small-input: early strides removed for 28-32 px images)")
    best = train("mobilenet_v2", "fashion-mnist", out / "train", **fast_opts, width_mult=args.width_mult,
                 small_input=True, data_root=args.data_root, train_limit=limit, overwrite=True,
                 progress=not fast)

    print(f"\n2. prune {args.prune_ratio:.0%} of the channels + fine-tune, then quantization-aware training")
    # A 1-epoch smoke model is too raw for an accuracy budget to mean anything: no budget in --fast.
    compressed_dir = compress_checkpoint(best, PruneSettings(ratio=args.prune_ratio), finetune_epochs=epochs,
                                         qat_epochs=epochs, target_drop=100.0 if fast else args.target_drop,
                                         out=out / "compressed", data_root=args.data_root, train_limit=limit,
                                         eval_limit=eval_limit)
    compressed = Path(compressed_dir)
    compressed = compressed / "compressed.pt" if compressed.is_dir() else compressed

    print("\n3. export ONNX + TFLite (fp32 graph of the QAT model, and its int8 graph), verified")
    bundle = export_bundle(compressed, ("onnx", "tflite"), int8=True, calib="fashion-mnist",
                           data_root=args.data_root, out=out / "bundle", force=True,
                           name="mobilenetv2-fashion-mnist", verify_samples=eval_limit,
                           max_drop=100.0 if fast else 1.0, allow_chance=fast)

    print("\n4. benchmark every artifact")
    report = profile_bundle(bundle, runs=20 if fast else 200, threads="1" if fast else None, progress=not fast)
    print(console_summary(report))
    print(f"\nbundle: {bundle}")
    return 0


if __name__ == "__main__":
    run_script(main)
