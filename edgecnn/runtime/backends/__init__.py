"""Inference backends: one small class per engine, all with the same four calls. No torch here.

    backend = open_backend(artifact, "auto", threads=2)
    logits = backend.infer(x_nchw)        # float32 NCHW in, float32 logits out
    # = backend.finish(backend.run_raw(backend.prepare(x_nchw)))

`run_raw` is the bare engine call on input already in the artifact's layout and dtype; `prepare`
does the layout change (NCHW -> NHWC for TFLite) and int8 input quantization from the manifest;
`finish` dequantizes integer outputs. Profiling times `run_raw` alone; the runtime calls `infer`.

Backends: onnxruntime (ONNX), litert (TFLite), tensorrt (engines built from the ONNX on a Jetson/GPU),
openvino (ONNX fp32 / QDQ int8 on the CPU, and fp32 with the bf16 hint: precision "bf16").

Choosing what to run: `Classifier` (and `edgecnn run/classify`) MEASURE by default: see
`edgecnn.runtime.tune` (fastest backend x artifact x threads within the accuracy budget, cached).
`select` below is the rule used without measuring (`tune=False`, `edgecnn profile`'s planning):
  backend "auto": TensorRT on a Jetson when an engine for the bundle was built there
  (`edgecnn build-engine`), else LiteRT on Arm CPUs when the bundle has TFLite artifacts,
  else onnxruntime when it has ONNX artifacts, else whichever installed backend can run the bundle.
  precision "auto": int8 when the bundle has an int8 artifact for that backend whose verified
  accuracy is within 1 point of the fp32 one (the export's default --max-drop), else fp16 on
  TensorRT, else fp32.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...bundle import Artifact, Bundle
from ...errors import EdgeCNNError
from ...preprocess import quantizer

BACKENDS = ("onnxruntime", "litert", "tensorrt", "openvino")
# The artifact format each backend reads (TensorRT engines are built from the bundle's ONNX).
FORMAT_OF = {"onnxruntime": "onnx", "litert": "tflite", "tensorrt": "onnx", "openvino": "onnx"}
# Precisions a caller may ask for; bf16 = OpenVINO running the fp32 ONNX file with its bf16 hint.
PRECISIONS = ("fp32", "fp16", "int8", "bf16")
INSTALL_HINT = {
    "onnxruntime": "pip install onnxruntime (or 'edgecnn[onnx]'; on a Jetson use NVIDIA's onnxruntime-gpu wheel)",
    "litert": "pip install ai-edge-litert (or 'edgecnn[tflite]'; tflite-runtime also works)",
    "tensorrt": "TensorRT comes with JetPack on a Jetson (apt install python3-libnvinfer) or pip install tensorrt",
    "openvino": "pip install openvino (or 'edgecnn[openvino]')",
}
INT8_MAX_DROP_POINTS = 1.0


class Backend:
    """One loaded artifact. Subclasses implement `run_raw` (and set `version`, `details`)."""

    name = "base"

    def __init__(self, artifact: Artifact, threads: int | None = None, **options: Any):
        if threads is not None and threads < 1:
            raise EdgeCNNError(f"threads must be at least 1, got {threads}")
        self.artifact = artifact
        self.threads = threads
        self.version: str | None = None
        self.details: dict[str, Any] = {}
        inp, out = artifact.info["input"], artifact.info["output"]
        self.layout = artifact.layout
        self.input_dtype = np.dtype(inp["dtype"])
        self.input_quant = inp.get("quant") if self.input_dtype.kind in "iu" else None
        self.output_quant = out.get("quant") if np.dtype(out["dtype"]).kind in "iu" else None
        if self.input_dtype.kind in "iu" and self.input_quant is None:
            raise EdgeCNNError(f"{artifact.info['file']}: integer input without quant params in the manifest")
        self._quantize = quantizer(self.input_quant, self.input_dtype) if self.input_quant else None
        self._out_probs = out.get("kind") == "probs"
        # 8-bit outputs dequantize through a 256-entry table indexed by the raw bytes: the same float32
        # arithmetic as the general path ((q - zero_point) * scale), in one call instead of three.
        self._out_table, self._out_table_dtype = None, np.dtype(out["dtype"])
        if self.output_quant is not None and self._out_table_dtype.itemsize == 1:
            q = self.output_quant
            codes = np.arange(256, dtype=np.uint8).view(self._out_table_dtype)
            table = np.subtract(codes, np.float32(q["zero_point"]), dtype=np.float32)
            table *= np.float32(q["scale"])
            self._out_table = table

    # -- the bare call -------------------------------------------------------------------
    def run_raw(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- conversions around it -----------------------------------------------------------
    def prepare(self, x_nchw: np.ndarray) -> np.ndarray:
        """float32 NCHW -> the artifact's layout and dtype (int8 inputs quantized as at export).

        A features artifact (layout ND) takes its batch in the file's own shape, unchanged."""
        if self.layout == "ND":
            x = x_nchw
        elif x_nchw.ndim != 4:
            raise EdgeCNNError(f"model input must be NCHW (4-D), got shape {tuple(x_nchw.shape)}")
        else:
            x = x_nchw.transpose(0, 2, 3, 1) if self.layout == "NHWC" else x_nchw
        if self.input_quant is not None:
            return self._quantize(x)
        return np.ascontiguousarray(x, dtype=self.input_dtype)

    def finish(self, y: np.ndarray) -> np.ndarray:
        """Raw output -> float32 logits, shape (N, classes) (log-probabilities for kind "probs")."""
        if self.output_quant is None and not self._out_probs and type(y) is np.ndarray and y.dtype == np.float32:
            return y.reshape(len(y), -1)  # the common case, without the general path's copies and lookups
        if self._out_table is not None and type(y) is np.ndarray and y.dtype == self._out_table_dtype:
            y = self._out_table.take(y.view(np.uint8))  # one lookup (see __init__)
            if not self._out_probs:
                return y if y.ndim == 2 else y.reshape(len(y), -1)
        elif self.output_quant is not None:
            q = self.output_quant
            y = np.subtract(y, np.float32(q["zero_point"]), dtype=np.float32)
            y *= np.float32(q["scale"])
        y = np.asarray(y, dtype=np.float32).reshape(len(y), -1)
        if self._out_probs:
            # An imported model that ends in softmax: its log-probabilities are logits whose softmax
            # gives back the same probabilities, so the runtime's softmax is not applied twice.
            y = np.log(np.maximum(y, np.float32(1e-12)))
        return y

    def frame_input(self, spec: dict) -> Callable[[np.ndarray], Any] | None:
        """Optional: a call that takes the model's input image as uint8 pixels, shape (1, H, W, C) with the
        manifest's size and channel count (3: BGR), does the manifest's scale, mean and std, colour order and
        layout inside the engine, and returns what `run_raw` returns. A new call (its own request) each time:
        one per thread. None, the default: the engine takes only the artifact's own input."""
        return None

    def infer(self, x_nchw: np.ndarray) -> np.ndarray:
        return self.infer_prepared(self.prepare(x_nchw))

    def infer_prepared(self, x: np.ndarray) -> np.ndarray:
        """Input already in the artifact's layout and dtype (`prepare`, or `edgecnn.runtime.frame`) -> logits."""
        n = self._fixed_batch
        if n is None or len(x) == n:
            return self.finish(self.run_raw(x))
        # A model file with a fixed batch (e.g. a foreign ONNX exported at batch 1): any batch is run in
        # chunks of that size, the last one padded with copies of its last sample and the padding dropped.
        outs = []
        for i in range(0, len(x), n):
            chunk = x[i : i + n]
            k = len(chunk)
            if k < n:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], n - k, axis=0)])
            outs.append(self.finish(self.run_raw(np.ascontiguousarray(chunk)))[:k])
        return np.concatenate(outs)

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the model file fixes, or None when it takes any batch."""
        return self._fixed_batch

    _fixed_batch: int | None = None  # set by check_io, once

    def describe(self) -> dict[str, Any]:
        """What runs: backend, version, file, precision, threads and backend details."""
        return {
            "backend": self.name,
            "version": self.version,
            "artifact": self.artifact.info["file"],
            "precision": self.artifact.precision,
            "layout": self.layout,
            "threads": self.threads,
            **self.details,
        }

    def close(self) -> None:
        """Release engine resources (GPU memory for TensorRT); CPU backends rely on the GC."""

    def check_io(self, shape: tuple, dtype: np.dtype, out_dtype: np.dtype) -> None:
        """Fail clearly when the model file disagrees with its manifest record (wrong or replaced file)."""
        file = self.artifact.info["file"]
        if np.dtype(dtype) != self.input_dtype:
            raise EdgeCNNError(
                f"{file}: model input dtype is {np.dtype(dtype)}, the manifest says {self.input_dtype}"
            )
        if np.dtype(out_dtype) != np.dtype(self.artifact.info["output"]["dtype"]):
            raise EdgeCNNError(
                f"{file}: model output dtype is {np.dtype(out_dtype)}, the manifest says "
                f"{self.artifact.info['output']['dtype']}"
            )
        self.input_shape = tuple(shape)
        self._fixed_batch = int(shape[0]) if shape and isinstance(shape[0], int) and shape[0] > 0 else None


def _version(module: str, *distributions: str) -> str | None:
    """The installed version of the first of `distributions` found, for the importable `module`.

    Fast path: the wheel's `NAME-VERSION.dist-info` directory beside the module (one directory listing).
    importlib.metadata answers otherwise (egg-info, a Debian package...): importing it, with the email
    parser it reads METADATA with, and its four look-ups cost ~18 ms of every cold start (measured here)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    where = list(spec.submodule_search_locations or []) if spec is not None else []
    if spec is not None and not where and spec.origin:
        where = [spec.origin]
    if where:
        wheels = _dist_infos(os.path.dirname(os.path.abspath(where[0])))
        for dist in distributions:
            found = wheels.get(_canonical(dist), [])
            if len(found) == 1 and found[0]:  # two versions' leftovers: importlib.metadata decides
                return found[0]
    from importlib import metadata  # only here: see above

    for dist in distributions:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


@functools.lru_cache(maxsize=8)
def _dist_infos(site: str) -> dict[str, list[str]]:
    """canonical distribution name -> the versions of its NAME-VERSION.dist-info directories in `site`."""
    out: dict[str, list[str]] = {}
    try:
        names = os.listdir(site)
    except OSError:
        return out
    for n in names:
        if n.endswith(".dist-info"):
            name, _, version = n[: -len(".dist-info")].partition("-")
            out.setdefault(_canonical(name), []).append(version)
    return out


def _canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them (runs of -_. are one separator, case ignored)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def available_backends() -> dict[str, str | None]:
    """name -> version of each backend importable here (None if absent). Imports nothing heavy.

    Looked up once per process (every cold start asked 4 times)."""
    return dict(_installed())


@functools.lru_cache(maxsize=1)
def _installed() -> tuple[tuple[str, str | None], ...]:
    found: dict[str, str | None] = dict.fromkeys(BACKENDS)
    if _has_module("onnxruntime"):
        found["onnxruntime"] = _version("onnxruntime", "onnxruntime", "onnxruntime-gpu",
                                        "onnxruntime-openvino") or "unknown"
    if _has_module("ai_edge_litert"):
        found["litert"] = _version("ai_edge_litert", "ai-edge-litert", "ai-edge-litert-nightly") or "unknown"
    elif _has_module("tflite_runtime"):
        found["litert"] = f"tflite-runtime {_version('tflite_runtime', 'tflite-runtime', 'tflite_runtime') or 'unknown'}"
    for module in ("tensorrt", "tensorrt_rtx"):
        if _has_module(module):
            found["tensorrt"] = f"{module} {_version(module, module, module.replace('_', '-')) or 'unknown'}"
            break
    if _has_module("openvino"):
        found["openvino"] = _version("openvino", "openvino", "openvino-nightly") or "unknown"
    return tuple(found.items())


def is_jetson() -> bool:
    """An NVIDIA Jetson (L4T release file, or the device-tree model says so)."""
    if Path("/etc/nv_tegra_release").is_file():
        return True
    try:
        return "jetson" in Path("/proc/device-tree/model").read_text(errors="replace").lower()
    except OSError:
        return False


def is_arm() -> bool:
    return platform.machine().lower() in ("aarch64", "arm64", "armv7l", "armv8l")


@dataclass
class Selection:
    """What was chosen: the artifact, the backend that runs it, its options and why.

    `engine`: the TensorRT engine file; `options`: extra backend options (the engine, OpenVINO's bf16
    hint); `threads`: the thread count chosen by measurement (None: the caller's or the default rule's);
    `measurement`: the tuner's record when the choice was measured (see `edgecnn.runtime.tune`).
    """

    artifact: Artifact
    backend: str
    precision: str
    engine: Path | None = None
    reason: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None
    measurement: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        """e.g. 'litert int8', 'openvino bf16' (the names the tuner's 'why' text uses)."""
        return f"{self.backend} {self.precision}"


def _engines(bundle: Bundle) -> dict[str, Path]:
    """precision -> engine file built by `edgecnn build-engine` for this TensorRT and CPU arch.

    Engines are named engines/model.{precision}.b{max_batch}.{module}-{version}-{arch}.engine.
    """
    trt = available_backends()["tensorrt"]
    if not trt:
        return {}
    module, _, version = trt.partition(" ")
    tag = f"{module}-{version}-{platform.machine()}"
    found: dict[str, Path] = {}
    for path in sorted((bundle.path / "engines").glob(f"model.*.{tag}.engine")):
        precision = path.name.split(".")[1]
        found.setdefault(precision, path)
    return found


def _int8_favoured(bundle: Bundle, fmt: str) -> bool:
    """The bundle's own measurements: int8 within INT8_MAX_DROP_POINTS of fp32 accuracy."""
    int8, fp32 = bundle.find(fmt, "int8"), bundle.find(fmt, "fp32")
    if not int8:
        return False
    v8 = int8[0].info.get("verified") or {}
    ref = (fp32[0].info.get("verified") or {}).get("accuracy") if fp32 else v8.get("reference_accuracy")
    if v8.get("accuracy") is None or ref is None:
        return False
    return 100.0 * (ref - v8["accuracy"]) <= INT8_MAX_DROP_POINTS


def _auto_precision(bundle: Bundle, backend: str, have: list[str]) -> str:
    fmt = FORMAT_OF[backend]
    if "int8" in have and _int8_favoured(bundle, fmt) or have == ["int8"]:
        return "int8"
    if backend == "tensorrt" and "fp16" in have:
        return "fp16"
    if "fp32" in have:
        return "fp32"
    return have[0]


def backend_precisions(bundle: Bundle, name: str, engines: dict[str, Path] | None = None) -> list[str]:
    """The precisions backend `name` can run for this bundle (TensorRT: the engines built here)."""
    if name == "tensorrt":
        return sorted(engines if engines is not None else _engines(bundle))
    have = sorted({a.precision for a in bundle.find(FORMAT_OF[name])})
    if name == "openvino" and "fp32" in have:
        from .openvino import bf16_supported

        if bf16_supported():
            have.append("bf16")
    return have


def selection_for(bundle: Bundle, name: str, precision: str, engines: dict[str, Path] | None = None,
                  reason: str = "") -> Selection:
    """The Selection that runs `precision` on backend `name` (the artifact, engine or bf16 hint it needs)."""
    if name == "tensorrt":
        engines = engines if engines is not None else _engines(bundle)
        # The engine's I/O is the ONNX graph's: float32 NCHW in, float32 logits out.
        onnx_fp32 = bundle.find("onnx", "fp32") or bundle.find("onnx")
        if not onnx_fp32:
            raise EdgeCNNError(f"{bundle.path}: a TensorRT engine needs the bundle's ONNX artifact")
        info = {**onnx_fp32[0].info, "precision": precision, "file": f"engines/{engines[precision].name}"}
        return Selection(Artifact(bundle.path, info), name, precision, engines[precision], reason,
                         {"engine": engines[precision]})
    if precision == "bf16":  # OpenVINO: the fp32 file with the bf16 inference hint
        return Selection(bundle.find("onnx", "fp32")[0], name, "bf16", None, reason, {"inference_precision": "bf16"})
    return Selection(bundle.find(FORMAT_OF[name], precision)[0], name, precision, None, reason)


def check_choice(backend: str, precision: str) -> None:
    """One clear line for an unknown backend or precision name."""
    if backend not in ("auto", *BACKENDS):
        raise EdgeCNNError(f"unknown backend '{backend}'; choose from auto, {', '.join(BACKENDS)}")
    if precision not in ("auto", *PRECISIONS):
        raise EdgeCNNError(f"unknown precision '{precision}'; choose from auto, {', '.join(PRECISIONS)}")


def select(bundle: Bundle, backend: str = "auto", precision: str = "auto") -> Selection:
    """Pick the artifact and backend by rule (module docstring), without measuring; one clear error if none fits.

    `Classifier` measures instead when backend or precision is "auto" (`edgecnn.runtime.tune.choose`).
    """
    check_choice(backend, precision)
    present = available_backends()
    engines = _engines(bundle) if backend in ("auto", "tensorrt") else {}

    def precisions(name: str) -> list[str]:
        return backend_precisions(bundle, name, engines)

    if backend == "auto":
        order = ["onnxruntime", "litert", "openvino"]
        reason = "x86/other CPU: onnxruntime first"
        if is_arm():
            order = ["litert", "onnxruntime", "openvino"]
            reason = "Arm CPU: LiteRT (XNNPACK) first"
        if is_jetson():
            order.insert(0, "tensorrt")
            reason = "Jetson: TensorRT engine first"
        # lazily: the first backend that fits (OpenVINO's bf16 check would import openvino)
        found = next((n for n in order if present[n] and precisions(n)
                      and (precision == "auto" or precision in precisions(n))), None)
        if found is None:
            formats = sorted({a.format for a in bundle.artifacts})
            installed = [n for n, v in present.items() if v] or ["none"]
            want = "" if precision == "auto" else f" at precision {precision}"
            raise EdgeCNNError(
                f"{bundle.path}: no installed backend can run this bundle{want} (bundle has "
                f"{', '.join(formats) or 'no artifacts'}; installed backends: {', '.join(installed)})"
            )
        name = found
    else:
        name = backend
        reason = "asked for"
        if not present[name]:
            raise EdgeCNNError(f"backend '{name}' is not installed: {INSTALL_HINT[name]}")
        if not precisions(name):
            if name == "tensorrt":
                raise EdgeCNNError(
                    f"{bundle.path}: no TensorRT engine built for this TensorRT ({present[name]}) here; "
                    f"run: edgecnn build-engine {bundle.path} --precision fp16"
                )
            raise EdgeCNNError(f"{bundle.path}: no {FORMAT_OF[name]} artifact for backend '{name}'")

    have = precisions(name)
    chosen = _auto_precision(bundle, name, have) if precision == "auto" else precision
    if chosen not in have:
        extra = ""
        if chosen == "bf16":
            extra = ("; bf16 runs on OpenVINO with a fp32 ONNX artifact, on CPUs with native bf16 "
                     "(AVX512_BF16/AMX: OpenVINO lists BF16 in OPTIMIZATION_CAPABILITIES)")
        raise EdgeCNNError(
            f"{bundle.path}: no {chosen} model for backend '{name}' (available: {', '.join(have) or 'none'}){extra}"
        )
    return selection_for(bundle, name, chosen, engines, reason)


def backend_class(name: str) -> type[Backend]:
    if name == "onnxruntime":
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend
    if name == "litert":
        from .litert import LiteRTBackend

        return LiteRTBackend
    if name == "tensorrt":
        from .tensorrt import TensorRTBackend

        return TensorRTBackend
    if name == "openvino":
        from .openvino import OpenVINOBackend

        return OpenVINOBackend
    raise EdgeCNNError(f"unknown backend '{name}'; choose from auto, {', '.join(BACKENDS)}")


def open_backend(artifact: Artifact, backend: str = "auto", threads: int | None = None,
                 **options: Any) -> Backend:
    """Load one artifact in a backend. "auto": onnxruntime for ONNX, LiteRT for TFLite.

    TensorRT needs `engine=Path` (see `select`, which finds the engine built for the bundle).
    """
    if backend == "auto":
        backend = "litert" if artifact.format == "tflite" else "onnxruntime"
    check_choice(backend, "auto")
    cls = backend_class(backend)
    if FORMAT_OF[backend] != artifact.format:
        raise EdgeCNNError(
            f"backend '{backend}' runs {FORMAT_OF[backend]} artifacts, not {artifact.info['file']} ({artifact.format})"
        )
    if not available_backends()[backend]:
        raise EdgeCNNError(f"backend '{backend}' is not installed: {INSTALL_HINT[backend]}")
    if not artifact.path.is_file():
        raise EdgeCNNError(f"artifact file missing: {artifact.path}")
    return cls(artifact, threads, **options)


def open_bundle(bundle: str | Path | Bundle, backend: str = "auto", precision: str = "auto",
                threads: int | None = None, **options: Any) -> tuple[Bundle, Selection, Backend]:
    """Load a bundle, select its artifact/backend and open it: the one call the runtime and profiler use."""
    b = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    sel = select(b, backend, precision)
    return b, sel, open_backend(sel.artifact, sel.backend, threads, **{**options, **sel.options})


__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "Backend",
    "Selection",
    "available_backends",
    "backend_class",
    "backend_precisions",
    "selection_for",
    "open_backend",
    "open_bundle",
    "select",
]
