"""Benchmark: quantization-aware training vs post-training int8, LeNet-5 (digits) and MobileNetV2 (Fashion-MNIST).

Bars (issue 4): QAT int8 test top-1 within 0.5 point of the fp32 model, and >= post-training int8.

Per model it measures, on the same test images:
  fp32            the trained float checkpoint (PyTorch)
  PTQ pt2e        the same quantization scheme as QAT, post-training, calibrated on 512 training images
  PTQ export      what `edgecnn export --int8` ships: onnxruntime static QDQ, run in onnxruntime
  QAT             `edgecnn qat` for --qat-epochs, exported to QDQ ONNX and run in onnxruntime
Scale is a parameter (training subset/epochs); the script prints the scale it ran.

    .venv/bin/python benchmarks/qat_vs_ptq.py
    .venv/bin/python benchmarks/qat_vs_ptq.py --mobilenet-checkpoint runs/bench-compress-mobilenetv2/baseline/best.pt
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def onnx_accuracy(path: Path, x, y) -> float:
    from edgecnn.export.onnx import run_onnx

    return float((run_onnx(path, x).argmax(1) == y).mean())


def compare(name: str, checkpoint: Path, qat_epochs: int, eval_limit: int | None, train_subset: int | None,
            data_root: str | None, out: Path) -> dict:
    from edgecnn.compress.common import checkpoint_dataset, test_arrays
    from edgecnn.compress.qat import export_qat_onnx, qat_checkpoint
    from edgecnn.data import preprocessed
    from edgecnn.export.onnx import export_fp32, quantize_int8
    from edgecnn.train.checkpoint import load_checkpoint, read_checkpoint

    t0 = time.perf_counter()
    qat_path = qat_checkpoint(checkpoint, epochs=qat_epochs, out=out / f"{name}-qat", data_root=data_root,
                              train_limit=train_subset, eval_limit=eval_limit)
    acc = json.loads((out / f"{name}-qat" / "qat_report.json").read_text())["accuracy"]
    model, src = load_checkpoint(checkpoint)
    ds = checkpoint_dataset(src, None, data_root)
    x, y = test_arrays(ds, src["input"], eval_limit)
    x_cal, _ = preprocessed(ds, "train", src["input"], 512, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        fp32, ptq, qat = Path(tmp) / "fp32.onnx", Path(tmp) / "ptq.onnx", Path(tmp) / "qat.onnx"
        export_fp32(model, x, fp32)
        quantize_int8(fp32, ptq, x_cal)
        export_qat_onnx(read_checkpoint(qat_path), x, qat)
        row = {
            "model": name, "checkpoint": str(checkpoint), "test_images": len(y), "qat_epochs": qat_epochs,
            "fp32": acc["source_fp32"],
            "fp32_onnx": onnx_accuracy(fp32, x, y),
            "ptq_pt2e_int8": acc["ptq_int8"],
            "ptq_export_int8_onnx": onnx_accuracy(ptq, x, y),
            "qat_int8_torch": acc["qat_int8"],
            "qat_int8_onnx": onnx_accuracy(qat, x, y),
            "qat_fp32": acc["qat_fp32"],
        }
    best_ptq = max(row["ptq_pt2e_int8"], row["ptq_export_int8_onnx"])
    row["qat_minus_fp32_points"] = 100 * (row["qat_int8_onnx"] - row["fp32"])
    row["qat_minus_best_ptq_points"] = 100 * (row["qat_int8_onnx"] - best_ptq)
    row["bars"] = {"qat within 0.5 of fp32": row["qat_minus_fp32_points"] >= -0.5,
                   "qat >= ptq": row["qat_minus_best_ptq_points"] >= 0}
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="lenet5,mobilenet_v2")
    ap.add_argument("--lenet-checkpoint", help="trained LeNet-5 digits checkpoint (default: train one, 15 epochs)")
    ap.add_argument("--mobilenet-checkpoint", help="trained MobileNetV2 Fashion-MNIST checkpoint (default: train one)")
    ap.add_argument("--data-root", help="folder with the Fashion-MNIST IDX files")
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--img-size", type=int, default=28)
    ap.add_argument("--train-subset", type=int, default=6000, help="MobileNetV2 training/QAT images (0 = all)")
    ap.add_argument("--epochs", type=int, default=6, help="MobileNetV2 training epochs when training here")
    ap.add_argument("--qat-epochs", type=int, default=2)
    ap.add_argument("--eval-limit", type=int, default=5000, help="test images (0 = the whole split)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/bench-qat-vs-ptq")
    args = ap.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from edgecnn.train.trainer import train

    out = Path(args.out)
    subset = args.train_subset or None
    eval_limit = args.eval_limit or None
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if name == "lenet5":
            ckpt = args.lenet_checkpoint or train("lenet5", "digits", out / "lenet5", epochs=15, seed=0, overwrite=True,
                                                  threads=args.threads, progress=False)
            rows.append(compare("lenet5", Path(ckpt), args.qat_epochs, eval_limit, None, None, out))
        elif name == "mobilenet_v2":
            ckpt = args.mobilenet_checkpoint or train(
                "mobilenet_v2", "fashion-mnist", out / "mobilenet_v2", epochs=args.epochs, width_mult=args.width,
                small_input=True, img_size=args.img_size, train_limit=subset, data_root=args.data_root, seed=0,
                overwrite=True, threads=args.threads, progress=False)
            rows.append(compare("mobilenet_v2", Path(ckpt), args.qat_epochs, eval_limit, subset, args.data_root, out))
        else:
            raise SystemExit(f"unknown model '{name}' (lenet5, mobilenet_v2)")
    summary = {"benchmark": "qat_vs_ptq", "rows": rows,
               "scale": {"mobilenet": f"width {args.width}, {args.img_size}px, train subset {subset or 'all'}",
                         "qat_epochs": args.qat_epochs, "eval_limit": eval_limit, "threads": args.threads},
               "machine_note": f"{os.cpu_count()}-core machine shared with other jobs (accuracy is unaffected)"}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    cols = ("fp32", "ptq_pt2e_int8", "ptq_export_int8_onnx", "qat_int8_torch", "qat_int8_onnx")
    print("\nmodel           " + "  ".join(f"{c:>20}" for c in cols) + "   bars")
    ok = True
    for r in rows:
        bars = ", ".join(f"{k}: {'PASS' if v else 'FAIL'}" for k, v in r["bars"].items())
        ok &= all(r["bars"].values())
        print(f"{r['model']:<16}" + "  ".join(f"{100 * r[c]:>19.2f}%" for c in cols) + f"   {bars}")
        print(f"{'':<16}QAT int8 (ONNX) vs fp32 {r['qat_minus_fp32_points']:+.2f} pts, vs best PTQ "
              f"{r['qat_minus_best_ptq_points']:+.2f} pts; {r['test_images']} test images, {r['qat_epochs']} QAT epochs")
    print(f"summary: {out / 'summary.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
