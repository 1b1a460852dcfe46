"""TFLite (LiteRT) artifacts through litert-torch: fp32, fp16 weights, full-integer int8.

The model is wrapped with `litert_torch.to_channel_last_io`, so the device feeds NHWC (the
layout TFLite kernels and XNNPACK want) while the network inside stays the trained NCHW one.
int8 is torchao pt2e post-training quantization with litert-torch's PT2EQuantizer (per-channel
symmetric weights, int8 activations) calibrated on real samples; the converted model has int8
input and output tensors, whose scale/zero-point are read back from the file for the manifest.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..errors import EdgeCNNError
from ..utils import atomic_write_bytes, first_line

_DTYPES = {np.float32: "float32", np.float16: "float16", np.int8: "int8", np.uint8: "uint8"}


# Native code that ends the process with exit() inside a conversion (LLVM: "IO failure on output
# stream") skips Python: its staging directory is then removed by the next export (edgecnn.stale).
# A C-level atexit hook calling back into Python crashed every normal exit after finalization
# (SIGSEGV), so there is none; TFLite files are written by Python (atomic_write_bytes) instead.


@contextlib.contextmanager
def _quiet(what: str = "the model"):
    """Keep the CLI readable: litert-torch prints a progress tree and root-logger warnings per
    conversion, and its native libraries write INFO/WARNING lines (oneDNN notice, op counts) straight
    to file descriptor 2, past Python. All of it is held back and shown only if the conversion fails
    (an exception)."""
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    sys.stderr.flush()
    saved_fd = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        failed = True
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                yield
            failed = False
        finally:
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            root.setLevel(level)
            if failed:
                held.seek(0)
                sys.stderr.write(held.read().decode(errors="replace"))


@contextlib.contextmanager
def _linear_over_rows():
    """Convert every nn.Linear on a >= 4-D input as a 2-D one (rows = all leading dims), same numbers.

    litert-torch lowers a Linear over an (N, 1, 1, C) tensor to a rank-4 batch_matmul that its own
    verifier rejects ("'tfl.batch_matmul' op found invalid output rank, expected 3 but got 4"):
    ConvNeXt and Swin at 32 px, whose last stage is a 1x1 map, did not convert before this. Its
    optimizer folds reshapes, so a bias-free Linear (Swin's patch merging) becomes a 1x1 convolution.
    """
    import torch
    import torch.nn as nn

    original = nn.Linear.forward

    def forward(self: nn.Linear, x):
        if x.ndim < 4:
            return original(self, x)
        if self.bias is None:  # lowered to batch_matmul however it is reshaped: a 1x1 convolution instead
            rows = x.reshape(1, -1, 1, x.shape[-1]).permute(0, 3, 1, 2)
            y = torch.nn.functional.conv2d(rows, self.weight[:, :, None, None]).permute(0, 2, 3, 1)
        else:
            y = original(self, x.reshape(-1, x.shape[-1]))
        return y.reshape(*x.shape[:-1], self.out_features)

    nn.Linear.forward = forward
    try:
        yield
    finally:
        nn.Linear.forward = original


def _site_relative(text: str) -> str:
    """Drop the install prefix of source paths in a converter message (…/site-packages/torch/... -> torch/...)."""
    return re.sub(r"\S*/site-packages/", "", text)


def _nhwc(x_nchw: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1)))


def export_tflite(model, sample: np.ndarray, path: str | Path, precision: str = "fp32",
                  calib: np.ndarray | None = None) -> None:
    """Convert `model` (eval mode, NCHW) to a batch-1 NHWC .tflite file at `path`."""
    import torch

    with _quiet():
        import litert_torch
    wrapped = litert_torch.to_channel_last_io(model, args=[0]).eval()
    args = (_nhwc(sample[:1]),)
    if precision not in ("fp32", "fp16", "int8"):
        raise EdgeCNNError(f"unknown TFLite precision '{precision}'")
    try:
        with _quiet(str(path)), torch.no_grad(), _linear_over_rows():
            if precision == "fp32":
                edge = litert_torch.convert(wrapped, args)
            elif precision == "fp16":
                from litert_torch.generative.quantize import quant_recipes

                edge = litert_torch.convert(wrapped, args, quant_config=quant_recipes.full_fp16_recipe())
            else:
                edge = _convert_int8(wrapped, args, calib)
            data = edge.model_content()
    except (EdgeCNNError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as e:  # the converter's own failure (an op it cannot lower): say which step and why
        raise EdgeCNNError(f"{Path(path).name}: litert-torch cannot convert this model to TFLite {precision} "
                           f"({type(e).__name__}: {_site_relative(first_line(e, 300))}); the other formats "
                           "export without it (e.g. --formats onnx)") from None
    # Written by Python, not by the converter's native writer: a full disk is an OSError naming the path.
    atomic_write_bytes(path, data)


def _convert_int8(wrapped, args: tuple, calib: np.ndarray | None):
    import litert_torch
    import torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if calib is None or len(calib) == 0:
        raise EdgeCNNError("int8 TFLite needs calibration samples (--calib DATA)")
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    graph = torch.export.export(wrapped, args).module()
    _mark_residual_adds(graph)
    graph = prepare_pt2e(graph, quantizer)
    # The exported graph is specialised to batch 1, so calibration feeds one sample at a time.
    for i in range(len(calib)):
        graph(_nhwc(calib[i : i + 1]))
    graph = move_exported_model_to_eval(convert_pt2e(graph, fold_quantize=False))
    return litert_torch.convert(graph, args, quant_config=QuantConfig(pt2e_quantizer=quantizer))


def _mark_residual_adds(graph) -> None:
    """Let the quantizer see `x + y` (residual blocks): torch.export leaves `source_fn_stack` unset on
    those aten.add nodes, and litert-torch's "add" annotator finds adds by it; unannotated adds stay
    float in the int8 file (DEQUANTIZE/ADD/QUANTIZE), which is not full-integer (TFLM, int8-only NPUs)."""
    import operator

    import torch

    for node in graph.graph.nodes:
        if node.op == "call_function" and node.target == torch.ops.aten.add.Tensor \
                and not node.meta.get("source_fn_stack"):
            node.meta["source_fn_stack"] = [(node.name, operator.add)]


def _interpreter(path: str | Path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    return it


def _io_block(detail: dict) -> dict:
    dtype = _DTYPES.get(np.dtype(detail["dtype"]).type)
    if dtype is None:
        raise EdgeCNNError(f"unsupported TFLite tensor dtype {detail['dtype']}")
    scale, zero_point = detail["quantization"]
    quant = {"scale": float(scale), "zero_point": int(zero_point)} if dtype in ("int8", "uint8") else None
    return {"name": detail["name"], "dtype": dtype, "quant": quant}


def io_record(path: str | Path) -> tuple[dict, dict]:
    """Manifest input/output blocks read from the converted model itself."""
    it = _interpreter(path)
    inp = _io_block(it.get_input_details()[0])
    out = {**_io_block(it.get_output_details()[0]), "kind": "logits"}
    return inp, out


def run_tflite(path: str | Path, x_nchw: np.ndarray) -> np.ndarray:
    """Logits of a TFLite artifact on float32 NCHW input: NHWC, (de)quantized per the file."""
    it = _interpreter(path)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    x_all = np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1))
    if inp["dtype"] in (np.int8, np.uint8):
        scale, zero = inp["quantization"]
        info = np.iinfo(inp["dtype"])
        x_all = np.clip(np.round(x_all / scale) + zero, info.min, info.max).astype(inp["dtype"])
    else:
        x_all = x_all.astype(inp["dtype"])
    ys = []
    for i in range(len(x_all)):  # the converted graph has a fixed batch of 1
        it.set_tensor(inp["index"], x_all[i : i + 1])
        it.invoke()
        ys.append(it.get_tensor(out["index"]).copy())
    y = np.concatenate(ys)
    if out["dtype"] in (np.int8, np.uint8):
        scale, zero = out["quantization"]
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
    return y.astype(np.float32)
