"""onnxruntime backend: CPU everywhere; CUDA / TensorRT execution providers when the build has them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ...bundle import Artifact
from ...errors import EdgeCNNError
from ...utils import first_line
from . import Backend

# Preferred order; only those present in this onnxruntime build are used.
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
_NP_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
}


def _provider_list(ort, requested: list[str] | None, precision: str) -> list:
    available = ort.get_available_providers()
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise EdgeCNNError(
                f"onnxruntime here has no {missing[0]} (available: {', '.join(available)})"
            )
        names = list(requested)
    else:
        names = [p for p in GPU_PROVIDERS if p in available] + ["CPUExecutionProvider"]
    providers: list = []
    for name in names:
        if name == "TensorrtExecutionProvider":
            # Engines take minutes to build on a Jetson: cache them across runs.
            cache = Path(os.environ.get("EDGECNN_CACHE", Path.home() / ".cache" / "edgecnn")) / "ort-trt"
            cache.mkdir(parents=True, exist_ok=True)
            providers.append((name, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
                                     "trt_fp16_enable": precision == "fp16"}))
        else:
            providers.append(name)
    return providers


class OnnxRuntimeBackend(Backend):
    """An ONNX artifact in an onnxruntime InferenceSession (NCHW, float or QDQ-int8 with float I/O)."""

    name = "onnxruntime"

    def __init__(self, artifact: Artifact, threads: int | None = None, providers: list[str] | None = None,
                 **options: Any):
        super().__init__(artifact, threads)
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads is not None:
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(artifact.path), so, providers=_provider_list(ort, providers, artifact.precision)
            )
        except Exception as e:  # onnxruntime raises its own types for invalid/corrupt files
            raise EdgeCNNError(f"{artifact.path}: onnxruntime cannot load this model ({first_line(e)})") from None
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name, self.output_names = inp.name, [out.name]
        shape = tuple(d if isinstance(d, int) else -1 for d in inp.shape)
        self.check_io(shape, _NP_TYPES.get(inp.type, np.float64), _NP_TYPES.get(out.type, np.float64))
        self.version = ort.__version__
        self.details = {"providers": self.session.get_providers()}

    def run_raw(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(self.output_names, {self.input_name: x})[0]
