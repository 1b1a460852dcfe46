"""`edgecnn import-model`: wrap ONNX / TFLite files made elsewhere into a verified bundle.

    edgecnn import-model model.onnx --labels labels.txt --size 224x224 --channels 3 \
        --mean 0.485 0.456 0.406 --std 0.229 0.224 0.225 --data folder:photos --out export/theirs

What the file itself says is read from it, never asked for: input/output names, layout (NCHW or
NHWC, from where the channel axis is), dtypes, int8/uint8 quantization parameters, the number of
classes (checked against the labels), and whether the graph ends in a softmax (`output.kind`
"probs" instead of "logits", so the runtime does not apply softmax twice: backends turn
probabilities into log-probabilities, whose softmax is the same probabilities). What the file
cannot say (normalization, color order, resize policy) comes from the flags. With `--data` every
artifact is measured on the test split, and when several files are imported, their top-1 agreement
with the first one is recorded.

Teachable Machine's TFLite export (`model_unquant.tflite` float, `model.tflite` quantized, and a
labels.txt of "0 Name" lines) is recognized: its labels are read without the indices and its
preprocessing (center crop, RGB, inputs scaled to [-1, 1]) is the default.
"""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..bundle import SCHEMA, Artifact, artifact_record, write_manifest
from ..errors import EdgeCNNError
from ..utils import first_line, sha256_file, staged_directory

TM_FILES = ("model_unquant.tflite", "model.tflite")
_TM_LINE = re.compile(r"^(\d+)\s+(.+)$")
_ONNX_DTYPES = {1: "float32", 10: "float16", 3: "int8", 2: "uint8"}


def read_labels(path: str | Path) -> tuple[list[str], str]:
    """Class names of a labels file: one per line, or Teachable Machine's "0 Name" lines.

    Returns (names, "teachable-machine" | "plain")."""
    p = Path(path)
    if not p.is_file():
        raise EdgeCNNError(f"labels file not found: {p}")
    try:
        lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except UnicodeDecodeError:
        raise EdgeCNNError(f"{p}: not a UTF-8 text file of class names") from None
    if not lines:
        raise EdgeCNNError(f"{p}: no class names in the labels file")
    matches = [_TM_LINE.match(ln) for ln in lines]
    if all(matches) and [int(m.group(1)) for m in matches] == list(range(len(lines))):
        return [m.group(2).strip() for m in matches], "teachable-machine"
    return lines, "plain"


def _onnx_io(path: Path) -> dict:
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as e:
        raise EdgeCNNError(f"{path}: not a readable ONNX file ({first_line(e, 120)})") from None
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise EdgeCNNError(f"{path}: has {len(inputs)} inputs and {len(graph.output)} outputs; an image "
                           "classifier has one of each")

    def dims(v) -> list[int | None]:
        return [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]

    def dtype(v) -> str:
        t = v.type.tensor_type.elem_type
        if t not in _ONNX_DTYPES:
            raise EdgeCNNError(f"{path}: tensor '{v.name}' has ONNX element type {t}; "
                               "supported: float32, float16, int8, uint8")
        return _ONNX_DTYPES[t]

    out = graph.output[0]
    last = [n for n in graph.node if out.name in n.output]
    softmax = bool(last) and last[0].op_type in ("Softmax", "LogSoftmax")
    return {"format": "onnx", "input": {"name": inputs[0].name, "dtype": dtype(inputs[0]), "quant": None},
            "output": {"name": out.name, "dtype": dtype(out), "quant": None},
            "in_shape": dims(inputs[0]), "out_shape": dims(out),
            "softmax": softmax and last[0].op_type == "Softmax", "log_softmax": softmax and
            last[0].op_type == "LogSoftmax"}


def _tflite_io(path: Path) -> dict:
    from .tflite import _interpreter

    try:
        it = _interpreter(path)
    except Exception as e:
        raise EdgeCNNError(f"{path}: not a readable TFLite file ({first_line(e, 120)})") from None
    ins, outs = it.get_input_details(), it.get_output_details()
    if len(ins) != 1 or len(outs) != 1:
        raise EdgeCNNError(f"{path}: has {len(ins)} inputs and {len(outs)} outputs; an image classifier "
                           "has one of each")

    def block(d: dict) -> dict:
        dt = np.dtype(d["dtype"]).name
        if dt not in ("float32", "float16", "int8", "uint8"):
            raise EdgeCNNError(f"{path}: tensor '{d['name']}' has dtype {dt}; supported: float32, float16, int8, uint8")
        scale, zero = d.get("quantization", (0.0, 0))
        quant = {"scale": float(scale), "zero_point": int(zero)} if dt in ("int8", "uint8") and scale else None
        if dt in ("int8", "uint8") and quant is None:
            raise EdgeCNNError(f"{path}: integer tensor '{d['name']}' has no quantization parameters")
        return {"name": d["name"], "dtype": dt, "quant": quant}

    ops = it._get_ops_details() if hasattr(it, "_get_ops_details") else []
    out_index = outs[0]["index"]
    producer = [op for op in ops if out_index in list(op.get("outputs", []))]
    last_op = producer[0]["op_name"] if producer else ""
    return {"format": "tflite", "input": block(ins[0]), "output": block(outs[0]),
            "in_shape": [int(v) for v in ins[0]["shape"]], "out_shape": [int(v) for v in outs[0]["shape"]],
            "softmax": last_op == "SOFTMAX", "log_softmax": last_op == "LOG_SOFTMAX"}


def _layout(path: Path, shape: list, channels: int | None, size: tuple[int, int] | None, fmt: str) -> tuple:
    """(layout, channels, (H, W)) from a 4-D input shape plus what the user said."""
    if len(shape) != 4:
        raise EdgeCNNError(f"{path}: input has shape {shape}; an image classifier takes a 4-D batch")
    nchw_c, nhwc_c = shape[1], shape[3]
    candidates = []
    if nchw_c in (1, 3) and (channels is None or nchw_c == channels):
        candidates.append(("NCHW", nchw_c, (shape[2], shape[3])))
    if nhwc_c in (1, 3) and (channels is None or nhwc_c == channels):
        candidates.append(("NHWC", nhwc_c, (shape[1], shape[2])))
    if len(candidates) == 2:  # e.g. 3x3x3: TFLite is NHWC by convention, ONNX NCHW
        candidates = [c for c in candidates if c[0] == ("NHWC" if fmt == "tflite" else "NCHW")]
    if not candidates:
        said = f" (--channels {channels})" if channels else ""
        raise EdgeCNNError(f"{path}: input shape {shape} has no channel axis of 1 or 3{said} first or last")
    layout, c, hw = candidates[0]
    if size is not None:
        for got, want, what in zip(hw, size, ("height", "width")):
            if got is not None and got != want:
                raise EdgeCNNError(f"{path}: input {what} is {got}, but --size says {want}")
        hw = size
    if hw[0] is None or hw[1] is None:
        raise EdgeCNNError(f"{path}: input size is dynamic ({shape}); pass --size HxW")
    return layout, int(c), (int(hw[0]), int(hw[1]))


def _copy_model(src: Path, dst: Path, fmt: str) -> None:
    """Copy a model file into the bundle. ONNX weights kept as external data (`torch.onnx.export`
    writes `model.onnx.data` next to the file) are folded into one self-contained file."""
    if fmt == "onnx":
        import onnx

        model = onnx.load(str(src))  # loads external data from src's folder
        for t in model.graph.initializer:
            t.data_location = onnx.TensorProto.DEFAULT
            del t.external_data[:]
        onnx.save(model, str(dst))  # < 2 GB: one self-contained file
        return
    shutil.copyfile(src, dst)


def _precision(io: dict) -> str:
    dts = {io["input"]["dtype"], io["output"]["dtype"]}
    if dts & {"int8", "uint8"}:
        return "int8"
    return "fp16" if "float16" in dts else "fp32"


def _output_kind(io: dict, y: np.ndarray | None) -> str:
    """probs when the graph ends in Softmax, or when measured outputs are rows of probabilities."""
    if io["log_softmax"]:
        return "logits"  # log-probabilities are valid logits: softmax gives the probabilities back
    if io["softmax"]:
        return "probs"
    if y is not None and len(y) and y.min() >= -1e-4 and np.allclose(y.sum(1), 1.0, atol=2e-2):
        return "probs"
    return "logits"


def _run(art: Artifact, x: np.ndarray) -> np.ndarray:
    """The artifact's raw (dequantized) output on float32 NCHW input, through the runtime's backend
    (its record still says kind "logits", so probabilities come back as they are)."""
    from ..runtime.backends import open_backend

    be = open_backend(art, backend="onnxruntime" if art.format == "onnx" else "litert", threads=1)
    batch = be.input_shape[0] if be.input_shape and be.input_shape[0] > 0 else 64
    return np.concatenate([be.finish(be.run_raw(be.prepare(x[i : i + batch]))) for i in range(0, len(x), batch)])


def _graph_counts(path: Path) -> dict:
    """params and MACs counted from the imported file's graph (edgecnn.profile.graph_count)."""
    from ..profile.graph_count import count_graph

    return count_graph(path)


def _tflm_request(formats: str | None, device: str | None, paths: list[Path], ios: list[dict]) -> str | None:
    """The imported file TFLM will run (checked now, before anything is written), or None without tflm."""
    if not formats:
        if device:
            raise EdgeCNNError(f"--device {device}: microcontroller fit is measured for the tflm target; add "
                               "--formats tflm")
        return None
    from .api import parse_formats

    if parse_formats(formats) != ["tflm"]:
        raise EdgeCNNError(f"import-model --formats takes only tflm (got {formats!r}): the imported files are "
                           "the bundle's other formats")
    from .tflm import check_tflm_model
    from .tflm_bundle import check_request, tflm_artifact

    check_request(device)
    recs = [{"file": p.name, "format": io["format"], "precision": _precision(io), "input": io["input"],
             "output": io["output"]} for p, io in zip(paths, ios)]
    rec = tflm_artifact(recs, "import-model --formats tflm")
    check_tflm_model(next(p for p in paths if p.name == rec["file"]), rec["input"], rec["output"], rec["file"])
    return rec["file"]


def parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text) or re.fullmatch(r"\s*(\d+)\s*", text)
    if not m or min(int(g) for g in m.groups()) < 1:
        raise EdgeCNNError(f"--size must be HxW (e.g. 224x224), got {text!r}")
    g = [int(v) for v in m.groups()]
    return (g[0], g[-1])


def import_model(files: Sequence[str | Path], out: str | Path, *, labels: str | Path, size: tuple[int, int] | None = None,
                 channels: int | None = None, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 color: str | None = None, resize: str | None = None, data: str | None = None,
                 data_root: str | None = None, samples: int | None = None, name: str | None = None,
                 force: bool = False, formats: str | None = None, device: str | None = None,
                 log: Callable[[str], None] = print) -> Path:
    """Wrap foreign ONNX/TFLite classifier files into a bundle; returns its path.

    formats "tflm" also targets TensorFlow Lite Micro from the int8 .tflite file (export/tflm_bundle.py);
    `device` (an MCU profile) says whether it fits."""
    from ..data import load_dataset, preprocessed
    from .api import _check_out_dir, tool_versions
    from .module import input_spec

    paths = [Path(f) for f in files]
    if not paths:
        raise EdgeCNNError("import-model needs at least one .onnx or .tflite file")
    for p in paths:
        if not p.is_file():
            raise EdgeCNNError(f"model file not found: {p}")
        if p.suffix.lower() not in (".onnx", ".tflite"):
            raise EdgeCNNError(f"{p}: not an .onnx or .tflite file")
    if len({p.name for p in paths}) != len(paths):
        raise EdgeCNNError("two imported files have the same name; rename one")
    if channels is not None and channels not in (1, 3):
        raise EdgeCNNError(f"--channels must be 1 or 3, got {channels}")
    classes, labels_format = read_labels(labels)
    teachable = labels_format == "teachable-machine" and all(p.suffix == ".tflite" for p in paths)
    if teachable:
        log("Teachable Machine export recognized (labels '0 Name'): center crop, RGB, inputs scaled to [-1, 1] "
            "unless flags say otherwise")

    ios, layout_info = [], []
    for p in paths:
        io = _onnx_io(p) if p.suffix.lower() == ".onnx" else _tflite_io(p)
        n_out = io["out_shape"][-1] if io["out_shape"] else None
        if len(io["out_shape"]) not in (1, 2) and not (len(io["out_shape"]) == 4 and io["out_shape"][1:3] == [1, 1]):
            raise EdgeCNNError(f"{p}: output shape {io['out_shape']} is not (N, classes)")
        if n_out is not None and n_out != len(classes):
            raise EdgeCNNError(f"{p}: the model outputs {n_out} classes but {Path(labels).name} lists {len(classes)}")
        lay = _layout(p, io["in_shape"], channels, size, io["format"])
        if layout_info and lay[1:] != layout_info[0][1:]:
            raise EdgeCNNError(f"{p}: input {lay[1]}x{lay[2][0]}x{lay[2][1]} differs from {paths[0].name}'s "
                               f"{layout_info[0][1]}x{layout_info[0][2][0]}x{layout_info[0][2][1]}")
        ios.append(io)
        layout_info.append(lay)
    tflm = _tflm_request(formats, device, paths, ios)
    c, (h, w) = layout_info[0][1], layout_info[0][2]
    normalization = "given" if mean is not None and std is not None else "assumed"
    if mean is None or std is None:
        if mean is not None or std is not None:
            raise EdgeCNNError("give both --mean and --std, or neither")
        mean, std = ([0.5] * c, [0.5] * c) if teachable else ([0.0] * c, [1.0] * c)
        if not teachable:
            log("note: no --mean/--std given: assuming the model takes pixels scaled to [0, 1]")
    mean = list(mean) * c if len(mean) == 1 else list(mean)
    std = list(std) * c if len(std) == 1 else list(std)
    spec = input_spec((c, h, w), mean, std, color, resize or ("center_crop" if teachable else "stretch"))

    x = y = None
    ds_name = tflm_sample = None
    if data:
        ds = load_dataset(data, data_root) if data_root else load_dataset(data)
        if len(ds.classes) != len(classes):
            raise EdgeCNNError(f"dataset '{data}' has {len(ds.classes)} classes, the labels {len(classes)}")
        x, y = preprocessed(ds, "test", spec, samples)
        ds_name = ds.name
        images, labels_ = ds.split("test")
        tflm_sample = (np.asarray(images[0]), classes[int(np.asarray(labels_)[0])]) if len(labels_) else None
    out = Path(out)
    source_sha = sha256_file(paths[0])
    _check_out_dir(out, source_sha, force, log)

    with staged_directory(out) as stage:
        artifacts, outputs = [], []
        probe = x if x is not None else np.zeros((1, c, h, w), np.float32)
        for p, io, (layout, _, _) in zip(paths, ios, layout_info):
            _copy_model(p, stage / p.name, io["format"])
            rec = artifact_record(stage, p.name, format=io["format"], precision=_precision(io), layout=layout,
                                  input=io["input"], output={**io["output"], "kind": "logits"})
            raw = _run(Artifact(stage, rec), probe)
            if raw.shape[1] != len(classes):
                raise EdgeCNNError(f"{p}: the model outputs {raw.shape[1]} classes but the labels list {len(classes)}")
            rec["output"]["kind"] = _output_kind(io, raw)
            outputs.append(raw)
            artifacts.append(rec)
            log(f"{p.name}: {io['format']} {rec['precision']} {layout} input '{io['input']['name']}' "
                f"{io['input']['dtype']}{' quant ' + str(io['input']['quant']) if io['input']['quant'] else ''}, "
                f"output '{io['output']['name']}' {io['output']['dtype']} ({rec['output']['kind']})")
        for rec, raw in zip(artifacts, outputs):
            if x is None:
                rec["verified"] = None
                continue
            v = {"dataset": ds_name, "split": "test", "samples": int(len(y)),
                 "accuracy": round(float((raw.argmax(1) == y).mean()), 6), "max_abs_diff": None,
                 "top1_agreement": None, "reference_accuracy": None, "drop_points": None}
            if len(artifacts) > 1:
                v["agreement_with"] = artifacts[0]["file"]
                v["agreement_with_first"] = round(float((raw.argmax(1) == outputs[0].argmax(1)).mean()), 6)
            rec["verified"] = v
            log(f"{rec['file']}: accuracy {100 * v['accuracy']:.2f}% on {len(y)} {ds_name} test images"
                + (f", top-1 agreement with {artifacts[0]['file']} {100 * v['agreement_with_first']:.2f}%"
                   if len(artifacts) > 1 else ""))
        manifest = {
            "schema": SCHEMA, "name": name or out.name, "task": "classification", "classes": classes,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": {"name": paths[0].stem, **_graph_counts(paths[0]), "kwargs": {}},
            "input": spec, "artifacts": artifacts,
            "source": {"checkpoint": None, "imported": [p.name for p in paths], "sha256": source_sha,
                       "dataset": ds_name, "accuracy": None, "labels_format": labels_format,
                       "teachable_machine": teachable,
                       "normalization": normalization},
            "verification": {"dataset": ds_name, "split": "test", "samples": int(len(y)) if y is not None else 0,
                             "max_drop_points": None, "accuracy_measured": x is not None},
            "calibration": None, "samples": [], "tool_versions": tool_versions(),
        }
        if tflm:
            from .tflm import tflm_version
            from .tflm_bundle import stage_tflm

            manifest["tflm"] = stage_tflm(stage, manifest, x=x, y=y, dataset=ds_name, split="test" if x is not None
                                          else None, max_drop=1.0, device=device, sample=tflm_sample, source=tflm,
                                          log=log)
            manifest["tool_versions"]["tflite-micro"] = tflm_version()
        from .report import write_report

        write_report(stage, manifest)
        write_manifest(stage, manifest)
    log(f"bundle written: {out}" + ("" if data else " (accuracy not measured: pass --data)"))
    return out
