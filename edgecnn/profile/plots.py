"""PNG plots of profiles and benchmarks. matplotlib is imported lazily: it is optional on devices."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import EdgeCNNError
from ..labels import config_label, show_batch
from ..utils import atomic_write_bytes


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only, no display); one clear line when it is not installed."""
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


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Lay out, render to PNG, close the figure and write the file atomically."""
    plt = pyplot()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


# ---------------------------------------------------------------- shared axes: accuracy and ratios


def accuracy_limits(values: Sequence[float], lines: Sequence[float] = (), *, scale: float = 100.0,
                    min_span: float | None = None, pad: float = 0.1) -> tuple[float, float]:
    """An accuracy axis range: every value and reference line inside, padded, within [0, scale].

    `scale` is 100 for percent and 1 for fractions. The span is at least `min_span` (default 2 points): all
    points at 97-98% are not drawn on 0-100, and a 0.1-point difference is not drawn as a cliff either.
    """
    pts = [float(v) for v in list(values) + list(lines) if v is not None and np.isfinite(v)]
    if not pts:
        return 0.0, scale
    min_span = 0.02 * scale if min_span is None else min_span
    lo, hi = min(pts), max(pts)
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    margin = pad * (hi - lo)
    lo, hi = lo - margin, hi + margin
    if lo < 0:  # shift inside [0, scale] rather than cut: the span stays what was asked for
        lo, hi = 0.0, min(scale, hi - lo)
    if hi > scale:
        lo, hi = max(0.0, lo - (hi - scale)), scale
    return lo, hi


def accuracy_axis(ax: Any, values: Sequence[float], lines: Sequence[float] = (), *, scale: float = 100.0,
                  label: str = "test top-1 (%)") -> tuple[float, float]:
    """Set an accuracy y axis (limits from `accuracy_limits`) and its label; returns the limits."""
    lo, hi = accuracy_limits(values, lines, scale=scale)
    ax.set_ylim(lo, hi)
    ax.set_ylabel(label)
    return lo, hi


def ratio_bars(ax: Any, labels: Sequence[str], ratios: Sequence[float], *, reference: str,
               title: str = "speed-up", highlight: int | None = None) -> None:
    """Horizontal bars of multiplication factors on a linear axis from 0, a dashed line at 1.0, each value
    written at its bar; bar `highlight` (an index) drawn gold.

    A ratio is read as "how many times": on a log axis, or one that starts near 1, a 1.2x bar would look
    as long as a 3x one.
    """
    y = np.arange(len(labels))[::-1]
    values = [float(r) for r in ratios]
    colors = ["tab:green" if r >= 1 else "tab:red" for r in values]
    if highlight is not None:
        colors[highlight] = "gold"
    ax.barh(y, values, color=colors, edgecolor="black", linewidth=0.5, height=0.6, zorder=2)
    ax.set_xscale("linear")
    top = max(values + [1.0])
    ax.set_xlim(0, top * 1.18)  # room for the value written after the longest bar
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1, zorder=3)
    for yi, r in zip(y, values):
        ax.text(r + top * 0.01, yi, f"{r:.2f}x", va="center", fontsize=8)
    ax.set_yticks(y, labels=list(labels), fontsize=7)
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.set_xlabel(f"times faster than {reference} (linear; dashed: 1.0x)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3, zorder=0)


# ---------------------------------------------------------------- profile reports


def result_labels(results: Sequence[dict]) -> list[str]:
    """'model.onnx onnxruntime, 1 thread' per result; the batch is named only when some result is not batch 1."""
    batch = show_batch(r.get("batch") for r in results)
    return [config_label(r["artifact"], r["backend"], threads=r.get("threads"), batch=r["batch"] if batch else None)
            for r in results]


def latency_figure(report: dict) -> Any:
    """Histogram and CDF of every configuration's latency samples, overlaid."""
    plt = pyplot()
    from .report import device_label

    fig, (ax_h, ax_c) = plt.subplots(1, 2, figsize=(12, 4.5))
    clipped = []
    for r in report["results"]:
        x = np.asarray(r["samples_ms"], dtype=float)
        clipped.append(x[x <= np.percentile(x, 99.5)])  # keep a rare outlier from squashing the histogram
    lo = max(min(c.min() for c in clipped), 1e-6)
    hi = max(max(c.max() for c in clipped), lo * 1.01)
    bins = np.geomspace(lo, hi, 80)  # shared log bins: models 100x apart stay readable
    for r, label, x in zip(report["results"], result_labels(report["results"]), clipped):
        ax_h.hist(x, bins=bins, histtype="step", linewidth=1.4, label=label)
        xs = np.sort(np.asarray(r["samples_ms"], dtype=float))
        ax_c.plot(xs, np.arange(1, len(xs) + 1) / len(xs), linewidth=1.4, label=label)
    ax_h.set_xscale("log")
    _plain_log_ticks(ax_h.xaxis)
    ax_h.set_xlabel("latency (ms, log), up to p99.5")
    ax_h.set_ylabel("runs")
    ax_h.set_title("latency histogram")
    ax_c.set_xscale("log")
    _plain_log_ticks(ax_c.xaxis)
    ax_c.set_xlabel("latency (ms, log)")
    ax_c.set_ylabel("fraction of runs")
    ax_c.set_ylim(0, 1.02)
    ax_c.set_title("latency CDF")
    for q in (0.5, 0.9, 0.99):
        ax_c.axhline(q, color="grey", linewidth=0.6, linestyle=":")
    ax_c.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{report['bundle'].get('name')}: model latency on {device_label(report)}")
    return fig


def latency_plot(report: dict, path: str | Path) -> Path:
    return save_figure(latency_figure(report), path)


def per_op_figure(result: dict, top: int = 15) -> Any:
    """Horizontal bars: time per run by op type (left) and the slowest nodes (right)."""
    op = result["per_op"]
    plt = pyplot()
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
    fig.suptitle(f"{result_labels([result])[0]}: {op['source']}, {op['runs']} runs")
    return fig


def per_op_plot(result: dict, path: str | Path, top: int = 15) -> Path:
    return save_figure(per_op_figure(result, top), path)


def profile_plots(report: dict, out_dir: str | Path) -> list[Path]:
    """latency.png plus one per_op_<artifact>_<backend>_t<threads>.png per available per-op breakdown."""
    out_dir = Path(out_dir)
    paths = [latency_plot(report, out_dir / "latency.png")]
    for r in report["results"]:
        if r.get("per_op") and r["per_op"].get("available"):
            name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"per_op_{r['artifact']}_{r['backend']}_t{r.get('threads')}")
            paths.append(per_op_plot(r, out_dir / f"{name}.png"))
    return paths


def compare_figure(labels: Sequence[str], p50: Sequence[float], p90: Sequence[float],
                   title: str = "latency comparison") -> Any:
    """p50 as a dot and a line on to p90, one row per configuration, on a log axis (models may be 100x apart).

    Dots, not bars: a bar's length on a log axis depends on where the axis happens to start.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.35 * len(labels)))
    y = np.arange(len(labels))[::-1]
    ax.hlines(y, p50, p90, color="tab:blue", linewidth=2, alpha=0.6)
    ax.scatter(p50, y, color="tab:blue", zorder=3)
    ax.scatter(p90, y, marker="|", s=200, color="black", zorder=3)
    ax.set_yticks(y, labels=list(labels), fontsize=7)
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("latency (ms, log): p50 (dot) to p90 (tick)")
    ax.set_title(title)
    ax.grid(axis="x", which="both", alpha=0.25)
    return fig


def compare_plot(labels: Sequence[str], p50: Sequence[float], p90: Sequence[float], path: str | Path,
                 title: str = "latency comparison") -> Path:
    return save_figure(compare_figure(labels, p50, p90, title), path)


def reports_figure(reports: Sequence[dict]) -> Any:
    """p50/p90 of every configuration of several reports (`edgecnn report --plot`)."""
    from .report import device_label

    labels, p50, p90 = [], [], []
    batch = show_batch(r.get("batch") for rep in reports for r in rep["results"])
    for rep in reports:
        for r in rep["results"]:
            label = config_label(r["artifact"], r["backend"], threads=r.get("threads"),
                                 batch=r["batch"] if batch else None)
            labels.append(f"{device_label(rep)[:28]} | {label}")
            p50.append(r["latency_ms"]["p50"])
            p90.append(r["latency_ms"]["p90"])
    return compare_figure(labels, p50, p90, title="model latency: p50 (dot) to p90 (tick)")


def reports_plot(reports: Sequence[dict], path: str | Path) -> Path:
    return save_figure(reports_figure(reports), path)


def pareto_front(latency: Sequence[float], accuracy: Sequence[float]) -> list[int]:
    """Indices of points no other point beats on both lower latency and higher accuracy, fastest first."""
    order = sorted(range(len(latency)), key=lambda i: (latency[i], -accuracy[i]))
    front, best = [], -np.inf
    for i in order:
        if accuracy[i] > best:
            front.append(i)
            best = accuracy[i]
    return front


def pareto_figure(labels: Sequence[str], latency_ms: Sequence[float], accuracy: Sequence[float],
                  title: str = "accuracy vs latency", *, baseline: int | None = None,
                  reference: tuple[float, str] | None = None) -> Any:
    """Test top-1 vs p50 latency with the Pareto front; with `baseline` (an index), a second panel of
    every row's speed-up over that row. `reference` = (accuracy fraction, label): a horizontal line."""
    plt = pyplot()
    if baseline is None:
        fig, ax = plt.subplots(figsize=(8, 5.5))
    else:
        fig, (ax, ax_r) = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [3, 2]})
    pct = [100 * a for a in accuracy]
    ax.scatter(latency_ms, pct, color="tab:blue", zorder=3)
    for i, (lab, x, a) in enumerate(zip(labels, latency_ms, pct)):
        # alternate above/below so labels of neighbouring points do not overprint
        ax.annotate(lab, (x, a), textcoords="offset points", xytext=(5, 5 if i % 2 == 0 else -12), fontsize=8)
    front = pareto_front(latency_ms, accuracy)
    ax.plot([latency_ms[i] for i in front], [pct[i] for i in front], color="tab:red",
            linestyle="--", label="Pareto front", zorder=2)
    lines = []
    if reference is not None:
        lines.append(100 * reference[0])
        ax.axhline(lines[-1], color="grey", linestyle=":", linewidth=1, label=reference[1])
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("p50 latency per image (ms, log)")
    accuracy_axis(ax, pct, lines)
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    if baseline is not None:
        base = latency_ms[baseline]
        order = sorted(range(len(labels)), key=lambda i: latency_ms[i])
        ratio_bars(ax_r, [labels[i] for i in order], [base / latency_ms[i] for i in order],
                   reference=labels[baseline], title="speed-up (p50)")
    return fig


def pareto_plot(labels: Sequence[str], latency_ms: Sequence[float], accuracy: Sequence[float], path: str | Path,
                title: str = "accuracy vs latency", *, baseline: int | None = None,
                reference: tuple[float, str] | None = None) -> Path:
    """Scatter of test top-1 vs p50 latency, with the Pareto front drawn through the best trade-offs."""
    return save_figure(pareto_figure(labels, latency_ms, accuracy, title, baseline=baseline, reference=reference),
                       path)
