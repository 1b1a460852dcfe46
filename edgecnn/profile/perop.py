"""Per-operator latency breakdowns, where the backend can give one (no torch here).

- onnxruntime: its own profiler (SessionOptions.enable_profiling; end_profiling() writes a Chrome-trace
  JSON with one "<node>_kernel_time" event per node per run). Warm-up runs are dropped.
- LiteRT / tflite_runtime: the Python interpreter exposes no op profiler, so the breakdown is reported
  as unavailable with the reason (TFLite's `benchmark_model --enable_op_profiling=true` gives one).
- OpenVINO: the CPU plugin's performance counters (`enable_profiling`, `InferRequest.get_profiling_info()`)
  in a second compilation of the model; real time per executed node.
- TensorRT: an IProfiler attached to the backend's execution context (written against the TensorRT
  Python API; not verified on this machine, which has no GPU).

Every breakdown is {"available": True, "source", "runs", "total_ms_per_run", "by_type": [...],
"top_nodes": [...]} or {"available": False, "reason"}.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_TOP = 10
LITERT_REASON = (
    "LiteRT's Python interpreter has no per-operator profiler; use TFLite's benchmark_model tool with "
    "--enable_op_profiling=true for a per-op breakdown of this .tflite file"
)


def _aggregate(node_ms: dict[str, list[float]], node_type: dict[str, str], runs: int, source: str,
               top: int) -> dict[str, Any]:
    """Per-run time by op type and the slowest `top` nodes, with their share of the summed node time.

    A node's time per run is the median over runs of its summed calls in that run (`runs` runs, each
    node normally called once): robust to the odd preempted run on a busy machine.
    """
    per_node = {n: float(np.median(np.asarray(v).reshape(runs, -1).sum(axis=1))) if len(v) % runs == 0
                else float(np.sum(v)) / runs for n, v in node_ms.items()}
    total = sum(per_node.values())
    by_type: dict[str, dict[str, float]] = defaultdict(lambda: {"ms_per_run": 0.0, "nodes": 0})
    for n, ms in per_node.items():
        t = by_type[node_type.get(n, "?")]
        t["ms_per_run"] += ms
        t["nodes"] += 1
    share = (lambda ms: 100.0 * ms / total) if total > 0 else (lambda ms: 0.0)
    types = sorted(
        ({"op_type": k, "ms_per_run": v["ms_per_run"], "nodes": int(v["nodes"]), "percent": share(v["ms_per_run"])}
         for k, v in by_type.items()),
        key=lambda r: -r["ms_per_run"],
    )
    nodes = sorted(
        ({"name": n, "op_type": node_type.get(n, "?"), "ms_per_run": ms, "percent": share(ms)}
         for n, ms in per_node.items()),
        key=lambda r: -r["ms_per_run"],
    )[:top]
    return {"available": True, "source": source, "runs": runs, "total_ms_per_run": total,
            "by_type": types, "top_nodes": nodes}


def parse_onnxruntime_trace(events: list[dict], warmup: int = 0, top: int = DEFAULT_TOP) -> dict[str, Any]:
    """Aggregate an onnxruntime profile (list of trace events), skipping the first `warmup` runs."""
    runs = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    measured = runs[warmup:]
    if not measured:
        return {"available": False, "reason": "the onnxruntime profile recorded no measured runs"}
    start = measured[0]
    node_ms: dict[str, list[float]] = defaultdict(list)
    node_type: dict[str, str] = {}
    for e in events:
        name = e.get("name", "")
        if e.get("cat") != "Node" or not name.endswith("_kernel_time") or e.get("ts", -1) < start:
            continue
        node = name[: -len("_kernel_time")]
        node_ms[node].append(e["dur"] / 1000.0)  # trace durations are microseconds
        node_type[node] = (e.get("args") or {}).get("op_name", "?")
    if not node_ms:
        return {"available": False, "reason": "the onnxruntime profile has no node events"}
    return _aggregate(node_ms, node_type, len(measured), "onnxruntime profiler (kernel time per node, median of runs)", top)


def profile_onnxruntime(model_path: str | Path, x: np.ndarray, *, threads: int | None, runs: int, warmup: int,
                        providers: list[str] | None = None, top: int = DEFAULT_TOP) -> dict[str, Any]:
    """Run a separate profiling session (profiling slows every run, so the latency numbers never use it)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgecnn-ortprof-") as tmp:
        so = ort.SessionOptions()
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "ort")
        if threads:
            so.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(model_path), so, providers=providers or ["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: x}
        for _ in range(warmup + runs):
            sess.run(None, feed)
        trace = sess.end_profiling()
        with open(trace, encoding="utf-8") as f:
            events = json.load(f)
    return parse_onnxruntime_trace(events, warmup=warmup, top=top)


def profile_tensorrt(backend: Any, x: np.ndarray, *, runs: int, warmup: int, top: int = DEFAULT_TOP) -> dict[str, Any]:
    """Layer times from TensorRT's IProfiler on the backend's execution context (`backend.context`).

    Unverified here (no GPU). Layer types come from the engine inspector when the engine was built
    with detailed profiling verbosity; otherwise each layer is typed by its name only.
    """
    import tensorrt as trt

    context = getattr(backend, "context", None)
    if context is None:
        return {"available": False, "reason": "the TensorRT backend does not expose its execution context"}

    class LayerTimes(trt.IProfiler):
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.ms: dict[str, list[float]] = defaultdict(list)

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.ms[layer_name].append(float(ms))

    for _ in range(warmup):
        backend.run_raw(x)
    profiler = LayerTimes()
    context.profiler = profiler
    try:
        for _ in range(runs):
            backend.run_raw(x)
    finally:
        context.profiler = None
    node_type: dict[str, str] = {}
    try:
        info = json.loads(context.engine.create_engine_inspector().get_engine_information(
            trt.LayerInformationFormat.JSON))
        for layer in info.get("Layers", []):
            if isinstance(layer, dict) and "Name" in layer:
                node_type[layer["Name"]] = layer.get("LayerType", "layer")
    except Exception:  # inspector detail depends on the build's profiling verbosity
        pass
    if not profiler.ms:
        return {"available": False, "reason": "TensorRT reported no layer times"}
    return _aggregate(profiler.ms, node_type, runs, "TensorRT IProfiler (layer time, median of runs)", top)


def profile_openvino(backend: Any, x: np.ndarray, *, runs: int, warmup: int, top: int = DEFAULT_TOP) -> dict[str, Any]:
    """OpenVINO's performance counters (`enable_profiling`) in a second compilation of the same model.

    Profiling adds work to every inference, so the latency numbers never use this compiled model. Each
    measured run's `InferRequest.get_profiling_info()` gives one entry per executed node (`real_time`);
    nodes OpenVINO fused away (status OPTIMIZED_OUT/NOT_RUN) are left out. Op type: the node's type
    (e.g. Convolution, FullyConnected), its kernel (`exec_type`, e.g. jit_avx2_FP32) in the source line.
    """
    from ..runtime.backends.openvino import _ov, core

    ov = _ov()  # imported through the backend's guard (telemetry hidden), before openvino.properties
    import openvino.properties as props

    model = getattr(backend, "model", None)
    if model is None:
        return {"available": False, "reason": "the OpenVINO backend does not expose its model"}
    static = model.clone()
    dims = [d.get_length() if d.is_static else -1 for d in static.input(0).get_partial_shape()]
    if dims and dims[0] == -1:
        static.reshape([int(x.shape[0]), *dims[1:]])
    config = {**backend._config, props.enable_profiling: True}
    request = core().compile_model(static, backend.device, config).create_infer_request()
    tensor = ov.Tensor(np.ascontiguousarray(x), shared_memory=True)
    node_ms: dict[str, list[float]] = defaultdict(list)
    node_type: dict[str, str] = {}
    kernels: dict[str, int] = defaultdict(int)
    executed = ov.ProfilingInfo.Status.EXECUTED
    for i in range(warmup + runs):
        request.set_input_tensor(tensor)
        request.infer()
        if i < warmup:
            continue
        for info in request.get_profiling_info():
            if info.status != executed:
                continue
            node_ms[info.node_name].append(info.real_time.total_seconds() * 1e3)
            node_type[info.node_name] = info.node_type
            if i == warmup:
                kernels[info.exec_type] += 1
    if not node_ms:
        return {"available": False, "reason": "OpenVINO reported no executed nodes"}
    out = _aggregate(node_ms, node_type, runs, "OpenVINO performance counters (real time per node, median of runs)",
                     top)
    out["kernels"] = dict(sorted(kernels.items(), key=lambda kv: -kv[1]))
    return out


def per_op_profile(backend: Any, artifact_path: str | Path, x: np.ndarray, *, threads: int | None, runs: int,
                   warmup: int, top: int = DEFAULT_TOP) -> dict[str, Any]:
    """The per-op breakdown for an opened runtime backend, or the reason there is none."""
    name = getattr(backend, "name", "")
    if name == "onnxruntime":
        providers = None
        session = getattr(backend, "session", None)
        if session is not None:
            providers = list(session.get_providers())
        return profile_onnxruntime(artifact_path, x, threads=threads, runs=runs, warmup=warmup,
                                   providers=providers, top=top)
    if name in ("litert", "tflite_runtime"):
        return {"available": False, "reason": LITERT_REASON}
    if name == "tensorrt":
        return profile_tensorrt(backend, x, runs=runs, warmup=warmup, top=top)
    if name == "openvino":
        return profile_openvino(backend, x, runs=runs, warmup=warmup, top=top)
    return {"available": False, "reason": f"no per-operator profiler for backend '{name}'"}
