"""ONNX artifacts: fp32 (dynamic batch, simplified), fp16, and int8 static QDQ.

fp32 goes through torch.onnx.export(dynamo=True) with the weights embedded (no side .data file),
then onnxslim. fp16 is onnxruntime's float16 converter with float32 I/O kept, so the device feeds
the same tensor as for fp32. int8 is onnxruntime's static QDQ quantization with per-channel
weights; a second flavour with symmetric activations and float biases is what TensorRT parses.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np

from ..errors import EdgeCNNError

OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_fp32(model, sample: np.ndarray, path: str | Path, opset: int = OPSET) -> dict:
    """Export `model` (eval mode) to a simplified single-file ONNX with a dynamic batch axis.

    Returns {"opset": ..., "input": name, "output": name}.
    """
    import onnx
    import onnxslim
    import torch

    x = torch.from_numpy(np.ascontiguousarray(sample[:2]))
    batch = torch.export.Dim("batch", min=1, max=1024)
    # The exporter prints progress lines; keep the CLI output to our own summary.
    with contextlib.redirect_stdout(io.StringIO()):
        program = torch.onnx.export(
            model,
            (x,),
            None,
            dynamo=True,
            external_data=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            verbose=False,
        )
    proto = program.model_proto
    slim = onnxslim.slim(proto)
    onnx.checker.check_model(slim)
    onnx.save(slim, str(path))
    return {"opset": opset_of(slim), "input": INPUT_NAME, "output": OUTPUT_NAME}


def opset_of(proto) -> int:
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def convert_fp16(src: str | Path, dst: str | Path) -> None:
    """fp16 weights and compute, float32 inputs/outputs (keep_io_types)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))


class _ArrayReader:
    """onnxruntime CalibrationDataReader over a float32 NCHW array, in small batches."""

    def __init__(self, x: np.ndarray, input_name: str, batch: int = 16):
        self._batches = iter([{input_name: x[i : i + batch]} for i in range(0, len(x), batch)])

    def get_next(self):
        return next(self._batches, None)


def quantize_int8(src: str | Path, dst: str | Path, calib: np.ndarray, input_name: str = INPUT_NAME,
                  tensorrt: bool = False) -> None:
    """Static QDQ int8: per-channel symmetric weights, activations calibrated (min/max) on `calib`.

    onnxruntime flavour: asymmetric activations (measured: fewer top-1 flips than symmetric on
    MobileNetV2) and int32 biases, which its integer Conv/Gemm kernels need. TensorRT flavour
    (`tensorrt=True`): zero-point-0 activations and float biases, the only int8 QDQ TensorRT parses.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if calib is None or len(calib) == 0:
        raise EdgeCNNError("int8 ONNX needs calibration samples (--calib DATA)")
    with tempfile.TemporaryDirectory(prefix="edgecnn-qdq-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Shape inference + graph optimisation (conv/bn fusion) so each conv gets one quantized weight.
        quant_pre_process(str(src), str(prepared))
        quantize_static(
            str(prepared),
            str(dst),
            _ArrayReader(np.ascontiguousarray(calib, dtype=np.float32), input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": tensorrt, "WeightSymmetric": True, "QuantizeBias": not tensorrt},
        )


def run_onnx(path: str | Path, x_nchw: np.ndarray, batch: int = 64) -> np.ndarray:
    """Logits of an ONNX artifact on float32 NCHW input (onnxruntime, CPU, one thread)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: x_nchw[i : i + batch]})[0] for i in range(0, len(x_nchw), batch)]
    return np.concatenate(outs).astype(np.float32)


def io_record(path: str | Path) -> tuple[dict, dict]:
    """Manifest input/output blocks of an ONNX file (float I/O: quant is null)."""
    import onnx

    dtypes = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
              onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "uint8"}
    graph = onnx.load(str(path), load_external_data=False).graph
    inp, out = graph.input[0], graph.output[0]
    return (
        {"name": inp.name, "dtype": dtypes[inp.type.tensor_type.elem_type], "quant": None},
        {"name": out.name, "dtype": dtypes[out.type.tensor_type.elem_type], "quant": None, "kind": "logits"},
    )
