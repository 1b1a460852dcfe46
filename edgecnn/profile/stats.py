"""Latency statistics (numpy only): percentiles, not just means, and one-line summaries.

Shared by `edgecnn profile`, `edgecnn benchmark` and the runtime's end-of-stream statistics:

    from edgecnn.profile.stats import latency_stats, StageTimes
    stats = latency_stats(samples_ms)          # {"count", "p50", "p90", "p99", "mean", "std", "min", "max"}
    times = StageTimes(); times.add("network", 3.2); print(times.summary_line())
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from ..errors import EdgeCNNError

PERCENTILES = (50, 90, 99)
STAT_KEYS = ("count", "p50", "p90", "p99", "mean", "std", "min", "max")


def latency_stats(samples_ms: Sequence[float] | np.ndarray) -> dict[str, float | int]:
    """Summary of latency samples in milliseconds.

    Percentiles use numpy's default linear interpolation (what numpy.percentile gives); `std` is the
    population standard deviation. An empty or non-finite sample set is an EdgeCNNError.
    """
    x = np.asarray(samples_ms, dtype=np.float64).ravel()
    if x.size == 0:
        raise EdgeCNNError("no latency samples to summarise (zero runs)")
    if not np.all(np.isfinite(x)):
        raise EdgeCNNError("latency samples contain NaN or infinite values")
    p50, p90, p99 = np.percentile(x, PERCENTILES)
    return {
        "count": int(x.size),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(x.mean()),
        "std": float(x.std()),
        "min": float(x.min()),
        "max": float(x.max()),
    }


def throughput(stats: dict, batch: int = 1) -> dict[str, float]:
    """Inferences and images per second implied by the mean latency (sequential, one stream)."""
    mean_ms = float(stats["mean"])
    per_s = 1000.0 / mean_ms if mean_ms > 0 else float("inf")
    return {"inferences_per_s": per_s, "images_per_s": per_s * batch}


def format_ms(value: float | None) -> str:
    """Milliseconds with a precision that suits their size: 0.0123, 1.234, 12.35, 123.5."""
    if value is None:
        return "-"
    v = float(value)
    if v < 0.1:
        return f"{v:.4f}"
    if v < 10:
        return f"{v:.3f}"
    if v < 100:
        return f"{v:.2f}"
    return f"{v:.1f}"


def stats_line(name: str, stats: dict) -> str:
    """'network  p50 1.234 ms  p90 1.456  p99 2.001  mean 1.3 ± 0.2  (n=500)'."""
    return (
        f"{name:<12} p50 {format_ms(stats['p50'])} ms  p90 {format_ms(stats['p90'])}  "
        f"p99 {format_ms(stats['p99'])}  mean {format_ms(stats['mean'])} ± {format_ms(stats['std'])}  "
        f"(n={stats['count']})"
    )


class StageTimes:
    """Per-stage latency samples of a pipeline (e.g. capture, preprocess, network, postprocess, total).

    The runtime records one sample per stage per frame and prints `summary()` at the end of a stream.
    """

    def __init__(self, stages: Iterable[str] = ()):
        self.samples: dict[str, list[float]] = {s: [] for s in stages}

    def add(self, stage: str, ms: float) -> None:
        self.samples.setdefault(stage, []).append(float(ms))

    def stats(self) -> dict[str, dict]:
        """Statistics of every stage that has samples, in the order the stages were first seen."""
        return {s: latency_stats(v) for s, v in self.samples.items() if v}

    def summary(self) -> str:
        """One line per stage with samples; an empty string when nothing was recorded."""
        return "\n".join(stats_line(s, st) for s, st in self.stats().items())
