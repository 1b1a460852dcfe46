"""Before/after report of a compression step: params, MACs, file sizes, accuracy and MEASURED latency.

Latency is what users prune for, so it is measured, never inferred from MACs: each model is
exported to fp32 ONNX (the same exporter as `edgecnn export`) in a temp dir and run by
onnxruntime with the same thread count. Runs alternate between the models (A, B, A, B, ...), so a
burst of load from other processes hits all of them alike and the ratio stays honest.
"""

from __future__ import annotations

import io
import os
import platform
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
from torch import nn

from ..utils import atomic_write_bytes, atomic_write_json

SCHEMA = "edgecnn.compress-report/1"


def zipped_size(data: bytes, name: str = "model") -> int:
    """Bytes after DEFLATE: what unstructured sparsity (runs of zeros) actually saves on disk/download."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr(name, data)
    return len(buf.getvalue())


def sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero weights in Conv2d/Linear layers."""
    total = zeros = 0
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            total += m.weight.numel()
            zeros += int((m.weight == 0).sum())
    return zeros / total if total else 0.0


def measure_latency(onnx_paths: dict[str, Path], sample: np.ndarray, *, threads: int = 1, runs: int = 200,
                    warmup: int = 20) -> dict[str, dict]:
    """Per model: median/p90/mean ms of single-image onnxruntime runs, interleaved across models."""
    import onnxruntime as ort

    sessions = {}
    for name, path in onnx_paths.items():
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        sessions[name] = (sess, sess.get_inputs()[0].name)
    x = np.ascontiguousarray(sample[:1], dtype=np.float32)
    for sess, inp in sessions.values():
        for _ in range(warmup):
            sess.run(None, {inp: x})
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(runs):
        for name, (sess, inp) in sessions.items():
            t0 = time.perf_counter()
            sess.run(None, {inp: x})
            times[name].append((time.perf_counter() - t0) * 1e3)
    out = {}
    for name, t in times.items():
        a = np.asarray(t)
        out[name] = {"median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)),
                     "mean_ms": float(a.mean()), "runs": len(a)}
    return out


def compare_models(models: dict[str, tuple[nn.Module, dict]], ds, *, threads: int = 1, runs: int = 200,
                   eval_limit: int | None = None, log: Callable[[str], None] = print) -> list[dict]:
    """One row per model (in order): params, MACs, sizes, sparsity, test top-1, latency."""
    import torch

    from ..export.onnx import export_fp32
    from ..models import count_macs, count_params
    from .common import test_accuracy, test_arrays

    first_ckpt = next(iter(models.values()))[1]
    spec = first_ckpt["input"]
    x, _ = test_arrays(ds, spec, limit=8)
    shape = (int(spec["channels"]), int(spec["height"]), int(spec["width"]))
    rows, paths = [], {}
    with tempfile.TemporaryDirectory(prefix="edgecnn-compress-") as tmp:
        for name, (model, ckpt) in models.items():
            model = model.eval()
            path = Path(tmp) / f"{name}.onnx"
            export_fp32(model, x, path)
            paths[name] = path
            buf = io.BytesIO()
            torch.save(ckpt, buf)
            ckpt_bytes = buf.getvalue()
            onnx_bytes = path.read_bytes()
            rows.append({
                "model": name,
                "params": count_params(model),
                "macs": count_macs(model, shape),
                "checkpoint_bytes": len(ckpt_bytes),
                "onnx_bytes": len(onnx_bytes),
                "onnx_zipped_bytes": zipped_size(onnx_bytes),
                "weight_sparsity": round(sparsity(model), 4),
                "test_acc": test_accuracy(model, ds, spec, eval_limit),
            })
        log(f"measuring onnxruntime latency ({threads} thread(s), {runs} interleaved runs per model)")
        lat = measure_latency(paths, x, threads=threads, runs=runs)
    for row in rows:
        row.update(lat[row["model"]])
        row["threads"] = threads
    base = rows[0]
    for row in rows[1:]:
        row["speedup_median"] = base["median_ms"] / row["median_ms"]
        row["acc_drop_points"] = 100 * (base["test_acc"] - row["test_acc"])
    return rows


def format_table(rows: list[dict]) -> str:
    head = ("model", "params", "MMACs", "ONNX KB", "zipped KB", "sparsity", "test top-1", "median ms", "p90 ms",
            "speed-up")
    lines = [head]
    for r in rows:
        lines.append((
            r["model"], f"{r['params']:,}", f"{r['macs'] / 1e6:.2f}", f"{r['onnx_bytes'] / 1024:.1f}",
            f"{r['onnx_zipped_bytes'] / 1024:.1f}", f"{r['weight_sparsity']:.1%}", f"{r['test_acc']:.4f}",
            f"{r['median_ms']:.3f}", f"{r['p90_ms']:.3f}",
            f"{r['speedup_median']:.2f}x" if "speedup_median" in r else "1.00x",
        ))
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(str(c).rjust(w) for c, w in zip(row, widths)) for row in lines)


def environment() -> dict:
    import onnxruntime as ort

    return {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "onnxruntime": ort.__version__,
            "note": "latency measured on this host's CPU; runs interleaved between models so load affects all alike"}


def save_plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["model"] for r in rows]
    panels = [
        ("parameters (k)", [r["params"] / 1e3 for r in rows], None),
        ("MACs (M)", [r["macs"] / 1e6 for r in rows], None),
        ("ONNX size (KB): full / zipped", [r["onnx_bytes"] / 1024 for r in rows],
         [r["onnx_zipped_bytes"] / 1024 for r in rows]),
        ("test top-1 (%)", [100 * r["test_acc"] for r in rows], None),
        ("latency (ms): median, bar to p90", [r["median_ms"] for r in rows],
         [r["p90_ms"] - r["median_ms"] for r in rows]),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
    for ax, (label, values, extra) in zip(axes, panels):
        pos = np.arange(len(names))
        if label.startswith("latency"):
            ax.bar(pos, values, yerr=[[0] * len(values), extra], capsize=4, color="tab:orange")
        elif extra is not None:
            ax.bar(pos - 0.2, values, width=0.4, label="full")
            ax.bar(pos + 0.2, extra, width=0.4, label="zipped")
            ax.legend(fontsize=8)
        else:
            ax.bar(pos, values)
        ax.set_xticks(pos, names, fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_report(folder: str | os.PathLike, rows: list[dict], title: str, log: Callable[[str], None] = print,
                 **extra) -> dict:
    """Print the table and write compress_report.json + compress_report.png into `folder`."""
    folder = Path(folder)
    report = {"schema": SCHEMA, "title": title, "environment": environment(), "rows": rows, **extra}
    atomic_write_json(folder / "compress_report.json", report)
    save_plot(rows, folder / "compress_report.png", title)
    log(title)
    log(format_table(rows))
    return report
