"""`edgecnn build-engine`: a TensorRT engine from a bundle's ONNX, built and cached on the device.

Engines are tied to one GPU and one TensorRT version, so bundles carry ONNX and the engine is
built where it runs (a Jetson: TensorRT ships with JetPack). Precision:

  fp32  model.onnx
  fp16  model.onnx with BuilderFlag.FP16 (full TensorRT), or model.fp16.onnx where the builder is
        strongly typed only (TensorRT-RTX)
  int8  the bundle's TensorRT QDQ ONNX (explicit quantization: scales calibrated on real data at
        export, float biases, zero points 0), see `manifest["tensorrt"]["onnx_int8"]`

Works with NVIDIA's `tensorrt` module, or `tensorrt_rtx` (whose builder also runs on a machine
without a GPU, which is how the export tests prove the ONNX files build). No torch here.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Callable

from ..bundle import Bundle
from ..errors import EdgeCNNError
from ..utils import atomic_write_bytes, atomic_write_json, sha256_file

MODULES = ("tensorrt", "tensorrt_rtx")
ENGINE_DIR = "engines"


def import_tensorrt(prefer: str | None = None):
    """The TensorRT Python module (`tensorrt`, else `tensorrt_rtx`), or one clear error."""
    import importlib

    for name in ([prefer] if prefer else MODULES):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise EdgeCNNError(
        "TensorRT is not installed here (no 'tensorrt' Python module): on a Jetson it comes with JetPack "
        "(apt install python3-libnvinfer); engines can only be built where TensorRT is"
    )


def _device_name() -> str:
    """What the engine is tied to: the board model on Jetson, else the host name."""
    model = Path("/proc/device-tree/model")
    try:
        return model.read_text(errors="replace").strip("\x00\n ") or platform.node()
    except OSError:
        return platform.node()


def _onnx_for(bundle: Bundle, precision: str, strongly_typed: bool) -> tuple[Path, str]:
    """(ONNX file, its manifest sha256) to build `precision` from."""
    trt_block = bundle.manifest.get("tensorrt") or {}
    if precision == "int8":
        rec = trt_block.get("onnx_int8")
        if not rec:
            raise EdgeCNNError(
                f"{bundle.path}: no TensorRT int8 ONNX in this bundle; export with "
                "--formats tensorrt --int8 --calib DATA"
            )
        return bundle.path / rec["file"], rec["sha256"]
    want = "fp16" if precision == "fp16" and strongly_typed else "fp32"
    found = bundle.find("onnx", want)
    if not found:
        hint = " (this TensorRT is strongly typed: export with --fp16)" if want == "fp16" else ""
        raise EdgeCNNError(f"{bundle.path}: no {want} ONNX artifact to build from{hint}")
    return found[0].path, found[0].info["sha256"]


def build_engine(bundle: str | Path, precision: str = "fp32", *, workspace_mb: int = 512, max_batch: int = 1,
                 rebuild: bool = False, module: str | None = None, log: Callable[[str], None] = print) -> Path:
    """Build (or reuse the cached) engine for `precision`; returns the .engine path under BUNDLE/engines/."""
    if precision not in ("fp32", "fp16", "int8"):
        raise EdgeCNNError(f"precision must be fp32, fp16 or int8, got {precision!r}")
    if workspace_mb < 16:
        raise EdgeCNNError(f"--workspace must be at least 16 MB, got {workspace_mb}")
    if max_batch < 1:
        raise EdgeCNNError(f"--max-batch must be at least 1, got {max_batch}")
    b = Bundle.load(bundle)
    trt = import_tensorrt(module)
    strongly_typed = not hasattr(trt.BuilderFlag, "FP16")  # TensorRT-RTX: precision comes from the ONNX
    onnx_path, onnx_sha = _onnx_for(b, precision, strongly_typed)
    if sha256_file(onnx_path) != onnx_sha:
        raise EdgeCNNError(f"{onnx_path}: sha256 does not match the manifest (file corrupt or replaced)")

    tag = f"{trt.__name__}-{trt.__version__}-{platform.machine()}"
    engine_dir = b.path / ENGINE_DIR
    engine_path = engine_dir / f"model.{precision}.b{max_batch}.{tag}.engine"
    meta_path = engine_path.with_suffix(".json")
    meta = {"onnx": onnx_path.name, "onnx_sha256": onnx_sha, "precision": precision, "max_batch": max_batch,
            "tensorrt": f"{trt.__name__} {trt.__version__}", "device": _device_name()}
    if not rebuild and engine_path.is_file() and meta_path.is_file():
        try:
            cached = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            cached = None
        if cached and all(cached.get(k) == v for k, v in meta.items()):
            log(f"cached engine: {engine_path} (use --rebuild to build again)")
            return engine_path

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        first = str(parser.get_error(0)).splitlines()[0] if parser.num_errors else "unknown error"
        raise EdgeCNNError(f"{onnx_path.name}: TensorRT's ONNX parser failed: {first}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if not strongly_typed:
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)  # int8 layers may fall back to fp16, not fp32
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization: scales come from the QDQ nodes
    inp = network.get_input(0)
    shape = tuple(inp.shape)
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, (1, *shape[1:]), (1, *shape[1:]), (max_batch, *shape[1:]))
    config.add_optimization_profile(profile)

    # Timing cache: later builds (other precisions, --rebuild) skip re-timing known kernels.
    cache_path = engine_dir / f"timing.{tag}.cache"
    timing_cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(timing_cache, False)

    t0 = time.perf_counter()
    log(f"building {precision} engine from {onnx_path.name} with {trt.__name__} {trt.__version__} ...")
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EdgeCNNError(f"TensorRT could not build an engine from {onnx_path.name} (see the messages above)")
    atomic_write_bytes(engine_path, bytes(plan))
    cache = config.get_timing_cache()
    cache_bytes = bytes(cache.serialize()) if cache is not None else b""
    if cache_bytes:  # TensorRT-RTX keeps no timing cache (its calls are no-ops)
        atomic_write_bytes(cache_path, cache_bytes)
    atomic_write_json(meta_path, {**meta, "build_seconds": round(time.perf_counter() - t0, 2),
                                  "workspace_mb": workspace_mb})
    log(f"engine written: {engine_path} ({engine_path.stat().st_size / 1024:.0f} KiB, "
        f"{time.perf_counter() - t0:.1f} s)")
    return engine_path
