"""PNG plots of profiles and benchmarks. matplotlib is imported lazily: it is optional on devices."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import EdgeCNNError
from ..utils import atomic_write_bytes


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise EdgeCNNError("plots need matplotlib: pip install matplotlib (or drop --plots/--plot)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plain_log_ticks(axis: Any) -> None:
    """Log axes label ticks as 0.02, 0.5, 3 instead of 2x10^-2 (and without crowded minor labels)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _save(fig: Any, path: str | Path) -> Path:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def _label(r: dict) -> str:
    threads = "default" if r.get("threads") is None else r["threads"]
    return f"{r['artifact']} {r['backend']} t{threads} b{r['batch']}"


def latency_plot(report: dict, path: str | Path) -> Path:
    """Histogram and CDF of every configuration's latency samples, overlaid."""
    plt = _pyplot()
    from .report import device_label

    fig, (ax_h, ax_c) = plt.subplots(1, 2, figsize=(12, 4.5))
    clipped = []
    for r in report["results"]:
        x = np.asarray(r["samples_ms"], dtype=float)
        clipped.append(x[x <= np.percentile(x, 99.5)])  # keep a rare outlier from squashing the histogram
    lo = max(min(c.min() for c in clipped), 1e-6)
    hi = max(max(c.max() for c in clipped), lo * 1.01)
    bins = np.geomspace(lo, hi, 80)  # shared log bins: models 100x apart stay readable
    for r, x in zip(report["results"], clipped):
        ax_h.hist(x, bins=bins, histtype="step", linewidth=1.4, label=_label(r))
        xs = np.sort(np.asarray(r["samples_ms"], dtype=float))
        ax_c.plot(xs, np.arange(1, len(xs) + 1) / len(xs), linewidth=1.4, label=_label(r))
    ax_h.set_xscale("log")
    _plain_log_ticks(ax_h.xaxis)
    ax_h.set_xlabel("latency (ms, log), up to p99.5")
    ax_h.set_ylabel("runs")
    ax_h.set_title("latency histogram")
    ax_c.set_xscale("log")
    _plain_log_ticks(ax_c.xaxis)
    ax_c.set_xlabel("latency (ms, log)")
    ax_c.set_ylabel("fraction of runs")
    ax_c.set_title("latency CDF")
    for q in (0.5, 0.9, 0.99):
        ax_c.axhline(q, color="grey", linewidth=0.6, linestyle=":")
    ax_c.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{report['bundle'].get('name')}: model latency on {device_label(report)}")
    return _save(fig, path)


def per_op_plot(result: dict, path: str | Path, top: int = 15) -> Path:
    """Horizontal bars: time per run by op type (left) and the slowest nodes (right)."""
    op = result["per_op"]
    plt = _pyplot()
    fig, (ax_t, ax_n) = plt.subplots(1, 2, figsize=(12, 0.9 + 0.32 * max(len(op["by_type"][:top]), 5)))
    types = op["by_type"][:top][::-1]
    ax_t.barh([t["op_type"] for t in types], [t["ms_per_run"] for t in types], color="tab:blue")
    ax_t.set_xlabel("ms per run")
    ax_t.set_title("by op type")
    nodes = op["top_nodes"][:top][::-1]
    ax_n.barh([f"{n['name'][:40]} ({n['op_type']})" for n in nodes], [n["ms_per_run"] for n in nodes],
              color="tab:orange")
    ax_n.set_xlabel("ms per run")
    ax_n.set_title("slowest nodes")
    ax_n.tick_params(axis="y", labelsize=7)
    fig.suptitle(f"{_label(result)}: {op['source']}, {op['runs']} runs")
    return _save(fig, path)


def profile_plots(report: dict, out_dir: str | Path) -> list[Path]:
    """latency.png plus one per_op_<artifact>_<backend>_t<threads>.png per available per-op breakdown."""
    out_dir = Path(out_dir)
    paths = [latency_plot(report, out_dir / "latency.png")]
    for r in report["results"]:
        if r.get("per_op") and r["per_op"].get("available"):
            name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"per_op_{r['artifact']}_{r['backend']}_t{r.get('threads')}")
            paths.append(per_op_plot(r, out_dir / f"{name}.png"))
    return paths


def compare_plot(labels: Sequence[str], p50: Sequence[float], p90: Sequence[float], path: str | Path,
                 title: str = "latency comparison") -> Path:
    """Horizontal bars of p50 with a tick at p90, one bar per configuration (log scale)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.35 * len(labels)))
    y = np.arange(len(labels))[::-1]
    ax.barh(y, p50, color="tab:blue", label="p50")
    ax.scatter(p90, y, marker="|", s=200, color="black", label="p90")
    ax.set_yticks(y, labels=labels, fontsize=7)
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("latency (ms, log)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def reports_plot(reports: Sequence[dict], path: str | Path) -> Path:
    """p50/p90 bars for every configuration of several reports (`edgecnn report --plot`)."""
    from .report import device_label

    labels, p50, p90 = [], [], []
    for rep in reports:
        for r in rep["results"]:
            labels.append(f"{device_label(rep)[:28]} | {_label(r)}")
            p50.append(r["latency_ms"]["p50"])
            p90.append(r["latency_ms"]["p90"])
    return compare_plot(labels, p50, p90, path, title="model latency: p50 (bar) and p90 (tick)")


def pareto_front(latency: Sequence[float], accuracy: Sequence[float]) -> list[int]:
    """Indices of points no other point beats on both lower latency and higher accuracy, fastest first."""
    order = sorted(range(len(latency)), key=lambda i: (latency[i], -accuracy[i]))
    front, best = [], -np.inf
    for i in order:
        if accuracy[i] > best:
            front.append(i)
            best = accuracy[i]
    return front


def pareto_plot(labels: Sequence[str], latency_ms: Sequence[float], accuracy: Sequence[float], path: str | Path,
                title: str = "accuracy vs latency") -> Path:
    """Scatter of test top-1 vs p50 latency, with the Pareto front drawn through the best trade-offs."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    ax.scatter(latency_ms, [100 * a for a in accuracy], color="tab:blue", zorder=3)
    for i, (lab, x, a) in enumerate(zip(labels, latency_ms, accuracy)):
        # alternate above/below so labels of neighbouring points do not overprint
        ax.annotate(lab, (x, 100 * a), textcoords="offset points", xytext=(5, 5 if i % 2 == 0 else -12), fontsize=8)
    front = pareto_front(latency_ms, accuracy)
    ax.plot([latency_ms[i] for i in front], [100 * accuracy[i] for i in front], color="tab:red",
            linestyle="--", label="Pareto front", zorder=2)
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("p50 latency per image (ms, log)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path)
