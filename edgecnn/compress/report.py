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
from typing import Any, Callable

import numpy as np
from torch import nn

from ..labels import threads_label
from ..utils import atomic_write_json

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
    from ..preprocess import model_input_shape

    shape = model_input_shape(spec)
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
        log(f"measuring onnxruntime latency ({threads_label(threads)}, {runs} interleaved runs per model)")
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
            f"{r['onnx_zipped_bytes'] / 1024:.1f}", f"{r['weight_sparsity']:.1%}", f"{100 * r['test_acc']:.2f}%",
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


def report_figure(rows: list[dict], title: str, *, accuracy: dict | None = None,
                  target_drop_points: float | None = None) -> Any:
    """Panels per model: parameters, MACs, ONNX size, test top-1 (with the budget line of `edgecnn compress`),
    latency, and the speed-up over the first row (linear bars from 0, a line at 1.0)."""
    from ..profile.plots import accuracy_axis, pyplot, ratio_bars

    plt = pyplot()
    names = [r["model"] for r in rows]
    pos = np.arange(len(names))
    fig, grid = plt.subplots(2, 3, figsize=(15, 7.2))
    axes = list(grid.flat)
    ax_p, ax_m, ax_s, ax_a, ax_l, ax_r = axes
    for ax, label, values in ((ax_p, "parameters (k)", [r["params"] / 1e3 for r in rows]),
                              (ax_m, "MACs (M)", [r["macs"] / 1e6 for r in rows])):
        ax.bar(pos, values)
        ax.set_title(label, fontsize=9)
    ax_s.bar(pos - 0.2, [r["onnx_bytes"] / 1024 for r in rows], width=0.4, label="full")
    ax_s.bar(pos + 0.2, [r["onnx_zipped_bytes"] / 1024 for r in rows], width=0.4, label="zipped")
    ax_s.legend(fontsize=8)
    ax_s.set_title("ONNX size (KB): full / zipped", fontsize=9)

    # accuracy as points, not bars: a bar's length is only honest from 0, and 0-100 hides a 1-point drop
    acc = [100 * r["test_acc"] for r in rows]
    ax_a.scatter(pos, acc, s=50, zorder=3, label="fp32 (PyTorch)")
    for x, a in zip(pos, acc):
        ax_a.annotate(f"{a:.2f}%", (x, a), textcoords="offset points", xytext=(-8, 0), ha="right", va="center",
                      fontsize=8)
    values, lines = list(acc), []
    if accuracy and accuracy.get("qat_int8") is not None:
        values.append(100 * accuracy["qat_int8"])
        ax_a.scatter([pos[-1]], [values[-1]], marker="^", s=60, c="tab:purple", zorder=3, label="QAT int8")
        ax_a.annotate(f"{values[-1]:.2f}% int8", (pos[-1], values[-1]), textcoords="offset points",
                      xytext=(8, 0), va="center", fontsize=8)
    if target_drop_points is not None:
        base = 100 * (accuracy or {}).get("source_fp32", rows[0]["test_acc"])
        lines.append(base - target_drop_points)
        ax_a.axhline(lines[-1], ls="--", c="tab:red", lw=1, label=f"budget: source - {target_drop_points:g} pt")
    accuracy_axis(ax_a, values, lines, label="%")
    ax_a.legend(fontsize=7, loc="lower left")
    ax_a.set_title("test top-1 (%)", fontsize=9)

    ax_l.bar(pos, [r["median_ms"] for r in rows], yerr=[[0] * len(rows), [r["p90_ms"] - r["median_ms"] for r in rows]],
             capsize=4, color="tab:orange")
    ax_l.set_title("latency (ms): median, bar to p90", fontsize=9)
    for ax in axes[:5]:
        ax.set_xticks(pos, names, fontsize=8)
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.grid(axis="y", alpha=0.3)
    ratio_bars(ax_r, names, [rows[0]["median_ms"] / r["median_ms"] for r in rows], reference=names[0],
               title="speed-up (median latency)")
    ax_r.title.set_fontsize(9)
    fig.suptitle(title, fontsize=10)
    return fig


def save_plot(rows: list[dict], path: Path, title: str, *, accuracy: dict | None = None,
              target_drop_points: float | None = None) -> Path:
    from ..profile.plots import save_figure

    return save_figure(report_figure(rows, title, accuracy=accuracy, target_drop_points=target_drop_points), path,
                       dpi=100)


def write_report(folder: str | os.PathLike, rows: list[dict], title: str, log: Callable[[str], None] = print,
                 **extra) -> dict:
    """Print the table and write compress_report.json + compress_report.png into `folder`."""
    folder = Path(folder)
    report = {"schema": SCHEMA, "title": title, "environment": environment(), "rows": rows, **extra}
    atomic_write_json(folder / "compress_report.json", report)
    save_plot(rows, folder / "compress_report.png", title, accuracy=extra.get("accuracy"),
              target_drop_points=extra.get("target_drop_points"))
    log(title)
    log(format_table(rows))
    return report
