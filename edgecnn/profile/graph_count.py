"""Parameters and multiply-accumulates counted from a model file's graph (ONNX or TFLite), no torch.

The same convention as `edgecnn.models.count_macs` (conv and fully connected layers, per sample):
  conv:            output elements x kernel height x kernel width x input channels per group
  fully connected: output elements x input features        (MatMul / Gemm / FULLY_CONNECTED / BATCH_MATMUL)
Parameters are the elements of the graph's constant weight tensors (weights and biases; in quantized
files the int8 weights and int32 biases, not their scales and zero points, nor shape constants).

TFLite is read through LiteRT's interpreter (the device's own engine); ONNX through the `onnx` package
with its shape inference (a host-side package: without it the ONNX counts are None, said so).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

_TFLITE_WEIGHT_OPS = {"CONV_2D": (1, 2), "DEPTHWISE_CONV_2D": (1, 2), "FULLY_CONNECTED": (1, 2),
                      "TRANSPOSE_CONV": (1, 3), "CONV_3D": (1, 2), "BATCH_MATMUL": (1,)}
_ONNX_QPARAMS = {"QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2), "QLinearConv": (1, 2, 4, 5, 6, 7),
                 "QLinearMatMul": (1, 2, 4, 5, 6, 7), "DynamicQuantizeLinear": ()}


def count_graph(path: str | Path) -> dict:
    """{"params", "macs", "counted_from"} of an .onnx or .tflite file; counts None when they cannot be read."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".tflite":
            params, macs = _tflite_counts(path)
            return {"params": params, "macs": macs, "counted_from": "the TFLite graph (LiteRT interpreter)"}
        params, macs = _onnx_counts(path)
        return {"params": params, "macs": macs, "counted_from": "the ONNX graph (onnx shape inference)"}
    except ImportError as e:
        return {"params": None, "macs": None, "counted_from": f"not counted: {e.name} is not installed here"}
    except Exception as e:  # noqa: BLE001 - counting is a report extra: an unreadable graph never stops the caller
        return {"params": None, "macs": None, "counted_from": f"not counted: {type(e).__name__}: {str(e)[:120]}"}


def _tflite_counts(path: Path) -> tuple[int, int]:
    from ..runtime.backends.litert import _interpreter_class

    cls, _ = _interpreter_class()
    it = cls(model_path=str(path))
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    ops = it._get_ops_details()
    produced = {int(o) for op in ops for o in op["outputs"]}
    graph_inputs = {d["index"] for d in it.get_input_details()}
    const = {i for i in tensors if i not in produced and i not in graph_inputs}
    weights: set[int] = set()
    macs = 0
    for op in ops:
        name, ins, outs = op["op_name"], [int(i) for i in op["inputs"]], [int(o) for o in op["outputs"]]
        for k in _TFLITE_WEIGHT_OPS.get(name, ()):
            if k < len(ins) and ins[k] in const:
                weights.add(ins[k])
        if name not in _TFLITE_WEIGHT_OPS or not outs:
            continue
        out = int(np.prod(tensors[outs[0]]["shape"][1:]))  # per sample
        w = [int(v) for v in tensors[ins[1]]["shape"]]
        if name == "CONV_2D":  # filter [out_c, kh, kw, in_c / groups]
            macs += out * w[1] * w[2] * w[3]
        elif name == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, out_c]
            macs += out * w[1] * w[2]
        elif name == "CONV_3D":  # filter [kd, kh, kw, in_c, out_c]
            macs += out * w[0] * w[1] * w[2] * w[3]
        elif name == "FULLY_CONNECTED":  # weights [units, in]
            macs += out * w[-1]
        elif name == "TRANSPOSE_CONV":  # weights [out_c, kh, kw, in_c]: every input pixel scatters a kernel
            inp = [int(v) for v in tensors[ins[2]]["shape"]]
            macs += int(np.prod(inp[1:])) * w[0] * w[1] * w[2]
        elif name == "BATCH_MATMUL":
            a = [int(v) for v in tensors[ins[0]]["shape"]]
            macs += out * a[-1]
    return int(sum(int(np.prod(tensors[i]["shape"])) for i in weights)), int(macs)


def _onnx_counts(path: Path) -> tuple[int, int]:
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path), load_external_data=False)  # counts need the dims only, not the weights
    try:
        model = shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - a graph onnx cannot infer: counts from the shapes it has
        pass
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    shapes: dict[str, list[int]] = {t.name: list(t.dims) for t in g.initializer}
    for v in [*g.input, *g.value_info, *g.output]:
        dims = v.type.tensor_type.shape.dim
        shapes[v.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in dims]
    const = dict(inits)
    for n in g.node:  # Constant nodes are initializers too
        if n.op_type == "Constant" and n.attribute and n.attribute[0].t.dims is not None:
            const[n.output[0]] = n.attribute[0].t
            shapes[n.output[0]] = list(n.attribute[0].t.dims)
    qparams = {n.input[k] for n in g.node for k in _ONNX_QPARAMS.get(n.op_type, ()) if k < len(n.input)}
    params = {name for n in g.node if n.op_type not in ("Reshape", "Shape", "Constant", "Slice", "Unsqueeze",
                                                         "Squeeze", "Expand", "Resize", "Pad", "Transpose")
              for name in n.input if name in const and name not in qparams}
    # A DequantizeLinear weight counts once: its int8 input is the parameter, its float output is not a constant.
    count = 0
    for name in params:
        t = const[name]
        if t.data_type in (onnx.TensorProto.INT64,) and len(t.dims) <= 1:
            continue  # shape-like integer vectors
        count += math.prod(t.dims) if t.dims else 1
    macs = 0
    for n in g.node:
        out = shapes.get(n.output[0]) if n.output else None
        if not out:
            continue
        per_sample = math.prod(out[1:]) if len(out) > 1 else math.prod(out)
        if n.op_type in ("Conv", "QLinearConv", "ConvInteger"):
            w = shapes.get(n.input[3 if n.op_type == "QLinearConv" else 1])
            if w and len(w) >= 3:
                macs += per_sample * math.prod(w[1:])  # [out_c, in_c / groups, kh, kw]
        elif n.op_type in ("Gemm", "MatMul", "QLinearMatMul", "MatMulInteger"):
            a = shapes.get(n.input[0])
            trans_a = any(at.name == "transA" and at.i for at in n.attribute)
            if a:
                macs += per_sample * (a[0] if trans_a and n.op_type == "Gemm" else a[-1])
        elif n.op_type == "ConvTranspose":
            w, x = shapes.get(n.input[1]), shapes.get(n.input[0])
            if w and x and len(w) >= 3:
                macs += math.prod(x[1:]) * math.prod(w[1:])
    return int(count), int(macs)
