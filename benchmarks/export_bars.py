"""Measure the export bars: every fp32 artifact agrees with PyTorch on >= 99.9% of top-1
predictions; every int8 artifact loses <= 1.0 point of accuracy and agrees on >= 98%.

    .venv/bin/python benchmarks/export_bars.py                     # trains both models first
    .venv/bin/python benchmarks/export_bars.py --lenet CKPT --mobilenet CKPT

LeNet-5 on the embedded digits (1,000 test images) and MobileNetV2 (small-input, width 0.5) on
Debian's Fashion-MNIST, trained briefly on a subset to keep CPU use modest (verified on
--verify-samples test images). Accuracy numbers, not timings, so a busy machine does not skew them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from edgecnn.cli import main as cli


def train(args: list[str]) -> Path:
    out = Path(tempfile.mkdtemp(prefix="edgecnn-bars-"))
    if cli(["train", *args, "--out", str(out), "--overwrite", "--seed", "0"]):
        sys.exit("training failed")
    return out / "best.pt"


def export(ckpt: Path, calib: str, samples: int | None) -> dict:
    out = Path(tempfile.mkdtemp(prefix="edgecnn-bars-")) / "bundle"
    extra = ["--eval-limit", str(samples)] if samples else []
    # --max-drop 100: measure and report every artifact here instead of stopping at the first miss.
    rc = cli(["export", str(ckpt), "--formats", "onnx,tflite,tensorrt", "--int8", "--calib", calib,
              "--max-drop", "100", "--out", str(out), *extra])
    if rc:
        sys.exit("export failed")
    return json.loads((out / "manifest.json").read_text())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lenet", type=Path, help="LeNet-5 digits checkpoint (default: train one)")
    p.add_argument("--mobilenet", type=Path, help="MobileNetV2 Fashion-MNIST checkpoint (default: train one)")
    p.add_argument("--verify-samples", type=int, default=2000, help="Fashion-MNIST test images to verify on")
    args = p.parse_args()
    lenet = args.lenet or train(["lenet5", "--data", "digits", "--epochs", "15"])
    mnv2 = args.mobilenet or train(["mobilenet_v2", "--data", "fashion-mnist", "--small-input", "--width-mult", "0.5",
                                    "--train-limit", "6000", "--epochs", "3"])
    rows = []
    for label, ckpt, calib, n in (("LeNet-5 / digits", lenet, "digits", None),
                                  ("MobileNetV2 / fashion-mnist", mnv2, "fashion-mnist", args.verify_samples)):
        m = export(ckpt, calib, n)
        arts = list(m["artifacts"])
        if (m.get("tensorrt") or {}).get("onnx_int8"):
            arts.append({**m["tensorrt"]["onnx_int8"], "precision": "int8"})
        for a in arts:
            v = a["verified"]
            if a["precision"] == "fp32":
                ok = v["top1_agreement"] >= 0.999
            else:
                ok = v["drop_points"] <= 1.0 and v["top1_agreement"] >= 0.98
            rows.append((label, a["file"], a["precision"], v["samples"], v["reference_accuracy"], v["accuracy"],
                         v["drop_points"], v["top1_agreement"], v["max_abs_diff"], ok))
    print("\n| model | artifact | precision | samples | PyTorch acc | acc | drop (pts) | agreement | max abs diff | bar |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {100 * r[4]:.2f}% | {100 * r[5]:.2f}% | {r[6]:.2f} | "
              f"{100 * r[7]:.2f}% | {r[8]:.3g} | {'pass' if r[9] else 'MISS'} |")
    return 0 if all(r[9] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
