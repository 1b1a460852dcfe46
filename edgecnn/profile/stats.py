"""Latency statistics (numpy only): percentiles, not just means, and one-line summaries.

Shared by `edgecnn profile`, `edgecnn benchmark` and the runtime's end-of-stream statistics:

    from edgecnn.profile.stats import latency_stats, StageTimes
    stats = latency_stats(samples_ms)          # {"count", "p50", "p90", "p99", "mean", "std", "min", "max"}
    times = StageTimes(); times.add("network", 3.2); print(times.summary_line())
    run = RunStats(["capture", "inference"]); run.add_frame({"capture": 1.2, "inference": 3.4})
    run.snapshot()   # bounded memory however long the run: {"frames", "fps", "stages": {...}, ...}
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Iterable, Sequence

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


# -- bounded statistics for long runs ------------------------------------------------------------


class LatencyHistogram:
    """A latency distribution in bounded memory: counts in fixed, log-spaced buckets.

    Bucket i covers [lowest * r**i, lowest * r**(i+1)) with r = (1 + e) / (1 - e), e = `relative_error`;
    a percentile is reported as the point of its bucket that is within e (relative) of every value in
    that bucket, clamped to the exact min/max. So p50/p90/p99 are the nearest-rank percentiles of the
    samples to within `relative_error` (0.5% by default; values below `lowest_ms` all share the first
    bucket, and are exact only through min). count, mean, std, min and max are exact. Memory is fixed
    (about 2,300 counters for 1e-4 ms .. 1e6 ms at 0.5%), whatever the number of samples.
    """

    def __init__(self, lowest_ms: float = 1e-4, highest_ms: float = 1e6, relative_error: float = 0.005):
        if not (0 < lowest_ms < highest_ms and 0 < relative_error < 0.5):
            raise EdgeCNNError("LatencyHistogram: need 0 < lowest_ms < highest_ms and 0 < relative_error < 0.5")
        self.lowest, self.relative_error = float(lowest_ms), float(relative_error)
        self._ratio = (1 + relative_error) / (1 - relative_error)
        self._inv_log_ratio = 1.0 / math.log(self._ratio)
        self._nbuckets = int(math.ceil(math.log(highest_ms / lowest_ms) * self._inv_log_ratio)) + 1
        self._counts = [0] * self._nbuckets  # a list: += 1 on a list is the cheapest per-sample update
        self.count = 0
        self._mean = 0.0
        self._m2 = 0.0  # Welford's running sum of squared deviations (exact std without the samples)
        self.min = math.inf
        self.max = -math.inf

    def add(self, ms: float) -> None:
        v = float(ms)
        if not math.isfinite(v):
            raise EdgeCNNError(f"latency sample {v} is not finite")
        i = 0 if v <= self.lowest else min(int(math.log(v / self.lowest) * self._inv_log_ratio), self._nbuckets - 1)
        self._counts[i] += 1
        self.count += 1
        delta = v - self._mean
        self._mean += delta / self.count
        self._m2 += delta * (v - self._mean)
        if v < self.min:
            self.min = v
        if v > self.max:
            self.max = v

    def _at_rank(self, cum: np.ndarray, q: float) -> float:
        i = int(np.searchsorted(cum, max(1, math.ceil(q / 100 * self.count))))
        lo = self.lowest * self._ratio**i
        value = 2 * lo * self._ratio / (1 + self._ratio)  # within relative_error of all of [lo, lo * ratio)
        return float(min(max(value, self.min), self.max))

    def percentile(self, q: float) -> float:
        """The nearest-rank q-th percentile, within `relative_error`; NaN with no samples."""
        if self.count == 0:
            return float("nan")
        return self._at_rank(np.cumsum(self._counts), q)

    def stats(self) -> dict[str, float | int]:
        """The keys of `latency_stats` (NaN for everything but count when empty)."""
        if self.count == 0:
            return {"count": 0, **dict.fromkeys(STAT_KEYS[1:], float("nan"))}
        cum = np.cumsum(self._counts)
        out: dict[str, float | int] = {"count": self.count}
        out.update({f"p{q}": self._at_rank(cum, q) for q in PERCENTILES})
        out.update(mean=self._mean, std=math.sqrt(self._m2 / self.count), min=self.min, max=self.max)
        return out


class RunStats:
    """Statistics of a long-running pipeline (`edgecnn run`) in bounded memory, safe across threads.

    One `LatencyHistogram` per stage for the whole run, plus a ring of the last `window` frames per
    stage for a live view (exact percentiles of the recent frames). `add_frame` is called once per
    frame by the pipeline; `snapshot()` may be called at any time from another thread (a dashboard).
    """

    def __init__(self, stages: Iterable[str], window: int = 512):
        self.stages = tuple(stages)
        self.window = int(window)
        self._hist = {s: LatencyHistogram() for s in self.stages}
        # Rings of the last `window` frames (lists: a per-frame store into a list is cheaper than numpy's).
        self._recent = {s: [math.nan] * self.window for s in self.stages}
        self._ends = [math.nan] * self.window  # perf_counter at the end of each recent frame
        self.age = LatencyHistogram()  # result age (capture -> result) when the caller gives it
        self._lock = threading.Lock()
        self.frames = 0
        self.dropped = 0
        self.start = time.perf_counter()

    def add_frame(self, stage_ms: dict[str, float], end: float | None = None, age_ms: float | None = None) -> None:
        """Record one frame's milliseconds per stage (stages it lacks are left out for this frame), and
        its result age when given."""
        end = time.perf_counter() if end is None else end
        with self._lock:
            if age_ms is not None:
                self.age.add(age_ms)
            slot = self.frames % self.window
            for s, ms in stage_ms.items():
                h = self._hist.get(s)
                if h is None:
                    continue
                h.add(ms)
                self._recent[s][slot] = ms
            self._ends[slot] = end
            self.frames += 1

    def add_dropped(self, n: int = 1) -> None:
        with self._lock:
            self.dropped += n

    def stage_stats(self) -> dict[str, dict]:
        """Whole-run statistics per stage (`LatencyHistogram.stats` keys)."""
        with self._lock:
            return {s: h.stats() for s, h in self._hist.items()}

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready view for a live display: frames, drops, uptime, FPS (whole run and recent
        frames), and per stage p50/p90/p99/mean over the whole run and over the recent window."""
        with self._lock:
            now = time.perf_counter()
            uptime = now - self.start
            recent_fps = float("nan")
            if self.frames >= 2:
                ends = np.asarray(self._ends)
                ends = ends[~np.isnan(ends)]
                span = float(ends.max() - ends.min())
                recent_fps = (len(ends) - 1) / span if span > 0 else float("nan")
            stages = {}
            for s, h in self._hist.items():
                st = h.stats()
                recent = np.asarray(self._recent[s])
                recent = recent[~np.isnan(recent)]
                stages[s] = {k: st[k] for k in ("count", "p50", "p90", "p99", "mean")}
                stages[s]["recent"] = {}
                if recent.size:
                    pcts = np.percentile(recent, PERCENTILES)
                    stages[s]["recent"] = {f"p{q}": float(v) for q, v in zip(PERCENTILES, pcts)}
                    stages[s]["recent"]["mean"] = float(recent.mean())
            return {
                "frames": self.frames,
                "dropped": self.dropped,
                "uptime_s": uptime,
                "fps": self.frames / uptime if uptime > 0 else 0.0,
                "fps_recent": recent_fps,
                "stages": stages,
            }
