"""Microcontroller bars of the tflm target, measured with the TFLM interpreter (tflite-micro) on this host.

    .venv/bin/python benchmarks/tflm_fit.py --lenet CKPT          # a trained LeNet-5 on the embedded digits
    .venv/bin/python benchmarks/tflm_fit.py                        # trains it first (30 epochs)

1. LeNet-5 on the embedded digits, `edgecnn export --formats tflm --int8 --calib digits`: TFLM
   accuracy on the 1,000 test digits vs the LiteRT int8 artifact's, arena and flash bytes, fit on
   every MCU profile.
2. MobileNetV2 at 224x224 (torchvision, untrained: its memory does not depend on the weights),
   exported the same way (calibrated on 16 digits, verified in TFLM on --mobilenet-samples test
   images): its measured arena and model size against every MCU profile (it does not fit a Cortex-M4).
Sizes, not timings: a busy machine does not change them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from edgecnn.cli import main as cli
from edgecnn.devices.mcu import fit, format_fit, load_mcu_profile, mcu_profile_names


def export(ckpt: Path, extra: list[str]) -> dict:
    out = Path(tempfile.mkdtemp(prefix="edgecnn-tflm-")) / "bundle"
    rc = cli(["export", str(ckpt), "--formats", "tflm", "--int8", "--calib", "digits", "--device", "cortex-m4",
              "--out", str(out), *extra])
    if rc:
        sys.exit("export failed")
    return json.loads((out / "manifest.json").read_text())


def untrained_mobilenet_v2(size: int) -> Path:
    import torch

    from edgecnn.data import default_input_spec, load_dataset
    from edgecnn.models import build_model
    from edgecnn.train.checkpoint import make_checkpoint, save_checkpoint

    ds = load_dataset("digits")
    torch.manual_seed(0)
    model = build_model("mobilenet_v2", 10, ds.channels).eval()
    path = Path(tempfile.mkdtemp(prefix="edgecnn-tflm-")) / "mobilenet_v2.pt"
    save_checkpoint(make_checkpoint(model, name="mobilenet_v2", num_classes=10, in_channels=ds.channels, options={},
                                    classes=list(ds.classes), input_spec=default_input_spec(ds, size),
                                    dataset="digits"), path)
    return path


def report(name: str, m: dict) -> dict:
    t = m["tflm"]
    litert = next(a for a in m["artifacts"] if a["file"] == t["model"])["verified"]
    v = t["verified"]
    print(f"\n== {name}: TFLM accuracy {100 * v['accuracy']:.2f}% vs LiteRT int8 {100 * litert['accuracy']:.2f}% "
          f"(PyTorch {100 * v['reference_accuracy']:.2f}%, {v['samples']} test images, TFLM/PyTorch agreement "
          f"{100 * v['top1_agreement']:.2f}%); arena {t['arena_bytes']:,} B, model data {t['flash_bytes']:,} B; "
          f"ops {', '.join(t['ops'])}")
    fits = {}
    for p in mcu_profile_names():
        f = fit(t, load_mcu_profile(p))
        fits[p] = f
        print("   " + format_fit(f))
    return {"tflm": t, "litert_int8": litert, "fit": fits}


def mobilenet(size: int, samples: int) -> dict:
    """Untrained MobileNetV2 through `edgecnn export --formats tflm --device cortex-m4`; accuracy is meaningless
    (--max-drop 100), its measured memory is the point."""
    m = export(untrained_mobilenet_v2(size), ["--calib-size", "16", "--verify-samples", str(samples),
                                              "--max-drop", "100"])
    return report(f"MobileNetV2 {size} (untrained, 10 classes)", m)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lenet", type=Path, help="trained LeNet-5 checkpoint (default: train one, 30 epochs)")
    ap.add_argument("--mobilenet-size", type=int, default=224)
    ap.add_argument("--mobilenet-samples", type=int, default=20, help="test images for the MobileNetV2 TFLM run")
    ap.add_argument("--skip-mobilenet", action="store_true")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    a = ap.parse_args()
    lenet = a.lenet
    if lenet is None:
        out = Path(tempfile.mkdtemp(prefix="edgecnn-tflm-"))
        if cli(["train", "lenet5", "--data", "digits", "--epochs", "30", "--out", str(out), "--seed", "0"]):
            sys.exit("training failed")
        lenet = out / "best.pt"
    results = {"lenet5": report("LeNet-5, digits", export(lenet, []))}
    if not a.skip_mobilenet:
        results[f"mobilenet_v2_{a.mobilenet_size}"] = mobilenet(a.mobilenet_size, a.mobilenet_samples)
    if a.json:
        a.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
