"""`edgecnn run` for series bundles: sliding windows of a sensor or audio stream, classified and smoothed.

One window's path:  capture (samples read and parsed) -> preprocess (`edgecnn.series.preprocess_series`,
the manifest's normalization or audio front end) -> inference -> postprocess (softmax, top-k, then the
`ResultSmoother`: mean of the last N windows, threshold, suppression) -> render (sinks).

A window is a few hundred samples, so the stages run one after the other in this thread (a live
source reads in its own thread and keeps only the newest window). Each result is one JSON line:

    {"window": k, "samples": [start, end], "t": end / sample_rate (stream seconds, null without a rate),
     "captured": epoch seconds its last sample arrived, "age_ms": ms from then to this line,
     "top": [{"label", "prob"}...] (this window), "smoothed": {"label", "prob", "n"} (the average),
     "detected": label or null (a new detection, TFLM's is_new_command), "ms": {stage: ms}, "wps": windows/s}

The run ends with the same kind of summary as images (windows, windows a second, p50/p90/p99/mean per
stage, age of the results), written to --report as JSON; `--serve` shows it on the dashboard, with a
plot of the newest window in place of a camera picture.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from ..errors import EdgeCNNError
from ..profile.stats import LatencyHistogram, RunStats
from .classifier import Classifier
from .health import DEFAULT_STALE_AFTER_S, Health, HealthServer
from .overlay import STAGES, draw_overlay
from .series_sources import SeriesSource, Window, default_hop, open_series_source
from .sinks import JsonLinesSink, PredictionsSink, Sink, close_health, close_sinks, end_run
from .smoothing import ResultSmoother, Smoothed

log = logging.getLogger("edgecnn.runtime")

RATE_CHECK_S = 5.0  # after this long, a live source's measured sample rate is compared with the bundle's
RATE_TOLERANCE = 0.2


@dataclass
class SeriesOptions:
    source: str
    hop: int | None = None  # samples between window starts (default: a quarter window)
    average: int = 3  # windows in the smoothing mean
    threshold: float = 0.5  # averaged probability a detection must exceed
    suppress: float | None = None  # seconds before the same label is detected again (default: one window)
    resample: bool = False  # wav: at another sample rate is converted instead of refused
    top_k: int = 5
    headless: bool = False
    serve: str | None = None
    max_viewers: int = 4
    serve_token: str | None = None
    device: str | None = None
    realtime: bool = False
    loop: bool = False
    max_windows: int | None = None
    report: str | None = None
    reconnect_timeout: float = 30.0
    predictions: str | None = None  # JSON lines file, rotated by size (as for images)
    predictions_max_bytes: int = 10 << 20
    predictions_keep: int = 5
    health: str | None = None  # HOST:PORT of a /healthz server without the dashboard
    stale_after: float = DEFAULT_STALE_AFTER_S  # /healthz and the systemd watchdog: no result for this long
    banner: str | None = None


def check_series_options(opts: SeriesOptions) -> None:
    if opts.max_windows is not None and opts.max_windows < 1:
        raise EdgeCNNError(f"--max-frames must be at least 1, got {opts.max_windows}")
    if opts.top_k < 1:
        raise EdgeCNNError(f"--top-k must be at least 1, got {opts.top_k}")
    if opts.hop is not None and opts.hop < 1:
        raise EdgeCNNError(f"--hop must be at least 1 sample, got {opts.hop}")
    if opts.suppress is not None and opts.suppress < 0:
        raise EdgeCNNError(f"--suppress must not be negative, got {opts.suppress:g}")
    if opts.average < 1:
        raise EdgeCNNError(f"--average must be at least 1 window, got {opts.average}")
    if not 0.0 <= opts.threshold < 1.0:
        raise EdgeCNNError(f"--threshold must be in [0, 1), got {opts.threshold:g}")


def open_run_series_source(spec: dict, opts: SeriesOptions) -> SeriesSource:
    return open_series_source(opts.source, spec, opts.hop, resample=opts.resample, realtime=opts.realtime,
                              loop=opts.loop, reconnect_timeout=opts.reconnect_timeout)


def make_smoother(clf: Classifier, opts: SeriesOptions, sample_rate: float | None) -> ResultSmoother:
    """The smoother with --suppress converted to samples (default: one window length)."""
    length = int(clf.input_spec["length"])
    if opts.suppress is None:
        suppression = length
    elif not sample_rate:
        raise EdgeCNNError("--suppress is in seconds, and this bundle records no sample rate")
    else:
        suppression = int(round(opts.suppress * sample_rate))
    return ResultSmoother(clf.classes, opts.average, opts.threshold, suppression)


def series_image(samples: np.ndarray, width: int = 640, height: int = 360) -> np.ndarray:
    """A BGR plot of one window: each channel scaled to its own min..max, stacked in one panel."""
    import cv2

    img = np.full((height, width, 3), 24, np.uint8)
    x = np.nan_to_num(np.asarray(samples, np.float64))
    n, c = x.shape
    lo, hi = x.min(axis=0), x.max(axis=0)
    y = (x - lo) / np.where(hi > lo, hi - lo, 1.0)  # 0..1 per channel
    top, bottom = int(0.3 * height), height - 30
    xs = np.linspace(0, width - 1, n)
    colors = [(90, 200, 250), (120, 220, 120), (250, 160, 90), (200, 120, 250), (90, 120, 250), (220, 220, 90)]
    for j in range(c):
        ys = bottom - y[:, j] * (bottom - top)
        pts = np.stack([xs, ys], axis=1).round().astype(np.int32)
        cv2.polylines(img, [pts], False, colors[j % len(colors)], 1, cv2.LINE_AA)
    return img


class SeriesRenderer:
    """The per-window record, the sinks and the statistics."""

    def __init__(self, clf: Classifier, sinks: list[Sink], stats: RunStats, sample_rate: float | None,
                 health: Health | None = None):
        self.clf, self.sinks, self.stats, self.sample_rate = clf, sinks, stats, sample_rate
        self.health = health
        self.rate_ema: float | None = None
        self.prev_end: float | None = None
        self.age = LatencyHistogram()  # sample arrival -> result written

    def __call__(self, window: Window, top: list[tuple[str, float]], smoothed: Smoothed,
                 ms: dict[str, float]) -> bool:
        t3 = time.perf_counter()
        if self.prev_end is not None and t3 > self.prev_end:
            rate = 1.0 / (t3 - self.prev_end)
            self.rate_ema = rate if self.rate_ema is None else 0.9 * self.rate_ema + 0.1 * rate
        self.prev_end = t3
        record: dict[str, Any] = {
            "window": window.index, "samples": [window.start, window.end],
            "t": round(window.end / self.sample_rate, 4) if self.sample_rate else None,
            "captured": round(window.captured, 4),
            "age_ms": round(1e3 * (time.time() - window.captured), 3),
            "top": [{"label": lab, "prob": round(p, 5)} for lab, p in top],
            "smoothed": smoothed.to_dict(),
            "detected": smoothed.label if smoothed.detected else None,
            "ms": {k: round(v, 3) for k, v in ms.items()},
            "wps": round(self.rate_ema or 0.0, 2),
        }
        if window.after_gap:
            record["gap"] = True
        keep = True
        for sink in self.sinks:
            if isinstance(sink, (JsonLinesSink, PredictionsSink)):
                keep = sink.write(None, record) and keep
                continue
            image = None
            if sink.wants_image:  # the dashboard, while watched: a plot of the window with its top-k
                image = draw_overlay(series_image(window.samples), top, self.rate_ema, ms)
            keep = sink.write(image, {**record, "frame": window.index}) and keep  # the page's item number
        t4 = time.perf_counter()
        ms["render"] = 1e3 * (t4 - t3)
        ms["total"] = sum(ms.values())
        self.stats.add_frame(ms, t4)
        self.age.add(1e3 * (t4 - window.timestamp))
        if self.health is not None:
            self.health.result(1e3 * (t4 - window.timestamp))
        return keep


def open_series_sinks(clf: Classifier, opts: SeriesOptions, source: SeriesSource, stdout: IO[str],
                      stderr: IO[str], health: Health | None = None) -> list[Sink]:
    sinks: list[Sink] = []
    if opts.headless or not (opts.serve or opts.predictions):
        sinks.append(JsonLinesSink(stdout))
    if opts.predictions:
        sinks.append(PredictionsSink(opts.predictions, opts.predictions_max_bytes, opts.predictions_keep))
    if opts.serve:
        from .server import DashboardSink, device_name

        dash = DashboardSink(opts.serve, info={**clf.describe(), "profile": opts.device, "device": device_name(),
                                               "source": source.describe},
                             counters=lambda: {"dropped": source.dropped, "reconnects": source.reconnects},
                             max_viewers=opts.max_viewers, token=opts.serve_token, health=health)
        sinks.append(dash)
        print(f"edgecnn: dashboard on {dash.address}{'?token=TOKEN' if opts.serve_token else ''} "
              f"(plot {dash.address}stream, JSON {dash.address}api/stats)", file=stderr, flush=True)
    return sinks


def run_series(clf: Classifier, opts: SeriesOptions, source: SeriesSource | None = None,
               stdout: IO[str] | None = None, stderr: IO[str] | None = None,
               stop: threading.Event | None = None) -> dict:
    """Classify the windows of `opts.source` (or the opened `source`) until it ends, --max-frames windows,
    `stop` is set (SIGTERM, Ctrl-C: between two windows) or KeyboardInterrupt. Returns the summary (also
    printed to stderr, and written to `opts.report`)."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    check_series_options(opts)
    spec = clf.input_spec
    source = source or open_run_series_source(spec, opts)
    stats = RunStats((*STAGES, "total"))
    sinks: list[Sink] = []
    ok = False
    health: Health | None = None
    health_server: HealthServer | None = None
    try:
        health = Health(opts.stale_after, sources=lambda: [{"source": source.describe, **source.status()}])
        if opts.health:
            health_server = HealthServer(opts.health, health)
            print(f"edgecnn: health on {health_server.address}", file=stderr, flush=True)
        sinks = open_series_sinks(clf, opts, source, stdout, stderr, health)
        rate = source.sample_rate
        smoother = make_smoother(clf, opts, rate)
        render = SeriesRenderer(clf, sinks, stats, rate, health)
        interrupted, lost = False, None
        rate_checked = False
        start = stats.start = time.perf_counter()
        try:
            while (window := source.read(stop)) is not None:
                if stats.frames == 0 and opts.banner:
                    print(opts.banner, file=stderr, flush=True)
                if window.after_gap:
                    smoother.reset()  # no average across a hole in the stream
                pred = clf.predict_series(window.samples)
                t = time.perf_counter()
                smoothed = smoother.update(pred.probs, window.end)
                ms = {"capture": window.read_ms, **pred.timings}
                ms["postprocess"] = ms.get("postprocess", 0.0) + 1e3 * (time.perf_counter() - t)
                stats.dropped = source.dropped
                if not render(window, list(pred.top), smoothed, ms):
                    break
                if opts.max_windows is not None and stats.frames >= opts.max_windows:
                    break
                if not rate_checked and rate and time.perf_counter() - start > RATE_CHECK_S:
                    rate_checked = _check_rate(source, rate)
        except KeyboardInterrupt:
            interrupted = True
        except EdgeCNNError as e:
            if stats.frames == 0:
                raise
            lost = e  # mid-stream (a port that did not come back): summary first, then the error
        interrupted = interrupted or (stop is not None and stop.is_set())
        elapsed = time.perf_counter() - start
        summary = series_summary(clf, opts, source, stats, smoother, elapsed, interrupted)
        summary["age"] = {k: v for k, v in render.age.stats().items() if k in ("p50", "p90", "p99", "mean")}
        ok = True
    finally:
        source.close()
        failed = close_sinks(sinks, ok)
        close_health(health, health_server)
    return end_run(summary, format_series_summary(summary), opts.report, stderr, failed, lost)


def _check_rate(source: SeriesSource, rate: float) -> bool:
    """Warn once when a live source delivers samples at a rate far from the one the model was trained at."""
    measured = source.rate_measured
    if measured is None:
        return False
    if abs(measured - rate) > RATE_TOLERANCE * rate:
        log.warning("%s delivers %.1f samples/s; the bundle was trained at %g Hz", source.describe, measured, rate)
    return True


def series_summary(clf: Classifier, opts: SeriesOptions, source: SeriesSource, stats: RunStats,
                   smoother: ResultSmoother, elapsed: float, interrupted: bool) -> dict:
    desc = clf.backend.describe()
    n = stats.frames
    working = elapsed - source.retry_s
    spec = clf.input_spec
    return {
        "kind": "series",
        "windows": n,
        "frames": n,  # the image summary's name for the same count
        "length": int(spec["length"]),
        "hop": source.windows.hop,
        "samples": source.samples,
        "sample_rate": source.sample_rate,
        "sample_rate_measured": source.rate_measured,
        "seconds": elapsed,
        "retry_seconds": source.retry_s,
        "wps": n / working if working > 0 else 0.0,
        "source": opts.source,
        "backend": desc["backend"],
        "precision": desc["precision"],
        "artifact": desc["artifact"],
        "threads": desc["threads"],
        "dropped": source.dropped,
        "reconnects": source.reconnects,
        "detections": smoother.detections,
        "smoothing": {"average": smoother.average, "threshold": smoother.threshold,
                      "suppress_samples": smoother.suppression},
        "interrupted": interrupted,
        "stages": {k: {q: float(v[q]) for q in ("p50", "p90", "p99", "mean")} for k, v in stats.stage_stats().items()},
    }


def format_series_summary(s: dict) -> str:
    lines = [
        f"{s['windows']} windows ({s['length']} samples every {s['hop']}) in {s['seconds']:.2f} s = "
        f"{s['wps']:.1f} windows/s, {s['detections']} detections  [{s['backend']} {s['precision']} {s['artifact']}, "
        f"threads {s['threads'] or 'default'}]" + ("  (interrupted)" if s.get("interrupted") else "")
    ]
    if s.get("dropped") or s.get("reconnects"):
        lines.append(f"dropped {s['dropped']} stale windows, reopened the source {s['reconnects']} times "
                     f"({s['retry_seconds']:.2f} s without data)")
    if s.get("sample_rate_measured"):
        lines.append(f"the source delivered {s['sample_rate_measured']:.1f} samples/s"
                     + (f" (the bundle's rate: {s['sample_rate']:g} Hz)" if s.get("sample_rate") else ""))
    lines.append(f"{'stage (ms)':<12}{'p50':>9}{'p90':>9}{'p99':>9}{'mean':>9}")
    for stage in (*STAGES, "total"):
        st = s["stages"][stage]
        lines.append(f"{stage:<12}{st['p50']:>9.3f}{st['p90']:>9.3f}{st['p99']:>9.3f}{st['mean']:>9.3f}")
    return "\n".join(lines)


__all__ = ["SeriesOptions", "default_hop", "run_series", "series_image"]
