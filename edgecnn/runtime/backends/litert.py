"""LiteRT backend: a .tflite artifact in ai_edge_litert's Interpreter (XNNPACK on CPU), falling back to
tflite_runtime's Interpreter on boards where only that wheel exists. NHWC; int8 I/O for int8 models."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...bundle import Artifact
from ...errors import EdgeCNNError
from ...utils import first_line
from . import Backend, _version


def _interpreter_class() -> tuple[type, str]:
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite_runtime"
    except ImportError:
        raise EdgeCNNError(
            "LiteRT is not installed: pip install ai-edge-litert (or tflite-runtime)"
        ) from None


class LiteRTBackend(Backend):
    """The converted graphs have a fixed batch of 1, so a batch is run one sample at a time."""

    name = "litert"

    def __init__(self, artifact: Artifact, threads: int | None = None, **options: Any):
        super().__init__(artifact, threads)
        interpreter_cls, module = _interpreter_class()
        try:
            # XNNPACK is applied by default; num_threads=None leaves the interpreter's own default.
            self.interpreter = interpreter_cls(model_path=str(artifact.path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise EdgeCNNError(f"{artifact.path}: LiteRT cannot load this model ({first_line(e)})") from None
        inp = self.interpreter.get_input_details()[0]
        out = self.interpreter.get_output_details()[0]
        self._in_index, self._out_index = inp["index"], out["index"]
        self.check_io(tuple(int(d) for d in inp["shape"]), inp["dtype"], out["dtype"])
        self._batch = int(inp["shape"][0])
        self.version = _version(module, "ai-edge-litert" if module == "ai_edge_litert" else "tflite-runtime")
        self.details = {"module": module}

    def run_raw(self, x: np.ndarray) -> np.ndarray:
        it = self.interpreter
        if len(x) == self._batch:
            it.set_tensor(self._in_index, x)
            it.invoke()
            return it.get_tensor(self._out_index)  # get_tensor returns a copy
        outs = []
        for i in range(0, len(x), self._batch):
            it.set_tensor(self._in_index, x[i : i + self._batch])
            it.invoke()
            outs.append(it.get_tensor(self._out_index))
        return np.concatenate(outs)
