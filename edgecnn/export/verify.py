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
    if artifact.layout == "ND":  # an imported features model: the runtime's backend, batch as the file takes it
        from ..runtime.backends import open_backend

        return open_backend(artifact, "onnxruntime" if artifact.format == "onnx" else "litert", threads=1).infer(x_nchw)
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


def _reference_model(manifest: dict, checkpoint: str | Path | None, log) -> tuple[object, dict, Path] | None:
    """(model, checkpoint dict, its path), or None (accuracy only)."""
    if (manifest.get("source") or {}).get("imported") and checkpoint is None:
        return None  # an imported bundle: its reference is its own float file
    ckpt_path = source_checkpoint(manifest, checkpoint)
    if ckpt_path is None:
        log("source checkpoint not found (pass --checkpoint): measuring accuracy only")
        return None
    try:
        from ..train.checkpoint import model_from_checkpoint, read_checkpoint
    except ImportError:
        log("torch is not installed: measuring accuracy only")
        return None
    ckpt = read_checkpoint(ckpt_path)
    return model_from_checkpoint(ckpt), ckpt, ckpt_path


# The input fields that decide what a model is fed; floats compared with a relative tolerance.
_INPUT_FIELDS = ("kind", "height", "width", "channels", "color", "resize", "interpolation", "scale", "mean", "std")


def check_input_block(manifest_input: dict, ckpt_input: dict | None, where: str, ckpt_path: Path) -> None:
    """Raise (one line naming the field and both values) when the manifest's input block is not the
    checkpoint's: PyTorch and the artifacts fed the same drifted preprocessing would agree perfectly."""
    if not isinstance(ckpt_input, dict):
        return
    for k in _INPUT_FIELDS:
        got, want = manifest_input.get(k, "image" if k == "kind" else None), \
            ckpt_input.get(k, "image" if k == "kind" else None)
        if want is None:
            continue
        same = (np.allclose(np.asarray(got, float), np.asarray(want, float), rtol=1e-5, atol=1e-9)
                if isinstance(want, (int, float, list)) and not isinstance(want, bool)
                and np.shape(got) == np.shape(want) else got == want)
        if not same:
            raise EdgeCNNError(f"{where}: input.{k} is {got} but the checkpoint {ckpt_path.name} was trained with "
                               f"{want}: the bundle's preprocessing differs from the model's (restore it or export again)")


def check_recorded(file: str, old: dict | None, rec: dict, max_drop: float) -> None:
    """Raise when an artifact's accuracy fell below the figure recorded for the same data in the manifest."""
    old = old or {}
    if old.get("dataset") != rec["dataset"] or old.get("split", "test") != rec["split"] \
            or not isinstance(old.get("accuracy"), (int, float)):
        return
    acc, n = float(old["accuracy"]), int(old.get("samples") or rec["samples"])
    drop = 100.0 * (acc - rec["accuracy"])
    tol = 0.0
    if n != rec["samples"]:  # 3 standard errors of the smaller sample
        p, m = min(max(acc, 0.0), 1.0), max(1, min(n, rec["samples"]))
        tol = 300.0 * math.sqrt(max(p * (1 - p), 1.0 / m) / m)
    if drop > max_drop + tol:
        raise EdgeCNNError(f"{file}: accuracy {100 * rec['accuracy']:.2f}% on {rec['samples']} {rec['dataset']} "
                           f"{rec['split']} samples vs {100 * acc:.2f}% recorded in manifest.json: drop {drop:.2f} "
                           f"points > --max-drop {max_drop:g}" + (f" + {tol:.2f} sampling tolerance" if tol else "")
                           + " (the bundle changed since it was verified: check its input block)")


def _verify_data(b, dataset: str, data_root: str | None, split: str | None, samples: int | None,
                 trained_on: str | None) -> tuple[np.ndarray, np.ndarray, str, int]:
    """(inputs, labels, split, size of the whole split) for a bundle: images from a dataset, features from .npz."""
    if b.input.get("kind") == "features":
        from .import_spec import load_features_data

        x, y = load_features_data(dataset, b.input["shape"], len(b.classes))
        full = len(y)
        if samples is not None and samples < len(y):
            idx = np.sort(np.random.default_rng(0).choice(len(y), size=samples, replace=False))
            x, y = x[idx], y[idx]
        return x, y, "all", full
    from ..data import evaluation_split, load_dataset, preprocessed

    ds = load_dataset(dataset, data_root, classes=list(b.classes), channels=int(b.input["channels"]),
                      input_spec=b.input)
    if len(ds.classes) != len(b.classes):
        raise EdgeCNNError(f"dataset '{dataset}' has {len(ds.classes)} classes, the bundle {len(b.classes)}")
    split = split or evaluation_split(ds, trained_on=trained_on)
    x, y = preprocessed(ds, split, b.input, samples)
    return x, y, split, len(ds.split(split)[1])


def _imported_agreement(b, records: list[dict], outputs: list[np.ndarray], y: np.ndarray) -> None:
    """An imported bundle's files: top-1 agreement with the first file, and (where no recorded figure
    was found) the drop against its float file measured now, as import-model records it."""
    arts = [a.info for a in b.artifacts]
    ref_i = next((i for i, a in enumerate(arts) if a["precision"] == "fp32"), 0)
    ref_acc = round(float((outputs[ref_i].argmax(1) == y).mean()), 6)
    for rec, out in zip(records, outputs):
        if len(arts) > 1:
            rec["agreement_with"] = arts[0]["file"]
            rec["agreement_with_first"] = round(float((out.argmax(1) == outputs[0].argmax(1)).mean()), 6)
        if rec.get("reference_accuracy") is None:
            rec.update(reference=arts[ref_i]["file"], reference_accuracy=ref_acc,
                       drop_points=round(100.0 * (ref_acc - rec["accuracy"]), 3))


def verify_bundle(bundle: str | Path, *, data: str | None = None, data_root: str | None = None,
                  checkpoint: str | Path | None = None, samples: int | None = None, max_drop: float = 1.0,
                  write: bool = False, log=print, split: str | None = None) -> list[dict]:
    """Re-verify every artifact of a bundle on real data; raise EdgeCNNError if one drops too much.

    `split` defaults to `edgecnn.data.evaluation_split`: all of a flat folder the model was not
    trained on, else the test split. Returns the `verified` records. With `write`, they replace the
    manifest's (atomically).
    """
    from ..bundle import Bundle, write_manifest

    b = Bundle.load(bundle)
    b.check_integrity()
    manifest = b.manifest
    imported = bool((manifest.get("source") or {}).get("imported"))
    dataset = data or (manifest.get("verification") or {}).get("dataset") or (manifest.get("source") or {}).get("dataset")
    if not dataset:
        raise EdgeCNNError(f"{b.path}: manifest names no dataset; pass --data")
    if b.input.get("kind") == "features" and not data:
        raise EdgeCNNError(f"{b.path}: a features bundle is verified on an .npz of arrays x and y: pass --data FILE.npz")
    x, y, split, test_size = _verify_data(b, dataset, data_root, split, samples,
                                          (manifest.get("source") or {}).get("dataset"))
    if b.input.get("kind") == "features":
        dataset = Path(dataset).name
    if len(y) == 0:
        raise EdgeCNNError(f"split '{split}' of '{dataset}' is empty")
    log(f"verifying on {len(y)} {'samples' if b.input.get('kind') == 'features' else 'images'} of {dataset}/{split}")
    found = _reference_model(manifest, checkpoint, log)
    if found is not None:
        check_input_block(b.input, found[1].get("input"), str(b.path / "manifest.json"), found[2])
    reference = torch_logits(found[0], x) if found is not None else None
    records, outputs = [], []
    for a in b.artifacts:
        logits = _artifact_logits_checked(a, x, len(b.classes))
        rec = measure(logits, y, reference, dataset=dataset, split=split)
        if reference is None:
            # Accuracy-only (the normal case on a device): the manifest's recorded PyTorch accuracy
            # measures the drop; with nothing recorded for this data there is nothing to verify against
            # (an imported bundle measures its files against its own float file instead, below).
            ref = recorded_reference(a.info, manifest, dataset, split)
            if ref is not None:
                apply_recorded_reference(rec, ref, test_size)
            elif not imported:
                raise EdgeCNNError(f"{a.info['file']}: no PyTorch model here and no recorded accuracy on "
                                   f"'{dataset}' to compare with; pass --checkpoint")
        records.append(rec)
        outputs.append(logits)
    if imported:
        _imported_agreement(b, records, outputs, y)
    rows = [{**a.info, "verified": r} for a, r in zip(b.artifacts, records)]
    tflm = None
    if manifest.get("tflm"):  # the TensorFlow Lite Micro model, run in the TFLM interpreter
        from .tflm import table_row, verify_tflm_block

        tflm = verify_tflm_block(b.path, manifest, x, y, reference, dataset, log)
    log(format_table(rows + ([table_row({**manifest["tflm"], "verified": tflm})] if tflm else [])))
    for a, r in zip(b.artifacts, records):
        check_drop(a.info["file"], r, max_drop)
        check_recorded(a.info["file"], a.info.get("verified"), r, max_drop)
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
