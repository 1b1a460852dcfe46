"""Verification: does each artifact compute what the PyTorch model computes?

Per artifact, on real test samples preprocessed exactly as the runtime does: max |logit - torch
logit|, top-1 agreement with PyTorch, top-1 accuracy, and the drop (in points) from the PyTorch
accuracy. Without a checkpoint (e.g. torch absent), only accuracy is measured.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..bundle import Artifact
from ..errors import EdgeCNNError
from .metrics import accuracy, check_drop, measure  # noqa: F401 (accuracy: part of this module's API)
from .report import format_table, write_report  # report never imports verify: no circle


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


def recorded_reference(info: dict, manifest: dict, dataset: str, split: str = "test") -> tuple[float, int | None] | None:
    """Accuracy-only mode: (reference accuracy, the samples it was measured on) from the manifest.

    The artifact's own `verified.reference_accuracy` (PyTorch at export, on the same dataset and split),
    else the source checkpoint's test accuracy (the whole test split: samples None); None if neither
    is for `dataset`/`split`.
    """
    old = info.get("verified") or {}
    if old.get("dataset") == dataset and old.get("split", "test") == split \
            and isinstance(old.get("reference_accuracy"), (int, float)):
        return float(old["reference_accuracy"]), old.get("samples")
    src = manifest.get("source") or {}
    if split == "test" and src.get("dataset") == dataset and isinstance(src.get("accuracy"), (int, float)):
        return float(src["accuracy"]), None
    return None


def apply_recorded_reference(rec: dict, ref: tuple[float, int | None], test_size: int) -> None:
    """Fill reference_accuracy/drop_points (and a sampling tolerance when the sample counts differ)."""
    acc, samples = ref
    rec["reference_accuracy"] = acc
    rec["drop_points"] = round(100.0 * (acc - rec["accuracy"]), 3)
    if (samples if samples is not None else test_size) != rec["samples"]:
        p, n = min(max(acc, 0.0), 1.0), max(1, rec["samples"])
        rec["tolerance_points"] = round(300.0 * math.sqrt(max(p * (1 - p), 1.0 / n) / n), 3)


def _artifact_logits_checked(a: Artifact, x: np.ndarray, n_classes: int) -> np.ndarray:
    """artifact_logits, with an engine's own error (corrupt file, wrong input) as one line."""
    try:
        logits = artifact_logits(a, x)
    except EdgeCNNError:
        raise
    except Exception as e:  # onnxruntime/LiteRT raise their own types (InvalidProtobuf, RuntimeError, ...)
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise EdgeCNNError(f"{a.path}: cannot run this model ({type(e).__name__}: {first})") from None
    if logits.ndim != 2 or logits.shape[1] != n_classes:
        raise EdgeCNNError(f"{a.path}: the model outputs shape {tuple(logits.shape)}, the manifest lists "
                           f"{n_classes} classes")
    return logits


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
    p = Path(src.get("checkpoint") or "")
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
    ds = load_dataset(dataset, data_root, classes=list(b.classes), channels=int(b.input["channels"]),
                      input_spec=b.input)
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
    test_size = len(ds.split(split)[1])
    for a in b.artifacts:
        rec = measure(_artifact_logits_checked(a, x, len(b.classes)), y, reference, dataset=dataset, split=split)
        if reference is None:
            # Accuracy-only (the normal case on a device): the manifest's recorded PyTorch accuracy
            # measures the drop; with nothing recorded for this data there is nothing to verify against.
            ref = recorded_reference(a.info, manifest, dataset, split)
            if ref is None:
                raise EdgeCNNError(f"{a.info['file']}: no PyTorch model here and no recorded accuracy on "
                                   f"'{dataset}' to compare with; pass --checkpoint")
            apply_recorded_reference(rec, ref, test_size)
        records.append(rec)
    rows = [{**a.info, "verified": r} for a, r in zip(b.artifacts, records)]
    tflm = None
    if manifest.get("tflm"):  # the TensorFlow Lite Micro model, run in the TFLM interpreter
        from .tflm import table_row, verify_tflm_block

        tflm = verify_tflm_block(b.path, manifest, x, y, reference, dataset, log)
    log(format_table(rows + ([table_row({**manifest["tflm"], "verified": tflm})] if tflm else [])))
    for a, r in zip(b.artifacts, records):
        check_drop(a.info["file"], r, max_drop)
    if tflm:
        check_drop(f"{manifest['tflm']['model']} in the TFLM interpreter", tflm, max_drop)
    if write:
        if tflm:
            manifest = {**manifest, "tflm": {**manifest["tflm"], "verified": tflm}}
        manifest = {**manifest, "artifacts": rows,
                    "verification": {"dataset": dataset, "split": split, "samples": int(len(y)),
                                     "max_drop_points": max_drop}}
        write_report(b.path, manifest)
        write_manifest(b.path, manifest)
        log(f"verification numbers written to {b.path / 'manifest.json'}")
    return records
