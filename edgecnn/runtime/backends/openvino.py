"""OpenVINO backend: the bundle's ONNX artifacts (fp32, or QDQ int8) compiled by OpenVINO's CPU plugin.

    backend = OpenVINOBackend(artifact, threads=2)                         # fp32 kernels
    backend = OpenVINOBackend(artifact, threads=2, inference_precision="bf16")  # fp32 file, bf16 hint

OpenVINO reads ONNX directly (no conversion step). Compiled models are kept in OpenVINO's model cache
under the edgecnn cache dir (`<cache>/openvino`, see `edgecnn.utils.cache_dir`; nothing is written
elsewhere, and an unwritable cache only means compiling each time): a cached tune's cold start loads the
blob instead of compiling. (It was taken out once as a suspect in two full-suite Ctrl-C shutdown
timeouts; tests/test_openvino.py now checks that a process compiling through the cache exits promptly on
SIGINT.) `EDGECNN_OPENVINO_CACHE=0` turns it off. The model is compiled for batch 1
with a static shape (measured faster than the exported dynamic batch: fewer shape checks per call);
other batch sizes get a second, dynamic-batch compilation made on first use.

Settings: `inference_num_threads` = threads, one stream and the LATENCY performance hint (one request
at a time, as the runtime calls it). `inference_precision`: "f32" unless asked otherwise, because on
CPUs with bf16 (AVX512_BF16, AMX) the plugin's own default is bf16, which is not what the export
verified; "bf16" asks for it explicitly (see `bf16_supported`). The precision the compiled model
actually uses is read back and reported in `describe()` (a CPU without bf16 silently keeps f32).
Int8 QDQ artifacts run OpenVINO's low-precision int8 kernels; their I/O stays float32.

Telemetry: `import openvino` sends a usage event to Google Analytics from a forked process
(openvino_telemetry) unless a consent file in the user's home declines it. edgecnn imports OpenVINO
with that package hidden, so OpenVINO falls back to its own no-op stub: no fork (unsafe once other
threads run), no network use on a device. `EDGECNN_OPENVINO_TELEMETRY=1` leaves OpenVINO's own setting
in charge; a process that imported openvino_telemetry before edgecnn keeps it.

Cold start: `import openvino` also imports its model converter (openvino.tools.ovc, with absl and
numpy.ma: ~40 of its ~70 ms by -X importtime here, after numpy and OpenCV); edgecnn hides it for that
import (telemetry off, the default): measured 66 -> 38 ms, 2 cores, quiet. `openvino.convert_model` is
imported on first use instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...bundle import Artifact
from ...errors import EdgeCNNError
from ...preprocess import input_kind
from ...utils import cache_dir, first_line
from . import Backend, _version

_PRECISION_TYPES = ("f32", "bf16", "f16")


_OVC = "openvino.tools.ovc"


def _ov() -> Any:
    hide_ovc = False
    if os.environ.get("EDGECNN_OPENVINO_TELEMETRY") != "1":
        # None in sys.modules makes `import openvino_telemetry` raise ImportError, and every OpenVINO
        # module that sends events then imports openvino.tools.ovc.telemetry_stub instead.
        sys.modules.setdefault("openvino_telemetry", None)
        # openvino/__init__ also imports its model converter (`try: from openvino.tools.ovc import
        # convert_model / except ImportError: pass`): absl, numpy.ma, importlib.metadata..., ~30 ms of every
        # cold start that opens OpenVINO, for a function the runtime never calls. Hidden for that import;
        # `openvino.convert_model` still works, imported on first use (_convert_model below).
        hide_ovc = "openvino" not in sys.modules and _OVC not in sys.modules
    if hide_ovc:
        sys.modules[_OVC] = None  # type: ignore[assignment]
    try:
        import openvino
    except ImportError:
        raise EdgeCNNError("OpenVINO is not installed: pip install openvino (or 'edgecnn[openvino]')") from None
    finally:
        if hide_ovc and sys.modules.get(_OVC, False) is None:
            del sys.modules[_OVC]
    if hide_ovc and "convert_model" not in vars(openvino):
        openvino.__getattr__ = _convert_model  # PEP 562: looked up only for names the module lacks
    return openvino


def _convert_model(name: str) -> Any:
    """`openvino.convert_model`, imported when someone first asks for it (see `_ov`)."""
    if name != "convert_model":
        raise AttributeError(f"module 'openvino' has no attribute {name!r}")
    import openvino
    from openvino.tools.ovc import convert_model

    openvino.convert_model = convert_model
    return convert_model


_CORE: Any = None


def core() -> Any:
    """One `openvino.Core` per process (creating one loads the plugins: tens of ms)."""
    global _CORE
    if _CORE is None:
        _CORE = _ov().Core()
    return _CORE


def _compiled_cache() -> str | None:
    """OpenVINO's compiled-model cache folder under the edgecnn cache dir; None if off or it cannot be made."""
    if os.environ.get("EDGECNN_OPENVINO_CACHE") == "0":
        return None
    path = cache_dir() / "openvino"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return str(path) if os.access(path, os.W_OK) else None


def cpu_capabilities() -> list[str]:
    """The CPU plugin's OPTIMIZATION_CAPABILITIES, e.g. ['FP32', 'INT8', 'BIN', 'EXPORT_IMPORT'] ('BF16' where present)."""
    try:
        return [str(c) for c in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
    except Exception:  # no CPU plugin (odd builds): report nothing rather than fail
        return []


def _cpu_flags() -> set[str] | None:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.partition(":")[2].split())
    except OSError:
        pass
    return None


def bf16_supported() -> bool:
    """Whether this CPU runs bf16 natively: OpenVINO lists BF16 among the CPU plugin's capabilities.

    On x86 the kernel's CPU flags answer (avx512_bf16 or amx_bf16: the CPU plugin's bf16 kernels need
    AVX512_BF16, which every AMX CPU has), so that planning candidates does not import OpenVINO (0.4 s of
    every cold start); elsewhere OpenVINO's own list is asked. tests/test_openvino.py checks both agree here.
    """
    flags = _cpu_flags()
    if flags is not None and "avx2" in flags:
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    return "BF16" in cpu_capabilities()


class OpenVINOBackend(Backend):
    """An ONNX artifact compiled by OpenVINO for the CPU (NCHW, float32 I/O also for QDQ int8)."""

    name = "openvino"

    def __init__(self, artifact: Artifact, threads: int | None = None, inference_precision: str | None = None,
                 device: str = "CPU", **options: Any):
        super().__init__(artifact, threads)
        ov = _ov()
        import openvino.properties as props
        import openvino.properties.hint as hints

        wanted = inference_precision or "f32"
        if wanted not in _PRECISION_TYPES:
            raise EdgeCNNError(f"openvino inference_precision must be one of {', '.join(_PRECISION_TYPES)}, "
                               f"got {wanted!r}")
        self.device = device
        self._config: dict[Any, Any] = {
            hints.performance_mode: hints.PerformanceMode.LATENCY,
            props.num_streams: 1,
            hints.inference_precision: getattr(ov.Type, wanted),
        }
        if threads is not None:
            self._config[props.inference_num_threads] = int(threads)
        blobs = _compiled_cache()
        if blobs is not None:  # a later compile of the same model + options loads the blob
            self._config[props.cache_dir] = blobs
        try:
            self.model = core().read_model(str(artifact.path))
            if len(self.model.inputs) != 1 or len(self.model.outputs) != 1:
                raise EdgeCNNError(f"{artifact.path}: expected one input and one output, the model has "
                                   f"{len(self.model.inputs)} and {len(self.model.outputs)}")
            shape = self.model.input(0).get_partial_shape()
            dims = [d.get_length() if d.is_static else -1 for d in shape]
            static = self.model.clone()
            if dims and dims[0] == -1 and all(d > 0 for d in dims[1:]):
                static.reshape([1, *dims[1:]])
            self._static_batch = self._batch_of(static)
            self.compiled, self.request = self._compile(static)
        except EdgeCNNError:
            raise
        except Exception as e:  # OpenVINO raises RuntimeError for unreadable/unsupported files
            raise EdgeCNNError(f"{artifact.path}: OpenVINO cannot load this model ({first_line(e)})") from None
        compiled = self.compiled
        self.check_io(tuple(dims), compiled.input(0).element_type.to_dtype(),
                      compiled.output(0).element_type.to_dtype())
        self._dynamic: Any = None
        self._Tensor = ov.Tensor
        self._last_x: np.ndarray | None = None
        self._last_request: Any = None
        self._frame_compiled: Any = None  # the model with pixel input (frame_input), compiled on first use
        self.version = _version("openvino", "openvino") or ov.get_version()
        actual = compiled.get_property(hints.inference_precision)
        self.details = {
            "device": device,
            "inference_precision": actual.get_type_name() if hasattr(actual, "get_type_name") else str(actual),
            "threads_used": int(compiled.get_property(props.inference_num_threads)),
        }

    @staticmethod
    def _batch_of(model: Any) -> int | None:
        d = model.input(0).get_partial_shape()[0]
        return d.get_length() if d.is_static else None

    def _compile(self, model: Any) -> tuple[Any, Any]:
        compiled = core().compile_model(model, self.device, self._config)
        return compiled, compiled.create_infer_request()

    def _request_for(self, batch: int) -> Any:
        if self._static_batch is None or batch == self._static_batch:
            return self.request  # compiled with a dynamic batch already, or the batch it was compiled for
        if self._dynamic is None:  # any other batch: one dynamic-batch compilation, made once
            try:
                self._dynamic = self._compile(self.model)[1]
            except Exception as e:
                raise EdgeCNNError(f"{self.artifact.path}: OpenVINO cannot run batch {batch} "
                                   f"({first_line(e)})") from None
        return self._dynamic

    def run_raw(self, x: np.ndarray) -> np.ndarray:
        request = self.request if len(x) == self._static_batch else self._request_for(len(x))
        if x is not self._last_x or request is not self._last_request:
            # shared_memory=True wraps the numpy buffer without a copy (prepare() made it C-contiguous);
            # the same array object again (a profiling loop) keeps its tensor, which shares its memory.
            x = np.ascontiguousarray(x)
            request.set_input_tensor(self._Tensor(x, shared_memory=True))
            self._last_x, self._last_request = x, request
        # infer() returns the outputs copied out of the request's buffers; to_tuple() is the cheap way to
        # the one output (measured: OVDict[0] adds 14%, get_output_tensor().data.copy() 10% on LeNet-5).
        return request.infer().to_tuple()[0]

    def frame_input(self, spec: dict) -> Callable[[np.ndarray], Any] | None:
        """uint8 (1, H, W, C) pixels (BGR when C is 3) -> run_raw's output, through a second compilation of
        the model with OpenVINO's preprocessing steps in front (PrePostProcessor: u8 -> f32, channel swap for
        RGB models, (v - mean / scale) / (std / scale) per channel, NHWC -> NCHW), made on first use and kept.

        The frame path then only resizes: the per-channel lookup into float32 planes (0.1 ms of a 224x224
        frame, one core) becomes part of the compiled graph (0.05 ms more there, on the engine's threads;
        benchmarks/frame_path.py). Float-input NCHW artifacts of image bundles with batch 1 only; the
        arithmetic is the reference's up to float rounding, not bit for bit."""
        if (self.layout != "NCHW" or self.input_dtype != np.float32 or self._static_batch != 1
                or input_kind(spec) != "image" or spec["channels"] not in (1, 3)):
            return None
        if self._frame_compiled is None:
            self._frame_compiled = self._compile(self._with_pixel_input(spec))[0]
        request, tensor = self._frame_compiled.create_infer_request(), self._Tensor
        last: list[Any] = [None]

        def run(x: np.ndarray) -> Any:
            if x is not last[0]:  # the caller's buffer, wrapped once (shared memory, as run_raw does)
                request.set_input_tensor(tensor(x, shared_memory=True))
                last[0] = x
            return request.infer().to_tuple()[0]

        return run

    def _with_pixel_input(self, spec: dict) -> Any:
        ov = _ov()
        from openvino.preprocess import PrePostProcessor

        model = self.model.clone()
        model.reshape([1, spec["channels"], spec["height"], spec["width"]])
        ppp = PrePostProcessor(model)
        ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
        ppp.input().model().set_layout(ov.Layout("NCHW"))
        steps = ppp.input().preprocess().convert_element_type(ov.Type.f32)
        if spec["color"] == "RGB":
            steps.reverse_channels()  # BGR pixels in
        scale = float(spec["scale"])
        steps.mean([float(m) / scale for m in spec["mean"]]).scale([float(d) / scale for d in spec["std"]])
        return ppp.build()

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        if self.details.get("inference_precision") == "bf16":
            d["precision"] = "bf16"  # fp32 file, bf16 kernels
        return d
