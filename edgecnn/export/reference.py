"""Rebuild the reference bundles under export/ with one command:

    python -m edgecnn.export.reference            # export/lenet5-digits

LeNet-5 is trained on the embedded digits with `edgecnn train`'s defaults (seeded, CPU, about a minute), then exported to ONNX +
TFLite, fp32 + int8 (calibrated on the digits training split) and verified on the test split.
The checkpoint is kept in runs/reference/lenet5-digits/ so `edgecnn verify` can compare with PyTorch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli import main as cli_main

REPO = Path(__file__).resolve().parents[2]


def build_lenet5_digits(out: Path, run_dir: Path, epochs: int | None = None) -> int:
    """Train (the trainer's defaults unless `epochs` is given), then export and verify."""
    rc = cli_main(["train", "lenet5", "--data", "digits", *(["--epochs", str(epochs)] if epochs else []),
                   "--seed", "0", "--out", str(run_dir), "--overwrite"])
    if rc:
        return rc
    return cli_main(["export", str(run_dir / "best.pt"), "--formats", "onnx,tflite", "--int8", "--calib", "digits",
                     "--out", str(out), "--name", "lenet5-digits", "--force"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgecnn.export.reference", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(REPO / "export" / "lenet5-digits"))
    p.add_argument("--run-dir", default=str(REPO / "runs" / "reference" / "lenet5-digits"))
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the trainer's, 40 for digits)")
    args = p.parse_args(argv)
    return build_lenet5_digits(Path(args.out), Path(args.run_dir), args.epochs)


if __name__ == "__main__":
    sys.exit(main())
