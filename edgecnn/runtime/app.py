"""`edgecnn run`: real-time classification of a camera, stream, video or image folder.

One frame's path:  capture -> (ROI / centre crop) -> preprocess -> inference -> postprocess
(softmax, optional EMA smoothing, top-k) -> render (overlay + sinks). The stages run overlapped in
threads (`pipeline.py`); rendering and the sinks run here, in the caller's thread, in frame order.
Each stage times its own work with time.perf_counter ("capture" = reading/decoding the frame); the
statistics are bounded (`profile.stats.RunStats`: fixed-size histograms, however long the run), and
the run ends with a summary (frames, FPS, p50/p90/p99/mean per stage, end-to-end latency).
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from typing import IO

from ..errors import EdgeCNNError
from ..profile.stats import LatencyHistogram, RunStats
from ..utils import atomic_write_json
from .classifier import Classifier
from .health import DEFAULT_STALE_AFTER_S, Health, HealthServer
from .overlay import STAGES, draw_overlay
from .pipeline import Job, Pipeline, Stages
from .sinks import JsonLinesSink, Sink, VideoSink, WindowSink, display_available
from .sources import Source, open_source

log = logging.getLogger("edgecnn.runtime")


@dataclass
class RunOptions:
    source: str
    top_k: int = 5
    headless: bool = False
    save: str | None = None
    serve: str | None = None
    realtime: bool = False
    roi: tuple[int, int, int, int] | None = None
    center_crop: bool = False
    smooth: float | None = None
    max_frames: int | None = None
    report: str | None = None
    reconnect_timeout: float = 30.0
    loop: bool = False  # play a file or folder again from the start at its end
    width: int | None = None
    height: int | None = None
    banner: str | None = None  # printed to stderr once the first frame is in (after any bad-input error)
    max_viewers: int = 4  # --serve: concurrent /stream (and /api/events) clients
    serve_token: str | None = None  # --serve: required as ?token= or a header when set
    device: str | None = None  # the device profile applied (shown by the dashboard)
    pipelined: bool = True  # False: the stages one after the other in one thread (a benchmark's baseline)
    health: str | None = None  # HOST:PORT of a /healthz server without the dashboard
    stale_after: float = DEFAULT_STALE_AFTER_S  # /healthz and the watchdog: no result for this long = stale


def parse_roi(text: str) -> tuple[int, int, int, int]:
    parts = text.split(",")
    if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
        raise EdgeCNNError(f"--roi {text!r}: expected x,y,w,h in pixels, e.g. 100,50,320,320")
    x, y, w, h = (int(p) for p in parts)
    if w == 0 or h == 0:
        raise EdgeCNNError(f"--roi {text!r}: width and height must be positive")
    return x, y, w, h


def crop_box(shape: tuple[int, ...], roi: tuple[int, int, int, int] | None,
             center_crop: bool) -> tuple[int, int, int, int] | None:
    """(x, y, w, h) of the region to classify in a frame of `shape`, or None for the whole frame."""
    fh, fw = shape[:2]
    x, y, w, h = roi if roi is not None else (0, 0, fw, fh)
    x2, y2 = min(x + w, fw), min(y + h, fh)
    if x >= fw or y >= fh or x2 <= x or y2 <= y:
        raise EdgeCNNError(f"--roi {x},{y},{w},{h} lies outside the {fw}x{fh} frame")
    x, y, w, h = x, y, x2 - x, y2 - y
    if center_crop:
        side = min(w, h)
        x, y, w, h = x + (w - side) // 2, y + (h - side) // 2, side, side
    if roi is None and not center_crop:
        return None
    return x, y, w, h


def format_summary(summary: dict) -> str:
    lines = [
        f"{summary['frames']} frames in {summary['seconds']:.2f} s = {summary['fps']:.1f} FPS  "
        f"[{summary['backend']} {summary['precision']} {summary['artifact']}, threads {summary['threads'] or 'default'}]"
        + ("  (interrupted)" if summary.get("interrupted") else "")
    ]
    if summary.get("dropped") or summary.get("reconnects") or summary.get("retry_seconds"):
        lines.append(f"dropped {summary['dropped']} stale frames, reconnected {summary['reconnects']} times; "
                     f"{summary['retry_seconds']:.2f} s without a source left out of the FPS "
                     f"({summary['fps_wall']:.1f} FPS over the whole {summary['seconds']:.2f} s)")
    lines.append(f"{'stage (ms)':<12}{'p50':>9}{'p90':>9}{'p99':>9}{'mean':>9}")
    for stage in (*STAGES, "total"):
        s = summary["stages"][stage]
        lines.append(f"{stage:<12}{s['p50']:>9.2f}{s['p90']:>9.2f}{s['p99']:>9.2f}{s['mean']:>9.2f}")
    return "\n".join(lines)


def check_options(opts: RunOptions) -> None:
    if opts.smooth is not None and not 0 < opts.smooth <= 1:
        raise EdgeCNNError(f"--smooth {opts.smooth}: ALPHA must be in (0, 1] (weight of the newest frame)")
    if opts.max_frames is not None and opts.max_frames < 1:
        raise EdgeCNNError(f"--max-frames must be at least 1, got {opts.max_frames}")
    if opts.top_k < 1:
        raise EdgeCNNError(f"--top-k must be at least 1, got {opts.top_k}")
    if opts.max_viewers < 1:
        raise EdgeCNNError(f"--max-viewers must be at least 1, got {opts.max_viewers}")
    if not opts.stale_after > 0:
        raise EdgeCNNError(f"--stale-after must be positive, got {opts.stale_after:g}")


def open_run_source(opts: RunOptions) -> Source:
    return open_source(opts.source, realtime=opts.realtime, width=opts.width, height=opts.height,
                       reconnect_timeout=opts.reconnect_timeout, loop=opts.loop)


def open_sinks(clf: Classifier, opts: RunOptions, source: Source, stdout: IO[str], stderr: IO[str],
               health: Health | None = None) -> list[Sink]:
    """The sinks the options ask for (a window, JSON lines, a video file, an MJPEG server)."""
    sinks: list[Sink] = []
    try:
        if opts.headless:
            sinks.append(JsonLinesSink(stdout))
        elif display_available():
            sinks.append(WindowSink(f"edgecnn: {clf.bundle.name}"))
        elif not (opts.save or opts.serve):
            print("edgecnn: no display here: printing JSON lines (use --serve HOST:PORT to watch over HTTP)",
                  file=stderr)
            sinks.append(JsonLinesSink(stdout))
        if opts.save:
            sinks.append(VideoSink(opts.save, source.fps))
        if opts.serve:
            from .server import DashboardSink, device_name

            dash = DashboardSink(opts.serve, info={**clf.describe(), "profile": opts.device, "device": device_name(),
                                                   "source": source.describe},
                                 counters=lambda: {"dropped": source.dropped, "reconnects": source.reconnects},
                                 max_viewers=opts.max_viewers, token=opts.serve_token, health=health)
            sinks.append(dash)
            print(f"edgecnn: dashboard on {dash.address}{'?token=TOKEN' if opts.serve_token else ''} "
                  f"(MJPEG {dash.address}stream, JSON {dash.address}api/stats)", file=stderr, flush=True)
    except BaseException:
        close_sinks(sinks, ok=False)
        raise
    return sinks


def close_sinks(sinks: list[Sink], ok: bool) -> EdgeCNNError | None:
    """Close every sink; the first EdgeCNNError one raised (a video that could not be completed) is returned."""
    failed: EdgeCNNError | None = None
    for sink in sinks:
        try:
            sink.close(ok and failed is None)
        except EdgeCNNError as e:
            failed = failed or e
    return failed


class Renderer:
    """The last stage, in the caller's thread: the per-frame record, overlay, sinks, statistics."""

    def __init__(self, sinks: list[Sink], stats: RunStats, start: float, health: Health | None = None):
        self.sinks, self.stats, self.start, self.health = sinks, stats, start, health
        self.fps_ema: float | None = None
        self.prev_end = start
        self.last_render_ms: dict[str, float] = {}
        self.latency = LatencyHistogram()  # capture -> rendered, queueing included

    def __call__(self, job: Job) -> bool:
        """Render one finished frame; False when a sink asked to stop."""
        t3 = time.perf_counter()
        interval = t3 - self.prev_end
        self.prev_end = t3
        if interval > 0:
            self.fps_ema = 1 / interval if self.fps_ema is None else 0.9 * self.fps_ema + 0.1 / interval
        frame = job.frame
        record = {"frame": frame.index, "t": round(t3 - self.start, 4),
                  "top": [{"label": lab, "prob": round(p, 5)} for lab, p in job.top],
                  "ms": {k: round(v, 3) for k, v in job.ms.items()},
                  "fps": round(self.fps_ema or 0.0, 2)}
        if frame.name is not None:
            record["name"] = frame.name
        image = None
        if any(s.wants_image for s in self.sinks):  # per frame: the dashboard wants one only while watched
            image = draw_overlay(frame.image, job.top, self.fps_ema, {**job.ms, **self.last_render_ms}, job.box)
        keep = True
        for sink in self.sinks:
            keep = sink.write(image, record) and keep
        t4 = time.perf_counter()
        job.ms["render"] = 1e3 * (t4 - t3)
        self.last_render_ms = {"render": job.ms["render"]}
        job.ms["total"] = sum(job.ms.values())  # one frame's work through every stage
        self.stats.add_frame(job.ms, t4)
        self.latency.add(1e3 * (t4 - job.captured))
        if self.health is not None:
            self.health.result(1e3 * (t4 - job.captured))
        return keep


def run(clf: Classifier, opts: RunOptions, source: Source | None = None, stdout: IO[str] | None = None,
        stderr: IO[str] | None = None, stats: RunStats | None = None) -> dict:
    """Classify frames from `opts.source` (or the already opened `source`) until it ends, `max_frames`,
    'q' in the window, or Ctrl-C. Returns the summary (also printed to stderr, and written to
    `opts.report` as JSON). The source is closed at the end. `stats` (a RunStats over STAGES +
    "total") may be passed in so that another thread can read `stats.snapshot()` during the run.
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    check_options(opts)
    source = source or open_run_source(opts)
    stats = stats or RunStats((*STAGES, "total"))
    sinks: list[Sink] = []
    pipeline: Pipeline | None = None
    health_server: HealthServer | None = None
    ok = False
    health: Health | None = None
    try:
        health = Health(opts.stale_after, sources=lambda: [{"source": source.describe, **source.status()}])
        if opts.health:
            health_server = HealthServer(opts.health, health)
            print(f"edgecnn: health on {health_server.address}", file=stderr, flush=True)
        sinks = open_sinks(clf, opts, source, stdout, stderr, health)
        stages = Stages(clf, lambda shape: crop_box(shape, opts.roi, opts.center_crop), opts.smooth)
        pipeline = Pipeline(source, stages, opts.max_frames, sequential=not opts.pipelined)
        interrupted = False
        lost: EdgeCNNError | None = None
        start = stats.start = time.perf_counter()
        render = Renderer(sinks, stats, start, health)
        try:
            for job in pipeline:
                if stats.frames == 0 and opts.banner:
                    print(opts.banner, file=stderr, flush=True)
                stats.dropped = source.dropped  # stale frames a live source skipped, for snapshot()
                if not render(job):
                    break
        except KeyboardInterrupt:
            interrupted = True
        except EdgeCNNError as e:
            if stats.frames == 0:
                raise
            lost = e  # mid-stream (a live source that did not come back): summary first, then the error
        elapsed = time.perf_counter() - start
        summary = make_summary(clf, opts, source, stats, elapsed, interrupted)
        summary["frames_in"] = pipeline.frames_in
        if source.truncation and lost is None and not interrupted:
            lost = EdgeCNNError(source.truncation)  # the summary is printed, then this line, exit 2
        summary["latency"] = {k: v for k, v in render.latency.stats().items() if k in ("p50", "p90", "p99", "mean")}
        ok = True
    finally:
        if pipeline is not None:
            pipeline.close()
        source.close()
        failed = close_sinks(sinks, ok)
        if health_server is not None:
            health_server.close()
        if health is not None:
            health.close()
    print(format_summary(summary), file=stderr, flush=True)
    if opts.report:
        atomic_write_json(opts.report, summary)
    if failed is not None:
        raise failed
    if lost is not None:
        raise lost
    return summary


def make_summary(clf: Classifier, opts: RunOptions, source: Source, stats: RunStats, elapsed: float,
                 interrupted: bool) -> dict:
    desc = clf.backend.describe()
    n = stats.frames
    stage_stats = stats.stage_stats()
    working = elapsed - source.retry_s  # time with a source to read: reconnect outages left out
    return {
        "frames": n,
        "seconds": elapsed,
        "retry_seconds": source.retry_s,
        "fps": n / working if working > 0 else 0.0,
        "fps_wall": n / elapsed if elapsed > 0 else 0.0,
        "source": opts.source,
        "backend": desc["backend"],
        "precision": desc["precision"],
        "artifact": desc["artifact"],
        "threads": desc["threads"],
        "pipelined": opts.pipelined,
        "dropped": source.dropped,
        "truncated": source.truncation,
        "reconnects": source.reconnects,
        "interrupted": interrupted,
        "stages": {k: {q: float(v[q]) for q in ("p50", "p90", "p99", "mean")} for k, v in stage_stats.items()},
    }
