"""Train LeNet-5, export it to ONNX + TFLite (fp32 + int8, verified) and classify a few images.

Shows the host-side Python API end to end:

    edgecnn.train.trainer.train  ->  edgecnn.export.api.export_bundle  ->  edgecnn.runtime.Classifier

Run (offline, embedded digits, ~1-2 min on a 2-core CPU):
    python examples/train_export_lenet5.py
MNIST instead (downloads when online, or a folder of the IDX files):
    python examples/train_export_lenet5.py --data mnist [--data-root ~/data/mnist]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgecnn.errors import run_script


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=("digits", "mnist"), default="digits")
    p.add_argument("--data-root", default=None, help="folder with the MNIST IDX files (default: download)")
    p.add_argument("--out", default=None, help="output folder (default: runs/examples/lenet5-DATA)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the trainer's)")
    p.add_argument("--fast", action="store_true", help="3 epochs (a smoke run, used by the tests)")
    args = p.parse_args(argv)

    from edgecnn.export.api import export_bundle
    from edgecnn.runtime import Classifier
    from edgecnn.train.trainer import train

    out = Path(args.out or f"runs/examples/lenet5-{args.data}")
    epochs = 3 if args.fast else args.epochs

    print(f"1. train LeNet-5 on {args.data}")
    best = train("lenet5", args.data, out / "train", epochs=epochs, data_root=args.data_root,
                 overwrite=True, progress=not args.fast)

    print("\n2. export ONNX + TFLite, fp32 + int8 (calibrated on the training split), verified on the test split")
    bundle = export_bundle(best, ("onnx", "tflite"), int8=True, calib=args.data, data_root=args.data_root,
                           out=out / "bundle", force=True, name=f"lenet5-{args.data}")
    # export_bundle printed the verification table (accuracy, agreement with PyTorch, size) above.
    manifest = json.loads((bundle / "manifest.json").read_text())

    print("\n3. classify the bundle's sample images with the torch-free runtime")
    with Classifier(bundle) as clf:
        d = clf.describe()
        print(f"runtime: {d['backend']} {d.get('precision', '')} ({d['why']})")
        samples = manifest["samples"][:8]
        hits = 0
        for s in samples:
            pred = clf.predict(bundle / s["file"])
            hits += pred.label == s["label"]
            print(f"  {s['file']}: true {s['label']}, predicted {pred.label} ({100 * pred.confidence:.1f}%)")
    print(f"{hits}/{len(samples)} sample images classified correctly; bundle: {bundle}")
    return 0


if __name__ == "__main__":
    run_script(main)
