"""`edgecnn profile`: cold start, then latency percentiles per configuration (no torch here).

Method, per configuration (artifact x backend x threads):
  1. load: time `open_backend` (file read, session/interpreter creation, graph optimisation);
  2. prepare one real input once (the bundle's sample images, preprocessed as the runtime does), so layout
     changes and int8 quantization of the input are not timed as model time;
  3. first inference (cold), then `warmup` untimed runs;
  4. `runs` timed calls of `backend.run_raw` (or as many as fit in `duration` seconds), each timed alone
     with perf_counter_ns, so percentiles are of single inferences;
  5. resident memory sampled with psutil between runs (or the process peak from getrusage);
  6. optionally, a per-operator breakdown in a separate profiling session (profilers slow every run).
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..bundle import Artifact, Bundle
from ..errors import EdgeCNNError
from ..labels import config_label, threads_label
from ..preprocess import load_sample, model_input_shape, preprocess_item
from ..runtime.backends import (
    BACKENDS,
    FORMAT_OF,
    INSTALL_HINT,
    available_backends,
    backend_precisions,
    open_backend,
    select,
)
from .environment import environment_record, temperatures
from .perop import per_op_profile
from .report import new_report
from .stats import latency_stats, throughput

PRECISIONS = ("fp32", "fp16", "int8", "bf16")
DEFAULT_RUNS = 200
DEFAULT_WARMUP = 20
PER_OP_RUNS = 50


# ---------------------------------------------------------------- progress and memory


class Progress:
    """A progress bar on stderr, only when stderr is a terminal: tqdm when installed, else a plain counter.

    Piped or redirected (logs, CI), nothing is drawn: a bar's carriage returns would be debris there.
    `total` is in runs or seconds.
    """

    def __init__(self, total: float, desc: str, unit: str, enabled: bool = True):
        self.total, self.desc, self.unit = total, desc, unit
        self.enabled = enabled and _stderr_is_tty()
        self.done, self._last_pct = 0.0, -1
        self._bar = None
        if not self.enabled:
            return
        try:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr, mininterval=0.25,
                             disable=None)
        except ImportError:
            pass

    def update(self, n: float) -> None:
        if not self.enabled:
            return
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        pct = int(100 * min(self.done / self.total, 1.0)) if self.total else 100
        if pct // 10 != self._last_pct // 10:
            print(f"\r{self.desc}: {pct}%", end="", file=sys.stderr, flush=True)
            self._last_pct = pct

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            print("\r\033[K", end="", file=sys.stderr, flush=True)  # wipe the counter's line


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


class MemoryMeter:
    """Resident memory in MB: current RSS via psutil, or only the process's peak via getrusage."""

    def __init__(self) -> None:
        try:
            import psutil

            self._proc = psutil.Process()
            self.method = "psutil"
        except ImportError:
            self._proc = None
            self.method = "getrusage"
        self.peak: float | None = None

    def sample(self) -> float | None:
        if self._proc is not None:
            rss = self._proc.memory_info().rss / 1e6
        else:
            import resource

            # ru_maxrss is KiB on Linux (bytes on macOS): the process's lifetime peak, not the current RSS.
            scale = 1 if sys.platform == "darwin" else 1024
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e6
        self.peak = rss if self.peak is None else max(self.peak, rss)
        return rss


# ---------------------------------------------------------------- inputs and configurations


def bundle_inputs(bundle: Bundle, batch: int) -> tuple[np.ndarray, str]:
    """A float32 NCHW batch of real images: the bundle's sample PNGs, else calib.npz, else seeded noise."""
    if batch < 1:
        raise EdgeCNNError(f"--batch must be at least 1, got {batch}")
    spec = bundle.input
    files = [bundle.path / s["file"] for s in bundle.manifest.get("samples") or [] if isinstance(s, dict)]
    files = [f for f in files if f.is_file()]
    if files:
        images = [preprocess_item(load_sample(str(f), spec), spec, "BGR") for f in files]
        x = np.stack([images[i % len(images)] for i in range(batch)])
        return x, f"bundle sample images ({len(files)})"
    calib = bundle.path / "calib.npz"
    if calib.is_file():
        with np.load(calib) as z:
            data = z["x"].astype(np.float32)
        return data[np.arange(batch) % len(data)], "calib.npz"
    shape = (batch, *(spec["shape"] if spec.get("kind") == "features" else model_input_shape(spec)))
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32), "random normal (no samples in bundle)"


def _precisions(precision: str | None) -> tuple[str, ...]:
    if precision in (None, "all", "auto"):
        return PRECISIONS
    if precision not in PRECISIONS:
        raise EdgeCNNError(f"unknown precision '{precision}'; choose from all, {', '.join(PRECISIONS)}")
    return (precision,)


def plan_configurations(bundle: Bundle, backend: str = "auto", precision: str | None = "all"
                        ) -> tuple[list[tuple[Artifact, str, dict]], list[dict]]:
    """[(artifact, backend name, open options)] to profile, and the skipped ones with a reason.

    backend "auto" profiles every artifact on every installed backend that reads its format (onnxruntime and
    OpenVINO for ONNX, LiteRT for TFLite; OpenVINO's bf16 hint on the fp32 ONNX where the CPU has bf16) and
    TensorRT engines built for this bundle; a backend that is not installed is listed as skipped.
    """
    if backend not in ("auto", *BACKENDS):
        raise EdgeCNNError(f"unknown backend '{backend}'; choose from auto, {', '.join(BACKENDS)}")
    wanted = _precisions(precision)
    present = available_backends()
    names = [b for b in BACKENDS if b != "tensorrt"] if backend == "auto" else [backend]
    if backend == "auto" and present["tensorrt"] and (bundle.path / "engines").is_dir():
        names.append("tensorrt")
    configs: list[tuple[Artifact, str, dict]] = []
    skipped: list[dict] = []
    for name in names:
        if name == "tensorrt":
            for p in wanted:
                try:
                    sel = select(bundle, "tensorrt", p)
                except EdgeCNNError as e:
                    if backend == "tensorrt" and len(wanted) == 1:
                        raise
                    skipped.append({"artifact": f"engine ({p})", "backend": name, "reason": str(e)})
                    continue
                configs.append((sel.artifact, name, {"engine": sel.engine}))
            continue
        arts = [a for a in bundle.find(FORMAT_OF[name]) if a.precision in wanted]
        if name == "openvino" and "bf16" in wanted and present[name] and "bf16" in backend_precisions(bundle, name):
            # bf16 = the fp32 ONNX file with OpenVINO's bf16 inference hint (CPUs with native bf16 only)
            configs.append((bundle.find("onnx", "fp32")[0], name, {"inference_precision": "bf16"}))
        if not present[name]:
            if backend != "auto":
                select(bundle, name, "auto")  # raises the runtime's one-line "not installed" message
            reason = f"backend not installed here ({INSTALL_HINT[name]})"
            skipped += [{"artifact": a.info["file"], "backend": name, "reason": reason} for a in arts]
            continue
        configs += [(a, name, {}) for a in arts]
    if not configs:
        have = ", ".join(f"{a.info['file']} ({a.format} {a.precision})" for a in bundle.artifacts) or "none"
        want = "any precision" if len(wanted) > 1 else wanted[0]
        extra = f"; skipped: {skipped[0]['reason']}" if skipped else ""
        raise EdgeCNNError(f"{bundle.path}: nothing to profile for backend {backend}, {want} "
                           f"(artifacts: {have}){extra}")
    return configs, skipped


def parse_threads(value: str | int | Sequence[int] | None) -> list[int | None]:
    """'1,2,4' -> [1, 2, 4]; None -> [None] (the backend's default)."""
    if value is None:
        return [None]
    if isinstance(value, int):
        items: Iterable[Any] = [value]
    elif isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    else:
        items = list(value)
    out: list[int | None] = []
    for v in items:
        try:
            n = int(v)
        except (TypeError, ValueError):
            raise EdgeCNNError(f"--threads must be a comma list of positive integers, got {value!r}") from None
        if n < 1:
            raise EdgeCNNError(f"--threads must be at least 1, got {n}")
        out.append(n)
    if not out:
        raise EdgeCNNError("--threads is empty")
    return list(dict.fromkeys(out))


# ---------------------------------------------------------------- one configuration


def time_runs(run: Callable[[np.ndarray], Any], x: np.ndarray, *, runs: int | None, duration: float | None,
              progress: Progress | None = None, memory: MemoryMeter | None = None) -> np.ndarray:
    """Latency of each call of run(x) in ms: `runs` calls, or as many as fit in `duration` seconds."""
    clock = time.perf_counter_ns
    samples: list[int] = []
    chunk = 25  # progress/memory bookkeeping between chunks, never inside a timed call
    start = clock()
    while True:
        n = chunk if runs is None else min(chunk, runs - len(samples))
        for _ in range(n):
            t0 = clock()
            run(x)
            samples.append(clock() - t0)
        if memory is not None:
            memory.sample()
        elapsed_s = (clock() - start) / 1e9
        if progress is not None:
            progress.update(n if runs is not None else min(elapsed_s, duration or 0.0) - progress.done)
        if runs is not None and len(samples) >= runs:
            break
        if runs is None and elapsed_s >= (duration or 0.0):
            break
    return np.asarray(samples, dtype=np.float64) / 1e6


def profile_configuration(artifact: Artifact, backend: str, threads: int | None, x_nchw: np.ndarray, *,
                          runs: int | None = DEFAULT_RUNS, duration: float | None = None,
                          warmup: int = DEFAULT_WARMUP, per_op: bool = False, progress: bool = True,
                          open_options: dict | None = None, raw: bool = False) -> dict[str, Any]:
    """Profile one artifact on one backend with one thread count; returns a report `results` entry.

    raw: `x_nchw` is already the model's input (its dtype and layout, e.g. a bare file's random input)."""
    memory = MemoryMeter()
    rss_before = memory.sample()
    t0 = time.perf_counter()
    engine = open_backend(artifact, backend, threads, **(open_options or {}))
    load_ms = (time.perf_counter() - t0) * 1e3
    try:
        rss_loaded = memory.sample()
        x = x_nchw if raw else engine.prepare(x_nchw)
        t0 = time.perf_counter()
        engine.run_raw(x)
        first_ms = (time.perf_counter() - t0) * 1e3
        for _ in range(warmup):
            engine.run_raw(x)
        desc = config_label(artifact.info["file"], backend, threads=threads)
        bar = Progress(runs if runs is not None else float(duration or 0), desc, "run" if runs else "s", progress)
        try:
            samples = time_runs(engine.run_raw, x, runs=runs, duration=duration, progress=bar, memory=memory)
        finally:
            bar.close()
        stats = latency_stats(samples)
        op = None
        if per_op:
            op = per_op_profile(engine, artifact.path, x, threads=threads, warmup=min(warmup, 10),
                                runs=min(runs or PER_OP_RUNS, PER_OP_RUNS))
        described = engine.describe()
    finally:
        engine.close()
    batch = int(x_nchw.shape[0])
    return {
        "artifact": artifact.info["file"],
        "format": artifact.format,
        "precision": described.get("precision", artifact.precision),  # bf16: the fp32 file run in bf16
        "backend": backend,
        "backend_version": described.get("version"),
        "threads": threads,
        "batch": batch,
        "options": {k: v for k, v in described.items() if k not in ("backend", "version", "artifact", "precision")},
        "file_size_bytes": artifact.path.stat().st_size,
        "cold_start": {"load_ms": load_ms, "first_inference_ms": first_ms},
        "latency_ms": stats,
        "throughput": throughput(stats, batch),
        "memory": {"rss_before_load_mb": rss_before, "rss_after_load_mb": rss_loaded,
                   "peak_rss_mb": memory.peak, "method": memory.method,
                   # what loading and running this model added to the process (only psutil sees current RSS)
                   "model_rss_mb": memory.peak - rss_before if memory.method == "psutil" else None},
        "temperatures_after": temperatures(Path("/")),
        "samples_ms": [round(float(s), 6) for s in samples],
        "per_op": op,
    }


# ---------------------------------------------------------------- a whole bundle


def profile_bundle(path: str | Path, *, backend: str = "auto", precision: str | None = "all",
                   threads: str | int | Sequence[int] | None = None, runs: int | None = DEFAULT_RUNS,
                   duration: float | None = None, warmup: int = DEFAULT_WARMUP, batch: int = 1,
                   per_op: bool = False, device_profile: str | None = None, progress: bool = True,
                   log: Callable[[str], None] = print, environment_root: str | os.PathLike = "/",
                   raw_input: tuple[np.ndarray, str] | None = None) -> dict:
    """Profile every selected configuration of a bundle and return a report (schema edgecnn.profile/1).

    raw_input: (the model's input itself, how it was made), e.g. `bare.random_input` for a bare file."""
    if duration is not None:
        if duration <= 0:
            raise EdgeCNNError(f"--duration must be positive, got {duration:g}")
        runs = None
    elif runs is None or runs < 1:
        raise EdgeCNNError(f"--runs must be at least 1, got {runs} (zero runs measure nothing)")
    if warmup < 0:
        raise EdgeCNNError(f"--warmup must be >= 0, got {warmup}")
    thread_list = parse_threads(threads)
    bundle = Bundle.load(path)
    configs, skipped = plan_configurations(bundle, backend, precision)
    x, input_source = raw_input if raw_input is not None else bundle_inputs(bundle, batch)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    env = environment_record(environment_root)
    results = []
    for artifact, name, options in configs:
        for t in thread_list:
            log(f"profiling {artifact.info['file']} on {name}, {threads_label(t)}, batch {batch}")
            try:
                results.append(profile_configuration(artifact, name, t, x, runs=runs, duration=duration,
                                                     warmup=warmup, per_op=per_op, progress=progress,
                                                     open_options=options, raw=raw_input is not None))
            except EdgeCNNError as e:
                if len(configs) * len(thread_list) == 1:
                    raise
                skipped.append({"artifact": artifact.info["file"], "backend": name, "reason": str(e)})
                log(f"  skipped: {e}")
    if not results:
        raise EdgeCNNError(f"{bundle.path}: no configuration could be profiled ({skipped[0]['reason']})")
    settings = {"runs": runs, "duration_s": duration, "warmup": warmup, "batch": batch, "per_op": per_op,
                "threads": thread_list, "backend": backend, "precision": precision or "all",
                "device_profile": device_profile, "input": input_source}
    b = {"path": str(bundle.path.resolve()), "name": bundle.name, "model": (bundle.manifest.get("model") or {}).get("name"),
         "input": {"kind": "features", "shape": list(bundle.input["shape"])} if bundle.input.get("kind") == "features"
         else dict(zip(("channels", "height", "width"), model_input_shape(bundle.input))),
         "params": (bundle.manifest.get("model") or {}).get("params"),
         "macs": (bundle.manifest.get("model") or {}).get("macs")}
    return new_report(b, env, settings, results, skipped, created)
