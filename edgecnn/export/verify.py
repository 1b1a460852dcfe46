"""Verification: does each artifact compute what the PyTorch model computes?

Per artifact, on real test samples preprocessed exactly as the runtime does: max |logit - torch
logit|, top-1 agreement with PyTorch, top-1 accuracy, and the drop (in points) from the PyTorch
accuracy. Without a checkpoint (e.g. torch absent), only accuracy is measured.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bundle import Artifact
from ..errors import EdgeCNNError


def artifact_logits(artifact: Artifact, x_nchw: np.ndarray) -> np.ndarray:
    """float32 logits of one bundle artifact (onnxruntime or ai_edge_litert, CPU)."""
    if artifact.format == "onnx":
        from .onnx import run_onnx

        return run_onnx(artifact.path, x_nchw)
    if artifact.format == "tflite":
        from .tflite import run_tflite

        return run_tflite(artifact.path, x_nchw)
    raise EdgeCNNError(f"cannot verify artifact format '{artifact.format}'")


def torch_logits(model, x_nchw: np.ndarray, batch: int = 256) -> np.ndarray:
    import torch

    outs = []
    with torch.no_grad():
        for i in range(0, len(x_nchw), batch):
            outs.append(model(torch.from_numpy(x_nchw[i : i + batch])).numpy())
    return np.concatenate(outs).astype(np.float32)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


def measure(logits: np.ndarray, labels: np.ndarray, reference: np.ndarray | None, *,
            dataset: str, split: str) -> dict:
    """The manifest `verified` block for one artifact."""
    acc = accuracy(logits, labels)
    rec: dict = {"dataset": dataset, "split": split, "samples": int(len(labels)), "accuracy": round(acc, 6)}
    if reference is not None:
        ref_acc = accuracy(reference, labels)
        rec.update(
            max_abs_diff=float(np.abs(logits - reference).max()),
            top1_agreement=round(float((logits.argmax(1) == reference.argmax(1)).mean()), 6),
            reference_accuracy=round(ref_acc, 6),
            drop_points=round(100.0 * (ref_acc - acc), 3),
        )
    else:
        rec.update(max_abs_diff=None, top1_agreement=None, reference_accuracy=None, drop_points=None)
    return rec


def check_drop(file: str, rec: dict, max_drop: float) -> None:
    """Raise when an artifact loses more than `max_drop` points of accuracy against PyTorch."""
    drop = rec.get("drop_points")
    if drop is not None and drop > max_drop:
        raise EdgeCNNError(
            f"{file}: accuracy {100 * rec['accuracy']:.2f}% vs PyTorch {100 * rec['reference_accuracy']:.2f}% "
            f"on {rec['samples']} {rec['dataset']} {rec['split']} samples: drop {drop:.2f} points > "
            f"--max-drop {max_drop:g} (top-1 agreement {100 * rec['top1_agreement']:.2f}%)"
        )


def format_table(rows: list[dict]) -> str:
    """A plain-text table of artifact verification results (also used in REPORT.md)."""
    header = ["artifact", "format", "precision", "size", "max abs diff", "agreement", "accuracy", "drop (pts)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for a in rows:
        v = a.get("verified") or {}

        def pct(x):
            return "n/a" if x is None else f"{100 * x:.2f}%"

        cells = [
            a["file"],
            a["format"],
            a["precision"],
            f"{a['size_bytes'] / 1024:.1f} KiB",
            "n/a" if v.get("max_abs_diff") is None else f"{v['max_abs_diff']:.3g}",
            pct(v.get("top1_agreement")),
            pct(v.get("accuracy")),
            "n/a" if v.get("drop_points") is None else f"{v['drop_points']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def source_checkpoint(manifest: dict, checkpoint: str | Path | None) -> Path | None:
    """The checkpoint to compare against: the one given, else the manifest's if it is still there."""
    from ..utils import sha256_file

    src = manifest.get("source") or {}
    if checkpoint is not None:
        p = Path(checkpoint)
        if not p.is_file():
            raise EdgeCNNError(f"checkpoint not found: {p}")
        if src.get("sha256") and sha256_file(p) != src["sha256"]:
            raise EdgeCNNError(f"{p}: not the checkpoint this bundle was exported from (sha256 differs)")
        return p
    p = Path(src.get("checkpoint", ""))
    if src.get("checkpoint") and p.is_file() and sha256_file(p) == src.get("sha256"):
        return p
    return None


def _reference_model(manifest: dict, checkpoint: str | Path | None, log) -> object | None:
    ckpt_path = source_checkpoint(manifest, checkpoint)
    if ckpt_path is None:
        log("source checkpoint not found (pass --checkpoint): measuring accuracy only")
        return None
    try:
        from ..train.checkpoint import model_from_checkpoint, read_checkpoint
    except ImportError:
        log("torch is not installed: measuring accuracy only")
        return None
    return model_from_checkpoint(read_checkpoint(ckpt_path))


def verify_bundle(bundle: str | Path, *, data: str | None = None, data_root: str | None = None,
                  checkpoint: str | Path | None = None, samples: int | None = None, max_drop: float = 1.0,
                  write: bool = False, log=print, split: str | None = None) -> list[dict]:
    """Re-verify every artifact of a bundle on real data; raise EdgeCNNError if one drops too much.

    `split` defaults to `edgecnn.data.evaluation_split`: all of a flat folder the model was not
    trained on, else the test split. Returns the `verified` records. With `write`, they replace the
    manifest's (atomically).
    """
    from ..bundle import Bundle, write_manifest
    from ..data import evaluation_split, load_dataset, preprocessed

    b = Bundle.load(bundle)
    b.check_integrity()
    manifest = b.manifest
    dataset = data or (manifest.get("verification") or {}).get("dataset") or (manifest.get("source") or {}).get("dataset")
    if not dataset:
        raise EdgeCNNError(f"{b.path}: manifest names no dataset; pass --data")
    ds = load_dataset(dataset, data_root, classes=list(b.classes), channels=int(b.input["channels"]))
    if len(ds.classes) != len(b.classes):
        raise EdgeCNNError(f"dataset '{dataset}' has {len(ds.classes)} classes, the bundle {len(b.classes)}")
    split = split or evaluation_split(ds, trained_on=(manifest.get("source") or {}).get("dataset"))
    x, y = preprocessed(ds, split, b.input, samples)
    if len(y) == 0:
        raise EdgeCNNError(f"split '{split}' of '{dataset}' is empty")
    log(f"verifying on {len(y)} images of {dataset}/{split}")
    model = _reference_model(manifest, checkpoint, log)
    reference = torch_logits(model, x) if model is not None else None
    records = []
    for a in b.artifacts:
        rec = measure(artifact_logits(a, x), y, reference, dataset=dataset, split=split)
        old = a.info.get("verified") or {}
        if reference is None and old.get("reference_accuracy") is not None and old.get("dataset") == dataset \
                and old.get("samples") == rec["samples"] and old.get("split", "test") == split:
            # Same data as at export: the recorded PyTorch accuracy still measures the drop.
            rec["reference_accuracy"] = old["reference_accuracy"]
            rec["drop_points"] = round(100.0 * (old["reference_accuracy"] - rec["accuracy"]), 3)
        records.append(rec)
    rows = [{**a.info, "verified": r} for a, r in zip(b.artifacts, records)]
    log(format_table(rows))
    for a, r in zip(b.artifacts, records):
        check_drop(a.info["file"], r, max_drop)
    if write:
        from .report import write_report

        manifest = {**manifest, "artifacts": rows,
                    "verification": {"dataset": dataset, "split": split, "samples": int(len(y)),
                                     "max_drop_points": max_drop}}
        write_report(b.path, manifest)
        write_manifest(b.path, manifest)
        log(f"verification numbers written to {b.path / 'manifest.json'}")
    return records
