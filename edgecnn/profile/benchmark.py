"""`edgecnn benchmark CKPT --data D`: every format x precision available here, measured, in one table.

Host side (it exports, and times PyTorch eager as the baseline row): torch and the export area are
imported inside the functions. Per row: file size, test top-1 measured on the test split through the
runtime backend (or PyTorch), latency p50/p90 of single-image calls after a warm-up (the profiler's
method), FPS (1000 / mean latency), and whether the export verified it within the default 1-point bar.
Backends that are not installed here are listed under "not run", never silently dropped.

Writes OUT/bundle (the exported bundle, reused when a run is resumed), OUT/benchmark.json,
OUT/benchmark.md and OUT/pareto.png (accuracy vs latency, and each row's speed-up over PyTorch eager).
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..bundle import MANIFEST, Bundle
from ..errors import EdgeCNNError
from ..labels import threads_label
from ..utils import atomic_write_json, atomic_write_text, sha256_file
from .environment import environment_record, environment_summary
from .stats import format_ms, latency_stats, throughput

SCHEMA = "edgecnn.benchmark/1"
VERIFIED_MAX_DROP = 1.0  # points of top-1 vs PyTorch: the export's default --max-drop
HEADER = ["format", "precision", "backend", "size MB", "test top-1", "p50 ms", "p90 ms", "FPS", "verified"]


def _export_plan(formats: list[str], int8: bool) -> set[tuple[str, str]]:
    precisions = ["fp32"] + (["int8"] if int8 else [])
    return {(f, p) for f in formats for p in precisions}


def _reusable_bundle(out: Path, source_sha: str, plan: set[tuple[str, str]]) -> bool:
    """A bundle from an interrupted or earlier run of the same checkpoint with every planned artifact."""
    if not (out / MANIFEST).is_file():
        return False
    try:
        bundle = Bundle.load(out)
    except EdgeCNNError:
        return False
    have = {(a.format, a.precision) for a in bundle.artifacts}
    return (bundle.manifest.get("source") or {}).get("sha256") == source_sha and plan <= have


def _time_torch(model: Any, x1: np.ndarray, runs: int, warmup: int) -> dict:
    import torch

    from .profiler import time_runs

    xt = torch.from_numpy(x1)
    with torch.inference_mode():
        for _ in range(warmup):
            model(xt)
        samples = time_runs(model, xt, runs=runs, duration=None)
    return latency_stats(samples)


def _torch_accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    from ..export.verify import accuracy, torch_logits

    return accuracy(torch_logits(model, x), y)


def _backend_accuracy(engine: Any, x: np.ndarray, y: np.ndarray, batch: int = 64) -> float:
    logits = np.concatenate([engine.infer(x[i : i + batch]) for i in range(0, len(x), batch)])
    return float((logits.argmax(1) == y).mean())


def _verified(info: dict) -> str:
    v = info.get("verified") or {}
    drop = v.get("drop_points")
    if drop is None:
        return "no (not verified)"
    return "yes" if drop <= VERIFIED_MAX_DROP else f"no (drop {drop:.2f} pts)"


def format_rows(rows: list[dict]) -> list[list[str]]:
    return [[r["format"], r["precision"], r["backend"], f"{r['size_bytes'] / 1e6:.3f}", f"{100 * r['accuracy']:.2f}%",
             format_ms(r["latency_ms"]["p50"]), format_ms(r["latency_ms"]["p90"]),
             f"{r['throughput']['images_per_s']:.1f}", r["verified"]] for r in rows]


def benchmark_markdown(result: dict) -> str:
    from .report import markdown_table

    s = result["settings"]
    lines = [f"# Benchmark: {result['model']} on {result['dataset']}", "",
             f"- checkpoint: `{result['checkpoint']}`",
             f"- machine: {environment_summary(result['environment'])}",
             f"- {threads_label(s['threads'])}, batch 1, {s['runs']} timed runs after {s['warmup']} warm-up per row; "
             f"test top-1 on {result['test_samples']} {result['dataset']} test images, through each row's backend",
             "- verified: the export's check against PyTorch on the test split (drop <= 1 point)", "",
             markdown_table(HEADER, format_rows(result["rows"]))]
    if result["not_run"]:
        lines += ["", "Not run here:", ""] + [f"- {n['what']}: {n['reason']}" for n in result["not_run"]]
    return "\n".join(lines) + "\n"


def benchmark_figure(result: dict) -> Any:
    """pareto.png: test top-1 vs p50 per row, and each row's speed-up over the PyTorch eager row (the first)."""
    from .plots import pareto_figure

    rows = result["rows"]
    # the backend too: the same ONNX file runs on onnxruntime and OpenVINO
    labels = [f"{r['format']} {r['precision']} {r['backend'].split()[0]}" for r in rows]
    return pareto_figure(labels, [r["latency_ms"]["p50"] for r in rows], [r["accuracy"] for r in rows],
                         title=f"{result['model']} on {result['dataset']}: test top-1 vs p50 latency "
                               f"({threads_label(result['settings']['threads'])})", baseline=0,
                         reference=(rows[0]["accuracy"] - VERIFIED_MAX_DROP / 100,
                                    f"PyTorch - {VERIFIED_MAX_DROP:g} pt (the export's verify bar)"))


def run_benchmark(checkpoint: str | Path, *, data: str, data_root: str | None = None, formats: str = "onnx,tflite",
                  int8: bool = True, out: str | Path | None = None, threads: int | None = None, runs: int = 100,
                  warmup: int = 10, test_limit: int | None = None, calib_size: int = 200, progress: bool = True,
                  log: Callable[[str], None] = print) -> dict:
    """Export, measure every row, write the table, JSON and Pareto plot; return the result dict."""
    import torch

    from ..data import load_dataset, preprocessed
    from ..export.api import export_bundle, parse_formats
    from ..runtime.backends import (
        FORMAT_OF,
        INSTALL_HINT,
        available_backends,
        backend_precisions,
        open_backend,
    )
    from ..train.checkpoint import model_from_checkpoint, read_checkpoint
    from .plots import save_figure
    from .profiler import profile_configuration
    from .report import text_table

    if runs < 1:
        raise EdgeCNNError(f"--runs must be at least 1, got {runs} (zero runs measure nothing)")
    if warmup < 0:
        raise EdgeCNNError(f"--warmup must be >= 0, got {warmup}")
    if test_limit is not None and test_limit < 1:
        raise EdgeCNNError(f"--eval-limit must be at least 1, got {test_limit}")
    threads = threads or os.cpu_count() or 1
    if threads < 1:
        raise EdgeCNNError(f"--threads must be at least 1, got {threads}")
    fmts = parse_formats(formats)
    if "tensorrt" in fmts:
        raise EdgeCNNError("benchmark runs on this machine's CPU: use --formats onnx,tflite "
                           "(TensorRT engines are built and profiled on the device: edgecnn build-engine + profile)")
    ckpt_path = Path(checkpoint)
    ckpt = read_checkpoint(ckpt_path)
    model = model_from_checkpoint(ckpt)
    mname = ckpt["model"]["name"]
    # a data name like ts:/path/to/Set or folder:photos is one folder name, not a path
    out = Path(out) if out else Path("benchmark") / f"{mname}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', data).strip('-')}"
    out.mkdir(parents=True, exist_ok=True)

    present = available_backends()
    not_run = [{"what": name, "reason": f"not installed ({INSTALL_HINT[name]})"}
               for name, version in present.items() if not version]
    runnable = [f for f in fmts if any(present[b] and FORMAT_OF[b] == f for b in ("onnxruntime", "litert", "openvino"))]
    not_run += [{"what": f"{f} artifacts", "reason": "no backend for this format is installed"}
                for f in fmts if f not in runnable]
    not_run.append({"what": "fp16", "reason": "no fast fp16 path on this CPU (onnxruntime CPU / XNNPACK run it "
                    "through fp32 casts); profile fp16 on a GPU device with TensorRT"})
    if not runnable:
        raise EdgeCNNError("no backend installed for any requested format: pip install onnxruntime ai-edge-litert")

    bundle_dir = out / "bundle"
    plan = _export_plan(runnable, int8)
    if _reusable_bundle(bundle_dir, sha256_file(ckpt_path), plan):
        log(f"reusing {bundle_dir} (exported earlier from this checkpoint)")
    else:
        # max_drop=100: keep a poor int8 artifact as a row (marked not verified) instead of failing the run.
        export_bundle(ckpt_path, runnable, int8=int8, calib=data if int8 else None, calib_size=calib_size,
                      data_root=data_root, max_drop=100.0, out=bundle_dir, force=True,
                      verify_samples=test_limit, log=log, allow_chance=True)  # a row, measured, not refused
    bundle = Bundle.load(bundle_dir)

    ds = load_dataset(data, data_root, input_spec=bundle.input)
    x_test, y_test = preprocessed(ds, "test", bundle.input, test_limit)
    x1 = x_test[:1]
    rows: list[dict] = []

    torch.set_num_threads(threads)
    log(f"PyTorch eager fp32: accuracy on {len(y_test)} test images, then {runs} timed runs")
    lat = _time_torch(model, x1, runs, warmup)
    rows.append({"format": "pytorch", "precision": "fp32", "backend": f"torch {torch.__version__} (eager)",
                 "file": None, "size_bytes": sum(t.numel() * t.element_size() for t in model.state_dict().values()),
                 "accuracy": _torch_accuracy(model, x_test, y_test), "latency_ms": lat,
                 "throughput": throughput(lat), "verified": "reference"})

    rows_to_run = []
    for art in bundle.artifacts:
        rows_to_run.append((art, "onnxruntime" if art.format == "onnx" else "litert", {}))
        if art.format == "onnx" and present["openvino"]:  # the same ONNX files on OpenVINO's CPU plugin
            rows_to_run.append((art, "openvino", {}))
            if art.precision == "fp32" and "bf16" in backend_precisions(bundle, "openvino"):
                rows_to_run.append((art, "openvino", {"inference_precision": "bf16"}))
    for art, backend, options in rows_to_run:
        if not present[backend]:
            continue
        log(f"{art.info['file']} on {backend}{' (bf16 hint)' if options else ''}: accuracy on {len(y_test)} "
            f"test images, then {runs} timed runs")
        t0 = time.perf_counter()
        engine = open_backend(art, backend, threads, **options)
        try:
            acc = _backend_accuracy(engine, x_test, y_test)
        finally:
            engine.close()
        prof = profile_configuration(art, backend, threads, x1, runs=runs, warmup=warmup, progress=progress,
                                     open_options=options)
        rows.append({"format": art.format, "precision": prof["precision"],
                     "backend": f"{backend} {prof['backend_version']}",
                     "file": art.info["file"], "size_bytes": art.info["size_bytes"], "accuracy": acc,
                     "latency_ms": prof["latency_ms"], "throughput": prof["throughput"],
                     "cold_start": prof["cold_start"], "verified": _verified(art.info) if not options else
                     "no (bf16 run of the fp32 file)", "seconds": round(time.perf_counter() - t0, 1)})

    result = {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": str(ckpt_path.resolve()),
        "model": mname,
        "dataset": data,
        "test_samples": int(len(y_test)),
        "settings": {"threads": threads, "runs": runs, "warmup": warmup, "batch": 1, "test_limit": test_limit},
        "environment": environment_record(),
        "rows": rows,
        "not_run": not_run,
    }
    atomic_write_json(out / "benchmark.json", result)
    atomic_write_text(out / "benchmark.md", benchmark_markdown(result))
    save_figure(benchmark_figure(result), out / "pareto.png")
    log("")
    log(text_table(HEADER, format_rows(rows)))
    for n in not_run:
        log(f"not run: {n['what']}: {n['reason']}")
    log(f"wrote {out / 'benchmark.md'}, {out / 'benchmark.json'}, {out / 'pareto.png'}")
    return result


def read_benchmark(path: str | Path) -> dict:
    """A benchmark.json, checked for its schema (used by the README generator and tests)."""
    try:
        result = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EdgeCNNError(f"{path}: cannot read benchmark JSON ({e})") from None
    if not isinstance(result, dict) or result.get("schema") != SCHEMA:
        raise EdgeCNNError(f"{path}: not an edgecnn benchmark result (schema {SCHEMA!r} expected)")
    return result
