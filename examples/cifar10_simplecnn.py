"""The classic PyTorch CIFAR-10 tutorial, done with edgecnn, then exported and profiled.

As in the tutorial: the 3-conv SimpleCNN, random crop (pad 4) + horizontal flip augmentation,
normalization mean 0.5 / std 0.5, Adam at lr 1e-3, 10 epochs, test accuracy printed. edgecnn's
`fit` schedules the learning rate (cosine from 1e-3) instead of keeping it constant. Then the
model is exported to ONNX + TFLite (fp32 + int8, verified) and profiled.

CIFAR-10 is downloaded when online (into ~/.cache/edgecnn/datasets), or read from a local copy:
    python examples/cifar10_simplecnn.py [--data-root DIR]      # DIR/cifar-10-batches-py
Any RGB ImageFolder works the same (class subfolders of images):
    python examples/cifar10_simplecnn.py --data folder:PATH
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgecnn.errors import EdgeCNNError, run_script


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="cifar10", help="cifar10 (default) or folder:PATH")
    p.add_argument("--data-root", default=None, help="folder holding cifar-10-batches-py (default: download)")
    p.add_argument("--out", default="runs/examples/cifar10-simplecnn")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--fast", action="store_true", help="2 epochs, short profile (a smoke run, used by the tests)")
    args = p.parse_args(argv)

    # Load the data first: without CIFAR-10 (offline, no local copy) this is one clear error line.
    from edgecnn.data import default_input_spec, load_dataset

    ds = load_dataset(args.data, args.data_root)

    import torch

    from edgecnn.export.api import export_bundle
    from edgecnn.models import build_model
    from edgecnn.profile.profiler import profile_bundle
    from edgecnn.profile.report import console_summary
    from edgecnn.train.checkpoint import make_checkpoint, save_checkpoint
    from edgecnn.train.evaluate import evaluate
    from edgecnn.train.trainer import fit

    if ds.channels != 3:
        raise EdgeCNNError(f"{ds.name}: SimpleCNN here expects RGB images, this dataset is greyscale")
    out = Path(args.out)
    epochs = 2 if args.fast else args.epochs
    torch.manual_seed(0)

    # The tutorial's normalization: (x - 0.5) / 0.5 per channel; the manifest carries it to the device.
    spec = default_input_spec(ds, 32)
    spec["mean"], spec["std"] = [0.5] * 3, [0.5] * 3
    model = build_model("simplecnn", len(ds.classes), 3)
    n_train = len(ds.split("train")[1])
    print(f"training SimpleCNN on {ds.name}: {n_train} images, {len(ds.classes)} classes, {epochs} epochs, Adam 1e-3")
    # augment=True on natural images = random crop with padding + horizontal flip.
    history = fit(model, ds, spec, epochs=epochs, lr=1e-3, optimizer="adam", batch_size=64, schedule="cosine",
                  augment=True, progress=not args.fast)
    for h in history:
        print("  " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in h.items()))

    test = evaluate(model, ds, "test", spec)
    print(f"Accuracy of the network on the {test['n']} test images: {100 * test['top1']:.1f} %")
    for name, acc in test["per_class"].items():
        print(f"  accuracy for class {name:>12s}: {100 * acc:.1f} %")

    ckpt = out / "simplecnn.pt"
    save_checkpoint(make_checkpoint(model, name="simplecnn", num_classes=len(ds.classes), in_channels=3, options={},
                                    classes=ds.classes, input_spec=spec, dataset=args.data, epoch=epochs,
                                    metrics={"test_acc": test["top1"]}), ckpt)
    print(f"checkpoint: {ckpt}")

    print("\nexport ONNX + TFLite, fp32 + int8, verified on the test split")
    # A fast smoke run trains too briefly for int8 to track fp32 closely (or even to leave chance level):
    # allow any drop there.
    bundle = export_bundle(ckpt, ("onnx", "tflite"), int8=True, calib=args.data, data_root=args.data_root,
                           out=out / "bundle", force=True, name="simplecnn-cifar10",
                           max_drop=100.0 if args.fast else 1.0, allow_chance=args.fast)

    print("\nprofile every artifact")
    report = profile_bundle(bundle, runs=20 if args.fast else 200, threads="1" if args.fast else None,
                            progress=not args.fast)
    print(console_summary(report))
    return 0


if __name__ == "__main__":
    run_script(main)
