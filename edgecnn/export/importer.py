"""`edgecnn import-model`: wrap ONNX / TFLite files made elsewhere into a verified bundle.

    edgecnn import-model model.onnx --labels labels.txt --size 224x224 --channels 3 \
        --mean 0.485 0.456 0.406 --std 0.229 0.224 0.225 --data folder:photos --out export/theirs

What the file itself says is read from it, never asked for: input/output names, layout (NCHW or
NHWC, from where the channel axis is), dtypes, int8/uint8 quantization parameters, the number of
classes (checked against the labels), whether the graph ends in a softmax (`output.kind` "probs"
instead of "logits", so the runtime does not apply softmax twice: backends turn probabilities into
log-probabilities, whose softmax is the same probabilities), and for integer inputs the pixel range
(`import_spec.py`: the float range the quantization represents; flags that contradict it are refused).
Inputs that are not images import as `input.kind` "features"; files that are not classifiers are
refused first. Float inputs state no range: [0, 1] is assumed with a note, or `--preset` /
`--mean/--std/--scale` say it. With `--data` every artifact is measured (a flat folder whole, else
the test split), with top-1 agreement with the first file and the drop against the float file.

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
from .import_spec import (
    PIXEL_RANGES,
    PRESETS,
    contradiction,
    describe_range,
    from_quant,
    load_features_data,
    preset_spec,
)

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
    if len(inputs) == 1 and len(graph.output) > 1:
        raise EdgeCNNError(f"{path}: not a classifier: it has {len(graph.output)} outputs, a classifier one "
                           "[1, classes] output (`edgecnn profile` still measures it)")
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
    if len(ins) == 1 and len(outs) > 1:
        raise EdgeCNNError(f"{path}: not a classifier: it has {len(outs)} outputs, a classifier one [1, classes] "
                           "output (`edgecnn profile` still measures it)")
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


KINDS = ("image", "features")


def _classifier_check(p: Path, io: dict, n_classes: int, labels: str | Path) -> None:
    """Refuse a file that is not a classifier (the reason first), then a class count that is not the labels'."""
    out, inp = io["out_shape"], io["in_shape"]
    if not (len(out) in (1, 2) or (len(out) == 4 and out[1:3] == [1, 1])):
        raise EdgeCNNError(f"{p}: not a classifier: its output has shape {out}, not [1, classes] "
                           f"(`edgecnn profile {p}` still measures it)")
    n_out = out[-1]
    if n_out is not None and n_out != n_classes and list(out) == list(inp):
        raise EdgeCNNError(f"{p}: not a classifier: its output {out} has the shape of its input (an "
                           "autoencoder or a regressor), not [1, classes]")
    if n_out is not None and n_out != n_classes:
        raise EdgeCNNError(f"{p}: the model outputs {n_out} classes but {Path(labels).name} lists {n_classes}")


def _image_axes(shape: list, channels: int | None) -> bool:
    """Can this input shape be an image batch (4-D, a channel axis of 1 or 3 first or last)?"""
    return len(shape) == 4 and any(c in (1, 3) and (channels is None or c == channels) for c in (shape[1], shape[3]))


def _input_kind(p: Path, io: dict, kind: str | None, image_flags: bool, channels: int | None,
                log: Callable[[str], None]) -> str:
    """image or features: what the user said, else what the file's input is."""
    shape = io["in_shape"]
    if kind == "image" and not _image_axes(shape, channels):
        raise EdgeCNNError(f"{p}: input shape {shape} is not an image batch (4-D with 1 or 3 channels); "
                           "import it as --kind features")
    if kind is not None:
        return kind
    if not _image_axes(shape, channels):
        log(f"{p.name}: input {shape} {io['input']['dtype']} is not an image batch: imported as features "
            "(fed from .npy arrays)")
        return "features"
    q = io["input"]["quant"]
    colour = 3 in (shape[1], shape[3])  # a 3-channel 4-D input is an image even with an unknown range
    if q is not None and not image_flags and not colour and from_quant(io["input"]["dtype"], q) is None:
        log(f"{p.name}: input {shape} {io['input']['dtype']} (scale {q['scale']:.6g}, zero point {q['zero_point']}) "
            f"represents {describe_range(io['input']['dtype'], q)}, not a pixel range: imported as features "
            "(--kind image, with --preset or --mean/--std, imports it as an image)")
        return "features"
    return "image"


def _normalization(paths: list[Path], ios: list[dict], c: int, *, mean: Sequence[float] | None,
                   std: Sequence[float] | None, scale: float | None, preset: str | None, teachable: bool,
                   log: Callable[[str], None]) -> tuple[dict, str, str | None]:
    """({color, scale, mean, std, resize}, how it was decided, a note) for an image input.

    What the user states (--preset, --mean/--std/--scale) must fit every integer file's quantization;
    without it the quantization says the range; float files with nothing stated get Teachable Machine's
    convention when recognized, else [0, 1] with a note."""
    if (mean is None) != (std is None):
        raise EdgeCNNError("give both --mean and --std, or neither")
    if preset and mean is not None:
        raise EdgeCNNError("give --preset or --mean/--std, not both")
    if teachable and preset is None and mean is None and scale is None:
        preset = "teachable-machine"
    said = None
    if preset:
        spec = preset_spec(preset, c)
        how, said = f"preset {preset}", f"--preset {preset}"
        if scale is not None:
            spec["scale"] = float(scale)
    elif mean is not None or scale is not None:
        given = [(flag, list(v)) for flag, v in (("--scale", None if scale is None else [scale]), ("--mean", mean),
                                                 ("--std", std)) if v is not None]
        said = " ".join(f"{flag} {' '.join(f'{x:g}' for x in vals)}" for flag, vals in given)
        mean = list(mean) if mean is not None else [0.0]
        std = list(std) if std is not None else [1.0]
        for name, v in (("--mean", mean), ("--std", std)):
            if len(v) not in (1, c):
                raise EdgeCNNError(f"{name} takes 1 or {c} values for a {c}-channel input, got {len(v)}")
        spec = {"scale": float(scale) if scale is not None else 1.0 / 255.0,
                "mean": mean * c if len(mean) == 1 else mean, "std": std * c if len(std) == 1 else std}
        how = "given"
    else:
        spec, how = {}, ""
    ints = [(p, io) for p, io in zip(paths, ios) if io["input"]["quant"] is not None]
    if said:
        for p, io in ints:
            why = contradiction(io["input"]["dtype"], io["input"]["quant"], spec["scale"], spec["mean"], spec["std"])
            if why:
                raise EdgeCNNError(f"{p.name}: {said} {why}; leave them out (the file says how to feed it) or fix them")
        return spec, how, None
    if ints:
        found = []
        for p, io in ints:
            dt, q = io["input"]["dtype"], io["input"]["quant"]
            r = from_quant(dt, q)
            if r is None:
                raise EdgeCNNError(f"{p.name}: its {dt} input (scale {q['scale']:.6g}, zero point {q['zero_point']}) "
                                   f"represents {describe_range(dt, q)}, not a pixel range edgecnn knows "
                                   f"({', '.join(PIXEL_RANGES)}): say how pixels map with --preset or --mean/--std/--scale")
            found.append((p, r))
            log(f"{p.name}: {dt} input scale {q['scale']:.6g}, zero point {q['zero_point']} represents "
                f"{describe_range(dt, q)}: pixels are fed as {r[0]} (read from the file's quantization)")
        if len({r[0] for _, r in found}) > 1:
            raise EdgeCNNError("the imported files' input quantizations disagree ("
                               + ", ".join(f"{p.name}: {r[0]}" for p, r in found) + "); import them separately")
        one = found[0][1][1]
        return {"scale": one["scale"], "mean": [one["mean"]] * c, "std": [one["std"]] * c}, \
            f"quantization ({found[0][1][0]})", None
    note = ("float input and no normalization stated: assumed pixels scaled to [0, 1] (mean 0, std 1); if the "
            "model was trained on another range, import again with --preset NAME (e.g. keras-mobilenet: -1..1) "
            "or --mean/--std/--scale")
    log(f"note: {note}")
    return {"scale": 1.0 / 255.0, "mean": [0.0] * c, "std": [1.0] * c}, "assumed", note


def _eval_data(data: str, data_root: str | None, classes: list[str], kind: str, spec: dict,
               samples: int | None) -> tuple[np.ndarray, np.ndarray, str, str]:
    """(inputs, labels, dataset name, split) to measure an imported model on."""
    if kind == "features":
        x, y = load_features_data(data, spec["shape"], len(classes))
        if samples is not None and samples < len(y):
            idx = np.sort(np.random.default_rng(0).choice(len(y), size=samples, replace=False))
            x, y = x[idx], y[idx]
        return x, y, Path(data).name, "all"
    from ..data import evaluation_split, load_dataset, preprocessed

    ds = load_dataset(data, data_root, classes=classes, channels=int(spec["channels"]))
    if len(ds.classes) != len(classes):
        raise EdgeCNNError(f"dataset '{data}' has {len(ds.classes)} classes, the labels {len(classes)}")
    split = evaluation_split(ds)  # a flat folder is used whole, as eval and verify do
    x, y = preprocessed(ds, split, spec, samples)
    return x, y, ds.name, split


def _first_image(data: str, data_root: str | None, classes: list[str], spec: dict, split: str) -> tuple | None:
    """(raw image, label) of the evaluation split's first image: main.cc's embedded test input."""
    from ..data import load_dataset

    ds = load_dataset(data, data_root, classes=classes, channels=int(spec["channels"]))
    images, labels = ds.split(split)
    return (np.asarray(images[0]), classes[int(np.asarray(labels)[0])]) if len(labels) else None


def import_model(files: Sequence[str | Path], out: str | Path, *, labels: str | Path, size: tuple[int, int] | None = None,
                 channels: int | None = None, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 scale: float | None = None, preset: str | None = None, kind: str | None = None,
                 color: str | None = None, resize: str | None = None, data: str | None = None,
                 data_root: str | None = None, samples: int | None = None, name: str | None = None,
                 force: bool = False, formats: str | None = None, device: str | None = None,
                 log: Callable[[str], None] = print) -> Path:
    """Wrap foreign ONNX/TFLite classifier files into a bundle; returns its path.

    formats "tflm" also targets TensorFlow Lite Micro from the int8 .tflite file (export/tflm_bundle.py);
    `device` (an MCU profile) says whether it fits."""
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
    if kind is not None and kind not in KINDS:
        raise EdgeCNNError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if preset is not None and preset not in PRESETS:
        raise EdgeCNNError(f"unknown --preset '{preset}'; known: {', '.join(PRESETS)}")
    classes, labels_format = read_labels(labels)
    # Teachable Machine: its "0 Name" labels, or its float file's distinctive name (model_unquant.tflite)
    teachable = all(p.suffix == ".tflite" for p in paths) and (
        labels_format == "teachable-machine" or any(p.name == TM_FILES[0] for p in paths))
    image_flags = [f for f, v in (("--size", size), ("--channels", channels), ("--mean", mean), ("--std", std),
                                  ("--scale", scale), ("--preset", preset), ("--color", color),
                                  ("--resize", resize)) if v is not None]

    ios, kinds = [], []
    for p in paths:
        io = _onnx_io(p) if p.suffix.lower() == ".onnx" else _tflite_io(p)
        _classifier_check(p, io, len(classes), labels)
        ios.append(io)
        kinds.append(_input_kind(p, io, kind, bool(image_flags), channels, log))
    if len(set(kinds)) > 1:
        raise EdgeCNNError("the imported files take different kinds of input ("
                           + ", ".join(f"{p.name}: {k}" for p, k in zip(paths, kinds)) + "); import them separately")
    kind = kinds[0]
    tflm = _tflm_request(formats, device, paths, ios)
    normalization, note = "none", None
    if kind == "features":
        if image_flags:
            raise EdgeCNNError(f"{', '.join(image_flags)}: image options, but the input is features "
                               f"(shape {ios[0]['in_shape']}); leave them out")
        for p, io in zip(paths, ios):
            if not io["in_shape"][1:] or any(not v or v < 1 for v in io["in_shape"][1:]):
                raise EdgeCNNError(f"{p}: features input shape {io['in_shape']} is dynamic or empty beyond the "
                                   "batch; a features bundle needs the file's fixed sample shape")
        shapes = [[int(v) for v in io["in_shape"][1:]] for io in ios]
        if any(s != shapes[0] for s in shapes):
            raise EdgeCNNError("the imported files take different input shapes: "
                               + ", ".join(f"{p.name}: {s}" for p, s in zip(paths, shapes)))
        spec = {"kind": "features", "shape": shapes[0]}
        layouts = ["ND"] * len(paths)
        probe_shape = (1, *shapes[0])
        log(f"input: features {shapes[0]}, fed as given (values in the model's float domain; integer "
            "inputs are quantized with the file's scale and zero point)")
    else:
        if teachable:
            log("Teachable Machine export recognized (labels '0 Name'): center crop, RGB, inputs scaled to [-1, 1] "
                "unless flags say otherwise")
        layout_info = []
        for p, io in zip(paths, ios):
            lay = _layout(p, io["in_shape"], channels, size, io["format"])
            if layout_info and lay[1:] != layout_info[0][1:]:
                raise EdgeCNNError(f"{p}: input {lay[1]}x{lay[2][0]}x{lay[2][1]} differs from {paths[0].name}'s "
                                   f"{layout_info[0][1]}x{layout_info[0][2][0]}x{layout_info[0][2][1]}")
            layout_info.append(lay)
        c, (h, w) = layout_info[0][1], layout_info[0][2]
        norm, normalization, note = _normalization(paths, ios, c, mean=mean, std=std, scale=scale, preset=preset,
                                                   teachable=teachable, log=log)
        spec = input_spec((c, h, w), norm["mean"], norm["std"], color or (norm.get("color") if c == 3 else None),
                          resize or norm.get("resize") or ("center_crop" if teachable else "stretch"))
        spec["scale"] = float(norm["scale"])
        layouts = [lay[0] for lay in layout_info]
        probe_shape = (1, c, h, w)
        log(f"input: {c}x{h}x{w} {spec['color']}, pixels x {spec['scale']:.6g}, mean {spec['mean']}, "
            f"std {spec['std']} ({normalization})")

    x = y = None
    ds_name = split = tflm_sample = None
    if data:
        x, y, ds_name, split = _eval_data(data, data_root, classes, kind, spec, samples)
        if tflm and kind == "image":  # a real image for the generated main.cc
            tflm_sample = _first_image(data, data_root, classes, spec, split)
    out = Path(out)
    source_sha = sha256_file(paths[0])
    _check_out_dir(out, source_sha, force, log)

    with staged_directory(out) as stage:
        artifacts, outputs = [], []
        probe = x if x is not None else np.zeros(probe_shape, np.float32)
        for p, io, layout in zip(paths, ios, layouts):
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
        # The reference of an imported bundle is its float file (the first fp32 one; else the first file):
        # int8 files are measured against it as exported ones are against PyTorch.
        ref_i = next((i for i, a in enumerate(artifacts) if a["precision"] == "fp32"), 0)
        for rec, raw in zip(artifacts, outputs):
            if x is None:
                rec["verified"] = None
                continue
            acc = round(float((raw.argmax(1) == y).mean()), 6)
            ref_acc = round(float((outputs[ref_i].argmax(1) == y).mean()), 6)
            v = {"dataset": ds_name, "split": split, "samples": int(len(y)), "accuracy": acc, "max_abs_diff": None,
                 "top1_agreement": None, "reference": artifacts[ref_i]["file"], "reference_accuracy": ref_acc,
                 "drop_points": round(100.0 * (ref_acc - acc), 3)}
            if len(artifacts) > 1:
                v["agreement_with"] = artifacts[0]["file"]
                v["agreement_with_first"] = round(float((raw.argmax(1) == outputs[0].argmax(1)).mean()), 6)
            rec["verified"] = v
            log(f"{rec['file']}: accuracy {100 * v['accuracy']:.2f}% on {len(y)} {ds_name} {split} samples"
                + (f", top-1 agreement with {artifacts[0]['file']} {100 * v['agreement_with_first']:.2f}%"
                   if len(artifacts) > 1 else ""))
        manifest = {
            "schema": SCHEMA, "name": name or out.name, "task": "classification", "classes": classes,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": {"name": paths[0].stem, **_graph_counts(paths[0]), "kwargs": {}},
            "input": spec, "artifacts": artifacts,
            "source": {"checkpoint": None, "imported": [p.name for p in paths], "sha256": source_sha,
                       "dataset": ds_name, "accuracy": None, "labels_format": labels_format,
                       "teachable_machine": teachable, "normalization": normalization,
                       **({"normalization_note": note} if note else {})},
            "verification": {"dataset": ds_name, "split": split, "samples": int(len(y)) if y is not None else 0,
                             "max_drop_points": None, "accuracy_measured": x is not None},
            "calibration": None, "samples": [], "tool_versions": tool_versions(),
        }
        if tflm:
            from .tflm import tflm_version
            from .tflm_bundle import stage_tflm

            manifest["tflm"] = stage_tflm(stage, manifest, x=x, y=y, dataset=ds_name, split=split, max_drop=1.0,
                                          device=device, sample=tflm_sample, source=tflm, log=log)
            manifest["tool_versions"]["tflite-micro"] = tflm_version()
        from .report import write_report

        write_report(stage, manifest)
        write_manifest(stage, manifest)
    log(f"bundle written: {out}" + ("" if data else " (accuracy not measured: pass --data, or later "
                                               f"`edgecnn verify {out} --data D --write`)"))
    return out
