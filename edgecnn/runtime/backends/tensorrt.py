"""TensorRT backend: runs an engine built on this device by `edgecnn build-engine`.

UNVERIFIED: written against the TensorRT 10 Python API (named I/O tensors, execute_async_v3) and
cuda-python's runtime bindings for device buffers, but never run by this project's tests, which
have no NVIDIA GPU. The engine's I/O is the ONNX graph's: float32 NCHW in, float32 logits out.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from ...bundle import Artifact
from ...errors import EdgeCNNError
from . import Backend


def _import(names: tuple[str, ...], hint: str):
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise EdgeCNNError(hint)


def _check(result):
    """cuda-python calls return (err, *values); raise on a CUDA error, return the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise EdgeCNNError(f"CUDA error {err}")
    return values[0] if len(values) == 1 else values


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, artifact: Artifact, threads: int | None = None, engine: Path | None = None,
                 **options: Any):
        super().__init__(artifact, threads)
        self.trt = _import(("tensorrt", "tensorrt_rtx"),
                           "TensorRT is not installed (on a Jetson: apt install python3-libnvinfer)")
        self.cudart = _import(("cuda.bindings.runtime", "cuda.cudart"),
                              "TensorRT needs cuda-python for device buffers: pip install cuda-python")
        engine = Path(engine or artifact.path)
        if not engine.is_file():
            raise EdgeCNNError(f"TensorRT engine not found: {engine} (build it with edgecnn build-engine)")
        trt, cudart = self.trt, self.cudart
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(engine.read_bytes())
        if self.engine is None:
            raise EdgeCNNError(
                f"{engine}: TensorRT cannot load this engine (built for another GPU or TensorRT version?)"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.input_name, self.output_name = inputs[0], outputs[0]
        in_dtype = trt.nptype(self.engine.get_tensor_dtype(self.input_name))
        out_dtype = trt.nptype(self.engine.get_tensor_dtype(self.output_name))
        self.check_io(tuple(self.engine.get_tensor_shape(self.input_name)), in_dtype, out_dtype)
        self._out_dtype = np.dtype(out_dtype)
        self.stream = _check(cudart.cudaStreamCreate())
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        self.version = trt.__version__
        self.details = {"engine": engine.name}

    def _device_buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _check(self.cudart.cudaFree(ptr))
            ptr = _check(self.cudart.cudaMalloc(nbytes))
            self._buffers[name] = (ptr, nbytes)
            self.context.set_tensor_address(name, int(ptr))
        return int(ptr)

    def run_raw(self, x: np.ndarray) -> np.ndarray:
        cudart, kinds = self.cudart, self.cudart.cudaMemcpyKind
        self.context.set_input_shape(self.input_name, tuple(x.shape))
        out = np.empty(tuple(self.context.get_tensor_shape(self.output_name)), self._out_dtype)
        d_in = self._device_buffer(self.input_name, x.nbytes)
        d_out = self._device_buffer(self.output_name, out.nbytes)
        _check(cudart.cudaMemcpyAsync(d_in, x.ctypes.data, x.nbytes, kinds.cudaMemcpyHostToDevice, self.stream))
        if not self.context.execute_async_v3(int(self.stream)):
            raise EdgeCNNError("TensorRT execution failed")
        _check(cudart.cudaMemcpyAsync(out.ctypes.data, d_out, out.nbytes, kinds.cudaMemcpyDeviceToHost, self.stream))
        _check(cudart.cudaStreamSynchronize(self.stream))
        return out

    def close(self) -> None:
        for ptr, _ in self._buffers.values():
            self.cudart.cudaFree(ptr)
        self._buffers.clear()
        if getattr(self, "stream", None) is not None:
            self.cudart.cudaStreamDestroy(self.stream)
            self.stream = None
