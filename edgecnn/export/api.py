"""`export_bundle`: checkpoint -> verified bundle directory (the Python face of `edgecnn export`).

Everything is built in a staging directory next to the output and moved into place only when
every artifact has been written and verified, so a failure (or Ctrl-C) leaves nothing behind.
"""

from __future__ import annotations

import io
import json
import re
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..bundle import MANIFEST, SCHEMA, Artifact, artifact_record, write_manifest
from ..data import load_dataset, preprocessed
from ..errors import EdgeCNNError
from ..preprocess import model_input_shape
from ..utils import atomic_write_bytes, sha256_file, staged_directory

FORMATS = ("onnx", "tflite", "tensorrt", "tflm")
DEFAULT_CALIB_SIZE = 200
SAMPLES_PER_CLASS = 2
TOOLS = ("edgecnn", "torch", "onnx", "onnxruntime", "onnxslim", "onnxscript", "litert-torch", "ai-edge-litert",
         "torchao", "numpy")


def parse_formats(formats: str | Iterable[str]) -> list[str]:
    """'onnx,tflite' -> ['onnx', 'tflite']; an unknown name is one clear error."""
    names = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats)]
    names = [n for n in names if n]
    if not names:
        raise EdgeCNNError(f"no export format given; choose from {', '.join(FORMATS)}")
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise EdgeCNNError(f"unknown export format '{unknown[0]}'; choose from {', '.join(FORMATS)}")
    return list(dict.fromkeys(names))


def tool_versions() -> dict[str, str]:
    out = {}
    for name in TOOLS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _check_out_dir(out: Path, source_sha: str, force: bool, log: Callable[[str], None]) -> None:
    """Refuse to replace anything but a bundle of the same checkpoint unless --force."""
    if not out.exists():
        return
    if not out.is_dir():
        raise EdgeCNNError(f"--out {out} exists and is not a directory")
    manifest = out / MANIFEST
    if manifest.is_file():
        try:
            old = json.loads(manifest.read_text(encoding="utf-8"))
            old_sha = (old.get("source") or {}).get("sha256")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            old_sha = None
        if old_sha == source_sha:
            log(f"replacing the bundle in {out} (exported earlier from the same checkpoint)")
            return
        if force:
            log(f"--force: replacing the bundle in {out}, which came from a different checkpoint")
            return
        raise EdgeCNNError(
            f"{out} already holds a bundle exported from a different checkpoint; use --force to replace it "
            "or choose another --out"
        )
    if any(out.iterdir()):
        if force:
            log(f"--force: replacing the non-empty directory {out}")
            return
        raise EdgeCNNError(f"{out} exists, is not empty and is not an edgecnn bundle; use --force or another --out")


def _load_data(name: str, data_root: str | None, spec: dict | None = None):
    return load_dataset(name, data_root, input_spec=spec)


def _write_samples(stage: Path, ds, classes: list[str], per_class: int,
                   predict: Callable[[np.ndarray], np.ndarray] | None = None, spec: dict | None = None,
                   split: str = "test") -> list[dict]:
    """A few real held-out test images as PNG, so a device can check itself without a dataset.

    With `predict` (float32 NCHW batch -> PyTorch logits) and the input `spec`, PyTorch's class for
    each sample is recorded as `reference_prediction`, so a device check can tell the model's own
    mistakes from device errors. It is computed on the sample itself, not looked up by position
    (the verification set may be a random subset of the test split).
    """
    import cv2

    from ..preprocess import preprocess_item

    images, labels = ds.split(split)
    labels = np.asarray(labels)
    (stage / "samples").mkdir()
    series = getattr(ds, "kind", "image") == "series"
    records = []
    for c, name in enumerate(classes):
        for i, idx in enumerate(np.flatnonzero(labels == c)[:per_class]):
            img = np.asarray(images[idx])
            safe = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-") or str(c)
            if series:  # a real window, samples x channels, as CSV (edgecnn.preprocess.load_sample reads it)
                file = f"samples/{safe}_{i}.csv"
                np.savetxt(stage / file, img, delimiter=",", fmt="%.9g")
            else:
                if img.ndim == 3:  # dataset arrays are RGB; PNG via OpenCV is BGR
                    img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
                file = f"samples/{safe}_{i}.png"
                if not cv2.imwrite(str(stage / file), img):
                    raise EdgeCNNError(f"cannot write {file}")
            rec = {"file": file, "label": name, "class_index": c}
            if predict is not None and spec is not None:
                x = preprocess_item(np.asarray(images[idx]), spec, color_order="RGB")[None]
                rec["reference_prediction"] = classes[int(predict(x).argmax(1)[0])]
            records.append(rec)
    return records


def _check_chance(ckpt_path: Path, ckpt: dict, reference: np.ndarray, labels: np.ndarray, allow: bool,
                  log: Callable[[str], None]) -> None:
    """Refuse a model that training flagged, or that scores no better than chance on the test data."""
    from ..train.chance import above_chance, describe

    acc = float((reference.argmax(1) == labels).mean()) if len(labels) else None
    flagged = bool((ckpt.get("metrics") or {}).get("at_chance"))
    measured = acc is not None and not above_chance(acc, labels)
    if not (flagged or measured):
        return
    why = ("training flagged it: validation accuracy never left chance" if flagged else
           f"its test accuracy is {describe(acc, labels, list(ckpt['classes']))}")
    if allow:
        log(f"warning: --allow-chance: exporting a model at chance level ({why})")
        return
    raise EdgeCNNError(f"{ckpt_path}: the model is at chance level ({why}); export refuses it: train it "
                       "properly, or pass --allow-chance to export it anyway")


def export_bundle(
    checkpoint: str | Path,
    formats: str | Iterable[str] = ("onnx", "tflite"),
    *,
    fp16: bool = False,
    int8: bool = False,
    calib: str | None = None,
    calib_size: int = DEFAULT_CALIB_SIZE,
    data_root: str | None = None,
    max_drop: float = 1.0,
    out: str | Path | None = None,
    name: str | None = None,
    force: bool = False,
    verify_samples: int | None = None,
    device: str | None = None,
    log: Callable[[str], None] = print,
    allow_chance: bool = False,
    test_data: str | None = None,
) -> Path:
    """Export a checkpoint to a verified bundle directory and return its path.

    formats: onnx, tflite, tensorrt (= the ONNX files + calib.npz; the engine is built on the device).
    int8 needs `calib` (a dataset name): its training split calibrates the quantizers.
    Every artifact is verified on the checkpoint's dataset test split; one that loses more than
    `max_drop` points of top-1 accuracy fails the export and nothing is written.
    tflm (TensorFlow Lite Micro) needs int8: the full-integer int8 TFLite file, checked, measured and
    verified in the TFLM interpreter, plus C/C++ sources in tflm/; `device` (an MCU profile such as
    "cortex-m4") records and prints whether it fits that part.
    A model at chance level (flagged by training, or measured so here) is refused unless `allow_chance`.
    `test_data` verifies on another dataset (a flat folder:PATH whole) instead of the checkpoint's test split.
    """
    from ..train.checkpoint import model_from_checkpoint, read_checkpoint

    fmts = parse_formats(formats)
    if int8 and not calib:
        raise EdgeCNNError("--int8 needs calibration data: pass --calib DATA (e.g. the training dataset); "
                           "edgecnn never calibrates on data you did not choose")
    if "tflm" in fmts or device:
        _check_tflm_request(fmts, int8, device)
    if calib and not int8 and "tensorrt" not in fmts:
        log("note: --calib is only used with --int8 or --formats tensorrt")
    if calib_size < 1:
        raise EdgeCNNError(f"--calib-size must be at least 1, got {calib_size}")
    if max_drop < 0:
        raise EdgeCNNError(f"--max-drop must be >= 0, got {max_drop}")

    ckpt_path = Path(checkpoint)
    ckpt = read_checkpoint(ckpt_path)
    model = model_from_checkpoint(ckpt)
    source_sha = sha256_file(ckpt_path)
    spec = dict(ckpt["input"])
    mname, dataset = ckpt["model"]["name"], str(ckpt.get("dataset") or "")
    if not dataset:
        raise EdgeCNNError(f"{ckpt_path}: checkpoint does not name its dataset; cannot verify the export")
    out = Path(out) if out else Path("export") / f"{mname}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', dataset)}"
    _check_out_dir(out, source_sha, force, log)

    ds = _load_data(dataset, data_root, spec)
    from ..data import evaluation_split

    vname = test_data or dataset
    vds = ds if vname == dataset else load_dataset(vname, data_root, classes=list(ckpt["classes"]),
                                                   channels=int(spec["channels"]), input_spec=spec)
    vsplit = evaluation_split(vds, trained_on=dataset)
    x_test, y_test = preprocessed(vds, vsplit, spec, verify_samples)
    if len(y_test) == 0:
        raise EdgeCNNError(f"split '{vsplit}' of '{vname}' is empty: nothing to verify the export on")
    log(f"verification: {len(y_test)} images of {vname}/{vsplit}")
    x_calib = None
    if calib:
        cds = ds if calib == dataset else _load_data(calib, data_root, spec)
        x_calib, _ = preprocessed(cds, "train", spec, calib_size)
        log(f"calibration: {len(x_calib)} samples from the '{calib}' training split")
    samples = _write_samples_fn(vds, list(ckpt["classes"]), model, spec, vsplit)
    images, labels = vds.split(vsplit)
    tflm_sample = (np.asarray(images[0]), list(ckpt["classes"])[int(np.asarray(labels)[0])]) if len(labels) else None
    return build_bundle(
        model, out, fmts, fp16=fp16, int8=int8, spec=spec, classes=list(ckpt["classes"]), x_test=x_test,
        y_test=y_test, x_calib=x_calib, verification={"dataset": vname, "split": vsplit}, max_drop=max_drop,
        name=name, qat_ckpt=ckpt if ckpt.get("qat") else None, log=log, samples=samples,
        model_block={"name": mname, "kwargs": {"num_classes": ckpt["model"]["num_classes"],
                                               "in_channels": ckpt["model"]["in_channels"],
                                               **ckpt["model"].get("options", {})}},
        source={"checkpoint": str(ckpt_path.resolve()), "sha256": source_sha, "dataset": dataset,
                "accuracy": (ckpt.get("metrics") or {}).get("test_acc")},
        calibration={"dataset": calib, "split": "train", "samples": int(len(x_calib))} if x_calib is not None else None,
        device=device, tflm_sample=tflm_sample, source_name=ckpt_path.name,
        check_reference=lambda reference: _check_chance(ckpt_path, ckpt, reference, y_test, allow_chance, log),
    )


def _write_samples_fn(ds, classes: list[str], model, spec: dict, split: str = "test") -> Callable[[Path], list[dict]]:
    """The bundle's samples/ writer for `ds`'s `split` (PyTorch's class recorded per sample)."""
    from .verify import torch_logits

    return lambda stage: _write_samples(stage, ds, classes, SAMPLES_PER_CLASS, lambda x: torch_logits(model, x), spec,
                                        split=split)


def build_bundle(model, out: Path, fmts: list[str], *, fp16: bool, int8: bool, spec: dict, classes: list[str],
                 x_test: np.ndarray, y_test: np.ndarray | None, x_calib: np.ndarray | None, verification: dict,
                 max_drop: float, name: str | None, model_block: dict, source: dict, calibration: dict | None,
                 samples: Callable[[Path], list[dict]] | None, qat_ckpt: dict | None = None,
                 device: str | None = None, tflm_sample: tuple[np.ndarray, str] | None = None,
                 source_name: str = "model", check_reference: Callable[[np.ndarray], None] | None = None,
                 log: Callable[[str], None] = print) -> Path:
    """Export a live eval-mode `model` to every planned artifact, verify each, write the bundle atomically.

    The one machinery behind `export_bundle` (checkpoints) and `export_model` (any nn.Module).
    `y_test=None`: no labels, so parity only (agreement with PyTorch on `x_test`, e.g. the calibration
    images); the artifacts' accuracy is recorded as not measured and an artifact fails when it
    disagrees with PyTorch on more than `max_drop` percent of the images.
    tflm: `device` (an MCU profile) to check the fit on; `tflm_sample` (raw image, label) embedded in the
    generated main.cc; `source_name` names the source in the generated files.
    `check_reference(PyTorch logits on x_test)` may refuse the model before anything is exported.
    """
    from ..models import count_macs, count_params
    from .verify import artifact_logits, check_drop, format_table, torch_logits

    dataset, split = verification["dataset"], verification["split"]
    reference = torch_logits(model, x_test)
    if check_reference is not None:
        check_reference(reference)

    want_onnx = "onnx" in fmts or "tensorrt" in fmts
    plan: list[tuple[str, str, str]] = []  # (file, format, precision)
    for fmt, ext in (("onnx", "onnx"), ("tflite", "tflite")):
        if fmt == "onnx" and not want_onnx or fmt == "tflite" and "tflite" not in fmts:
            if fmt == "tflite" and "tflm" in fmts:  # the TFLM model is the int8 TFLite file
                plan.append(("model.int8.tflite", "tflite", "int8"))
            continue
        plan.append((f"model.{ext}", fmt, "fp32"))
        if fp16:
            plan.append((f"model.fp16.{ext}", fmt, "fp16"))
        if int8:
            plan.append((f"model.int8.{ext}", fmt, "int8"))

    with staged_directory(out) as stage:
        artifacts = []
        opset = None
        for file, fmt, precision in plan:
            t0 = time.perf_counter()
            path = stage / file
            if fmt == "onnx":
                from . import onnx as onnx_export

                if precision == "fp32":
                    opset = onnx_export.export_fp32(model, x_test, path)["opset"]
                elif precision == "fp16":
                    onnx_export.convert_fp16(stage / "model.onnx", path)
                elif qat_ckpt is not None:  # QAT checkpoint: its trained int8 scales (edgecnn.compress.qat)
                    from ..compress.qat import export_qat_onnx

                    export_qat_onnx(qat_ckpt, x_test, path)
                else:
                    onnx_export.quantize_int8(stage / "model.onnx", path, x_calib)
                inp, outp = onnx_export.io_record(path)
                extra = {"layout": "NCHW", "opset": opset}
            else:
                from . import tflite as tflite_export

                if precision == "int8" and qat_ckpt is not None:  # QAT checkpoint (edgecnn.compress.qat)
                    from ..compress.qat import export_qat_tflite

                    export_qat_tflite(qat_ckpt, x_test, path)
                else:
                    tflite_export.export_tflite(model, x_test, path, precision, x_calib)
                inp, outp = tflite_export.io_record(path)
                extra = {"layout": "NHWC"}
            rec = artifact_record(stage, file, format=fmt, precision=precision, **extra, input=inp, output=outp)
            logits = artifact_logits(Artifact(stage, rec), x_test)
            rec["verified"] = v = _verified(logits, y_test, reference, dataset, split)
            acc = "accuracy not measured (no labelled test data)" if v["accuracy"] is None else \
                f"accuracy {100 * v['accuracy']:.2f}% (PyTorch {100 * v['reference_accuracy']:.2f}%)"
            log(f"{file}: {rec['size_bytes'] / 1024:.1f} KiB, agreement {100 * v['top1_agreement']:.2f}%, {acc}, "
                f"max |diff| {v['max_abs_diff']:.3g}  [{time.perf_counter() - t0:.1f} s]")
            check_drop(file, v, max_drop)
            _check_parity(file, v, max_drop)
            artifacts.append(rec)

        c, h, w = model_input_shape(spec)
        manifest = {
            "schema": SCHEMA,
            "name": name or out.name,
            "task": "classification",
            "classes": list(classes),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": {"name": model_block["name"], "params": count_params(model),
                      "macs": count_macs(model, (c, h, w)), "kwargs": model_block.get("kwargs", {})},
            "input": spec,
            "artifacts": artifacts,
            "source": source,
            "verification": {"dataset": dataset, "split": split, "samples": int(len(x_test)),
                             "max_drop_points": max_drop, "accuracy_measured": y_test is not None},
            "calibration": calibration,
            "samples": samples(stage) if samples is not None else [],
            "tool_versions": tool_versions(),
        }
        if "tensorrt" in fmts:
            manifest["tensorrt"] = _tensorrt_block(stage, x_calib, x_test, y_test, reference, dataset, max_drop, log,
                                                   split)
        if "tflm" in fmts:
            manifest["tflm"] = _tflm_block(stage, artifacts, spec, list(classes), x_test, y_test, reference,
                                           dataset, max_drop, device, tflm_sample, source_name, log)
            manifest["tool_versions"]["tflite-micro"] = manifest["tflm"]["verified"]["interpreter"].split()[-1]
        from .report import write_report

        write_report(stage, manifest)
        write_manifest(stage, manifest)
        rows = artifacts
        if "tflm" in manifest:
            from .tflm import table_row

            rows = artifacts + [table_row(manifest["tflm"])]
        log("\n" + format_table(rows))
    log(f"bundle written: {out}")
    return out


def _check_tflm_request(fmts: list[str], int8: bool, device: str | None) -> None:
    """Fail before anything is done: tflm needs int8 and tflite-micro; --device needs tflm and a known MCU."""
    if device and "tflm" not in fmts:
        raise EdgeCNNError(f"--device {device}: microcontroller fit is measured for the tflm target; "
                           "add tflm to --formats (with --int8 --calib DATA)")
    if not int8:
        raise EdgeCNNError("--formats tflm needs --int8 --calib DATA: TensorFlow Lite Micro runs full-integer "
                           "int8 models, and an fp32 model is not exported for it")
    from .tflm import _runtime

    _runtime()  # tflite-micro installed?
    if device:
        from ..devices.mcu import load_mcu_profile

        load_mcu_profile(device)


def _tflm_block(stage: Path, artifacts: list[dict], spec: dict, classes: list[str], x_test, y_test,
                reference, dataset: str, max_drop: float, device: str | None,
                sample: tuple[np.ndarray, str] | None, source: str, log: Callable[[str], None]) -> dict:
    """The TFLM target built from the bundle's int8 TFLite artifact (see export/tflm.py)."""
    from .tflm import build_tflm

    rec = next(a for a in artifacts if a["format"] == "tflite" and a["precision"] == "int8")
    block = build_tflm(stage, rec, spec=spec, classes=classes, x_test=x_test, y_test=y_test, reference=reference,
                       dataset=dataset, max_drop=max_drop, sample=sample, source=source, log=log)
    if device:
        from ..devices.mcu import fit, format_fit, load_mcu_profile

        block["fit"] = fit(block, load_mcu_profile(device))
        log(f"tflm: {format_fit(block['fit'])}")
    return block


def _tensorrt_block(stage: Path, x_calib, x_test, y_test, reference, dataset: str, max_drop: float,
                    log: Callable[[str], None], split: str = "test") -> dict:
    """What `edgecnn build-engine` uses on the device; engines are tied to one GPU + TensorRT version.

    With calibration data: the int8 QDQ ONNX in TensorRT's flavour (float biases), verified like
    the artifacts, and calib.npz (the preprocessed calibration images, for checks on the device).
    """
    from . import onnx as onnx_export
    from .verify import check_drop

    block = {"onnx": "model.onnx", "onnx_int8": None, "calib": None,
             "engine": "built on the device: edgecnn build-engine BUNDLE [--fp16|--int8]"}
    if x_calib is None:
        log("tensorrt: no --calib, so no int8 engine can be built from this bundle")
        return block
    file = "model.int8.trt.onnx"
    onnx_export.quantize_int8(stage / "model.onnx", stage / file, x_calib, tensorrt=True)
    rec = artifact_record(stage, file)
    rec["verified"] = _verified(onnx_export.run_onnx(stage / file, x_test), y_test, reference, dataset, split)
    check_drop(file, rec["verified"], max_drop)
    _check_parity(file, rec["verified"], max_drop)
    v = rec["verified"]
    log(f"{file} (TensorRT int8, checked with onnxruntime): agreement {100 * v['top1_agreement']:.2f}%, "
        + ("accuracy not measured" if v["accuracy"] is None else f"accuracy {100 * v['accuracy']:.2f}%"))
    buf = io.BytesIO()
    np.savez_compressed(buf, x=x_calib.astype(np.float32))
    atomic_write_bytes(stage / "calib.npz", buf.getvalue())
    block.update(onnx_int8=rec, calib="calib.npz")
    return block


def _verified(logits: np.ndarray, labels: np.ndarray | None, reference: np.ndarray, dataset: str, split: str) -> dict:
    """The `verified` block; without labels the accuracy fields are None (parity only)."""
    from .verify import measure

    if labels is not None:
        return measure(logits, labels, reference, dataset=dataset, split=split)
    rec = measure(logits, reference.argmax(1), reference, dataset=dataset, split=split)
    rec.update(accuracy=None, reference_accuracy=None, drop_points=None, accuracy_measured=False)
    return rec


def _check_parity(file: str, rec: dict, max_drop: float) -> None:
    """Without labels, the bar is agreement: at most `max_drop` percent of images may change class."""
    if rec.get("accuracy_measured") is False and 100.0 * (1.0 - rec["top1_agreement"]) > max_drop:
        raise EdgeCNNError(f"{file}: top-1 agreement with PyTorch {100 * rec['top1_agreement']:.2f}% on "
                           f"{rec['samples']} {rec['dataset']} {rec['split']} images (no labels): more than "
                           f"--max-drop {max_drop:g}% of them change class")
