"""Profile a bare .onnx / .tflite file (like trtexec --onnx or benchmark_model --graph): no bundle needed.

Device side (no torch): the file's input/output come from the engine that will run it (onnxruntime's
session, LiteRT's interpreter). A throw-away bundle around the file (a hard link or copy in a
temporary directory) lets `profile_bundle` measure it exactly as it measures bundles. Any input and
output shape and dtype is taken: a 4-D input with 1 or 3 channels first or last is an image, anything
else (a [1, 640] autoencoder, a [1, 49, 10, 1] audio model) a features tensor; outputs need not be
class scores. Like trtexec and benchmark_model, the input is seeded random data in the file's own
range (`random_input`): latency does not depend on its values. Parameters and MACs are counted from
the graph (`graph_count.py`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from ..bundle import SCHEMA, artifact_record, write_manifest
from ..errors import EdgeCNNError
from ..utils import first_line

_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int8)": "int8",
              "tensor(uint8)": "uint8"}


def input_layout(where: str, shape: list, channels: int | None = None, fmt: str = "onnx") -> tuple[str, int, tuple]:
    """(layout, channels, (H, W)) of a 4-D image input: the channel axis (1 or 3) is first or last.

    Ambiguous shapes (3x3x3) follow the format's convention (ONNX NCHW, TFLite NHWC); H/W may be None
    (dynamic)."""
    if len(shape) != 4:
        raise EdgeCNNError(f"{where}: input has shape {shape}; an image classifier takes a 4-D batch")
    candidates = []
    if shape[1] in (1, 3) and (channels is None or shape[1] == channels):
        candidates.append(("NCHW", shape[1], (shape[2], shape[3])))
    if shape[3] in (1, 3) and (channels is None or shape[3] == channels):
        candidates.append(("NHWC", shape[3], (shape[1], shape[2])))
    if len(candidates) == 2:
        candidates = [c for c in candidates if c[0] == ("NHWC" if fmt == "tflite" else "NCHW")]
    if not candidates:
        said = f" (channels {channels})" if channels else ""
        raise EdgeCNNError(f"{where}: input shape {shape} has no channel axis of 1 or 3{said} first or last")
    return candidates[0]


def _onnx_record(path: Path) -> tuple[dict, dict, list, list]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise EdgeCNNError(f"{path}: onnxruntime cannot load this file ({first_line(e, 120)})") from None
    ins, outs = sess.get_inputs(), sess.get_outputs()
    if len(ins) != 1 or len(outs) != 1:
        raise EdgeCNNError(f"{path}: has {len(ins)} inputs and {len(outs)} outputs; expected one of each")

    def rec(t) -> dict:
        if t.type not in _ORT_TYPES:
            raise EdgeCNNError(f"{path}: tensor '{t.name}' is {t.type}; supported: float32, float16, int8, uint8")
        return {"name": t.name, "dtype": _ORT_TYPES[t.type], "quant": None}

    def dims(t) -> list:
        return [d if isinstance(d, int) else None for d in t.shape]

    return rec(ins[0]), {**rec(outs[0]), "kind": "logits"}, dims(ins[0]), dims(outs[0])


def _tflite_record(path: Path) -> tuple[dict, dict, list, list]:
    from ..runtime.backends.litert import _interpreter_class

    cls, _ = _interpreter_class()
    try:
        it = cls(model_path=str(path))
    except (ValueError, RuntimeError) as e:
        raise EdgeCNNError(f"{path}: LiteRT cannot load this file ({first_line(e, 120)})") from None
    ins, outs = it.get_input_details(), it.get_output_details()
    if len(ins) != 1 or len(outs) != 1:
        raise EdgeCNNError(f"{path}: has {len(ins)} inputs and {len(outs)} outputs; expected one of each")

    def rec(d: dict) -> dict:
        dt = np.dtype(d["dtype"]).name
        scale, zero = d.get("quantization", (0.0, 0))
        quant = {"scale": float(scale), "zero_point": int(zero)} if dt in ("int8", "uint8") and scale else None
        return {"name": d["name"], "dtype": dt, "quant": quant}

    return (rec(ins[0]), {**rec(outs[0]), "kind": "logits"}, [int(v) for v in ins[0]["shape"]],
            [int(v) for v in outs[0]["shape"]])


@contextlib.contextmanager
def bare_bundle(file: str | Path) -> Iterator[Path]:
    """A temporary bundle directory around one model file (removed afterwards)."""
    path = Path(file)
    if not path.is_file():
        raise EdgeCNNError(f"model file not found: {path}")
    fmt = {".onnx": "onnx", ".tflite": "tflite"}.get(path.suffix.lower())
    if fmt is None:
        raise EdgeCNNError(f"{path}: not a bundle directory, an .onnx or a .tflite file")
    inp, out, in_shape, out_shape = (_onnx_record if fmt == "onnx" else _tflite_record)(path)
    spec, layout = _input_block(path, in_shape, fmt)
    classes = int(np.prod([d for d in out_shape[1:] if d])) if len(out_shape) > 1 else 1
    precision = "int8" if {inp["dtype"], out["dtype"]} & {"int8", "uint8"} else \
        "fp16" if "float16" in (inp["dtype"], out["dtype"]) else "fp32"
    with tempfile.TemporaryDirectory(prefix="edgecnn-bare-") as tmp:
        stage = Path(tmp) / path.stem
        stage.mkdir()
        # The file, and ONNX external-data files beside it (torch.onnx.export writes NAME.onnx.data).
        for f in [path, *sorted(path.parent.glob(path.name + ".*"))]:
            try:
                os.link(f, stage / f.name)
            except OSError:  # another file system
                shutil.copyfile(f, stage / f.name)
        rec = artifact_record(stage, path.name, format=fmt, precision=precision, layout=layout, input=inp,
                              output=out, verified=None)
        from .graph_count import count_graph

        counts = count_graph(path)
        write_manifest(stage, {
            "schema": SCHEMA, "name": path.name, "task": "classification",
            "classes": [str(i) for i in range(max(1, classes))], "created": "",
            "model": {"name": path.stem, "params": counts["params"], "macs": counts["macs"],
                      "counted_from": counts["counted_from"], "kwargs": {}},
            "input": spec, "artifacts": [rec], "source": {"file": str(path.resolve())}, "samples": [],
        })
        yield stage


def _input_block(path: Path, shape: list, fmt: str) -> tuple[dict, str]:
    """(manifest input block, artifact layout): an image when the shape is one, else a features tensor."""
    if len(shape) == 4:
        try:
            layout, channels, (h, w) = input_layout(str(path), shape, fmt=fmt)
        except EdgeCNNError:
            pass
        else:
            if h is None or w is None:
                raise EdgeCNNError(f"{path}: input size is dynamic ({shape}); export it with a fixed height "
                                   "and width")
            return {"height": int(h), "width": int(w), "channels": int(channels),
                    "color": "GRAY" if channels == 1 else "RGB", "resize": "stretch", "interpolation": "area",
                    "scale": 1.0 / 255.0, "mean": [0.0] * channels, "std": [1.0] * channels}, layout
    if len(shape) < 2 or any(d is None or d < 1 for d in shape[1:]):
        raise EdgeCNNError(f"{path}: input shape {shape} has dynamic or missing dimensions besides the batch; "
                           "export it with a fixed shape")
    return {"kind": "features", "shape": [int(d) for d in shape[1:]]}, "ND"


def random_input(bundle_dir: Path, batch: int) -> tuple[np.ndarray, str]:
    """Seeded random input in the file's own dtype, layout and range (what trtexec / benchmark_model feed).

    int8 / uint8: uniform over the whole integer range (everything the quantization can represent);
    float: uniform in [0, 1) (pixels scaled to [0, 1], the importer's default assumption)."""
    from ..bundle import Bundle

    if batch < 1:
        raise EdgeCNNError(f"--batch must be at least 1, got {batch}")
    b = Bundle.load(bundle_dir)
    art = b.artifacts[0]
    spec = b.input
    if spec.get("kind") == "features":
        shape = tuple(spec["shape"])
    else:
        c, h, w = spec["channels"], spec["height"], spec["width"]
        shape = (h, w, c) if art.layout == "NHWC" else (c, h, w)
    dtype = np.dtype(art.info["input"]["dtype"])
    rng = np.random.default_rng(0)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        x = rng.integers(info.min, int(info.max) + 1, size=(batch, *shape), dtype=dtype)
        return x, f"seeded random {dtype.name} over [{info.min}, {info.max}] (bare file)"
    return rng.random((batch, *shape), dtype=np.float32).astype(dtype), f"seeded random {dtype.name} in [0, 1) (bare file)"
