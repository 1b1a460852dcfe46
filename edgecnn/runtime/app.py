"""`edgecnn run`: real-time classification of a camera, stream, video or image folder.

One frame's path:  capture -> (ROI / centre crop) -> preprocess -> inference -> postprocess
(softmax, optional EMA smoothing, top-k) -> render (overlay + sinks). The stages run overlapped in
threads (`pipeline.py`); rendering and the sinks run here, in the caller's thread. Each stage times
its own work with time.perf_counter ("capture" = reading/decoding the frame, "wait" = a live source's
wait for it, not work); the statistics are bounded (`profile.stats.RunStats`: fixed-size histograms,
however long the run), and the run ends with a summary (frames, FPS, p50/p90/p99/mean per stage,
result age, frames dropped, per source). Several sources (`--source A --source B`) share one
Classifier; each result names its source. Each result carries `captured` (wall clock of the read)
and `age_ms` (its age when the record was made).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Sequence

from ..errors import EdgeCNNError
from ..profile.stats import LatencyHistogram, RunStats
from .classifier import Classifier
from .health import DEFAULT_STALE_AFTER_S, Health, HealthServer
from .overlay import STAGES, draw_overlay
from .pipeline import LATENCY_MODES, Job, Pipeline, Stages
from .sinks import (
    JsonLinesSink,
    PredictionsSink,
    Sink,
    VideoSink,
    WindowSink,
    close_health,
    close_sinks,
    display_available,
    end_run,
)
from .sources import Source, open_source, redact_uri

log = logging.getLogger("edgecnn.runtime")


@dataclass
class RunOptions:
    source: str | Sequence[str]  # one URI, or several (one Classifier for all)
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
    latency_mode: str | None = None  # fresh | throughput; None: fresh for live sources, throughput for files
    predictions: str | None = None  # JSON lines file, rotated by size
    predictions_max_bytes: int = 10 << 20
    predictions_keep: int = 5  # rotated files kept beside the current one

    @property
    def sources(self) -> list[str]:
        return [self.source] if isinstance(self.source, str) else [str(s) for s in self.source]


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
    age = summary.get("age_ms") or {}
    if age.get("count"):
        lines.append(f"result age (capture to result, {summary.get('latency_mode')} mode): p50 {age['p50']:.1f} ms, "
                     f"p99 {age['p99']:.1f} ms")
    if len(summary.get("sources", [])) > 1:
        for src in summary["sources"]:
            lines.append(f"  {src['source']}: {src['frames']} frames, {src['fps']:.1f} FPS, age p50 "
                         f"{src['age_ms']['p50']:.1f} ms, dropped {src['dropped']}, reconnected {src['reconnects']}, "
                         f"{src['state']}")
    lines.append(f"{'stage (ms)':<12}{'p50':>9}{'p90':>9}{'p99':>9}{'mean':>9}")
    for stage in (*STAGES, "total", "wait"):
        if stage in summary["stages"]:
            s = summary["stages"][stage]
            lines.append(f"{stage:<12}{s['p50']:>9.2f}{s['p90']:>9.2f}{s['p99']:>9.2f}{s['mean']:>9.2f}"
                         + ("   (not work: a live source waiting for the frame)" if stage == "wait" else ""))
    return "\n".join(lines)


def check_options(opts: RunOptions) -> None:
    if not opts.sources:
        raise EdgeCNNError("--source is required")
    if len(set(opts.sources)) != len(opts.sources):
        raise EdgeCNNError(f"--source given twice: {', '.join(opts.sources)}")
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
    if opts.latency_mode is not None and opts.latency_mode not in LATENCY_MODES:
        raise EdgeCNNError(f"--latency-mode must be one of {', '.join(LATENCY_MODES)}, got {opts.latency_mode!r}")
    if opts.predictions_max_bytes < 1024:
        raise EdgeCNNError(f"--predictions-max-mb must be at least 0.001 (1 KiB), got {opts.predictions_max_bytes / 2**20:g}")
    if opts.predictions_keep < 1:
        raise EdgeCNNError(f"--predictions-keep must be at least 1, got {opts.predictions_keep}")
    if opts.predictions and not Path(opts.predictions).parent.is_dir():
        raise EdgeCNNError(f"--predictions {opts.predictions}: folder {Path(opts.predictions).parent} does not exist")
    if not opts.pipelined and len(opts.sources) > 1:
        raise EdgeCNNError("the sequential baseline (pipelined=False) takes one source")
    if opts.save and len(opts.sources) > 1:
        raise EdgeCNNError("--save writes one source's video; with several --source, use --predictions or --serve")


def open_run_sources(opts: RunOptions) -> list[Source]:
    """Every --source, opened (live ones connect in their own threads); all closed if one fails."""
    sources: list[Source] = []
    try:
        for uri in opts.sources:
            sources.append(open_source(uri, realtime=opts.realtime, width=opts.width, height=opts.height,
                                       reconnect_timeout=opts.reconnect_timeout, loop=opts.loop))
    except BaseException:
        for src in sources:
            src.close()
        raise
    return sources


def open_run_source(opts: RunOptions) -> Source:
    """The first --source (one-source callers)."""
    return open_source(opts.sources[0], realtime=opts.realtime, width=opts.width, height=opts.height,
                       reconnect_timeout=opts.reconnect_timeout, loop=opts.loop)


class SourceStats:
    """What the run knows about one source: results, their age, their rate; the source's own counters."""

    def __init__(self, source: Source, pipeline_drops: list[int], index: int):
        self.source, self.index = source, index
        self._pipeline_drops = pipeline_drops
        self.frames = 0
        self.age = LatencyHistogram()
        self.fps_ema: float | None = None
        self.prev_end: float | None = None

    @property
    def dropped(self) -> int:
        """Frames read but never classified: replaced in the source (newest only) or between the stages."""
        return self.source.dropped + self._pipeline_drops[self.index]

    def tick(self, now: float, age_ms: float) -> float:
        self.frames += 1
        self.age.add(age_ms)
        if self.prev_end is not None and now > self.prev_end:
            rate = 1 / (now - self.prev_end)
            self.fps_ema = rate if self.fps_ema is None else 0.9 * self.fps_ema + 0.1 * rate
        self.prev_end = now
        return self.fps_ema or 0.0

    def view(self) -> dict:
        """For /api/stats (read from another thread: plain numbers only)."""
        age = self.age.stats() if self.frames else {}
        return {"source": self.source.name, **self.source.status(), "frames": self.frames,
                "fps": round(self.fps_ema or 0.0, 2), "dropped": self.dropped, "reconnects": self.source.reconnects,
                "outage_s": round(self.source.outage_s(), 3),
                "age_ms": {k: round(float(age[k]), 2) for k in ("p50", "p99")} if age else None}


def open_sinks(clf: Classifier, opts: RunOptions, source: Source, stdout: IO[str], stderr: IO[str],
               health: Health | None = None, live: list[SourceStats] | None = None,
               stats: RunStats | None = None) -> list[Sink]:
    """The sinks the options ask for (a window, JSON lines, a predictions file, a video file, an MJPEG server)."""
    sinks: list[Sink] = []
    try:
        if opts.headless:
            sinks.append(JsonLinesSink(stdout))
        elif display_available():
            sinks.append(WindowSink(f"edgecnn: {clf.bundle.name}"))
        elif not (opts.save or opts.serve or opts.predictions):
            print("edgecnn: no display here: printing JSON lines (use --serve HOST:PORT to watch over HTTP)",
                  file=stderr)
            sinks.append(JsonLinesSink(stdout))
        if opts.predictions:
            sinks.append(PredictionsSink(opts.predictions, opts.predictions_max_bytes, opts.predictions_keep))
        if opts.save:
            sinks.append(VideoSink(opts.save, lambda: source.fps))
        if opts.serve:
            from .server import DashboardSink, device_name

            per_source = live if live is not None else []  # filled once the pipeline runs

            def counters() -> dict:
                views = [s.view() for s in per_source]
                return {"dropped": sum(v["dropped"] for v in views),
                        "reconnects": sum(v["reconnects"] for v in views), "sources": views,
                        "latency_mode": opts.latency_mode,
                        "age_ms": ({k: round(float(v), 2) for k, v in stats.age.stats().items() if k in ("p50", "p99")}
                                   if stats is not None and stats.age.count else None)}

            dash = DashboardSink(opts.serve, info={**clf.describe(), "profile": opts.device, "device": device_name(),
                                                   "source": source.describe if len(opts.sources) == 1
                                                   else ", ".join(redact_uri(u) for u in opts.sources)},
                                 counters=counters, max_viewers=opts.max_viewers, token=opts.serve_token,
                                 health=health)
            sinks.append(dash)
            print(f"edgecnn: dashboard on {dash.address}{'?token=TOKEN' if opts.serve_token else ''} "
                  f"(MJPEG {dash.address}stream, JSON {dash.address}api/stats)", file=stderr, flush=True)
    except BaseException:
        close_sinks(sinks, ok=False)
        raise
    return sinks


class Renderer:
    """The last stage, in the caller's thread: the per-frame record, overlay, sinks, statistics."""

    def __init__(self, sinks: list[Sink], stats: RunStats, start: float, health: Health | None = None,
                 per_source: list[SourceStats] | None = None):
        self.sinks, self.stats, self.start, self.health = sinks, stats, start, health
        self.per_source = per_source or []
        self.fps_ema: float | None = None
        self.last_render_ms: dict[str, float] = {}
        self.latency = LatencyHistogram()  # capture -> rendered, queueing included

    def __call__(self, job: Job) -> bool:
        """Render one finished frame; False when a sink asked to stop."""
        t3 = time.perf_counter()
        age_ms = 1e3 * (t3 - job.captured)
        frame = job.frame
        src = self.per_source[job.source] if self.per_source else None
        fps = src.tick(t3, age_ms) if src is not None else 0.0
        self.fps_ema = fps
        record = {"frame": frame.index, **({"source": src.source.name} if src is not None else {}),
                  "t": round(t3 - self.start, 4), "captured": round(frame.captured, 4), "age_ms": round(age_ms, 2),
                  "top": [{"label": lab, "prob": round(p, 5)} for lab, p in job.top],
                  "ms": {k: round(v, 3) for k, v in job.ms.items()},
                  "fps": round(fps, 2)}
        if frame.name is not None:
            record["name"] = frame.name
        image = None
        if any(s.wants_image for s in self.sinks):  # per frame: the dashboard wants one only while watched
            work = {k: v for k, v in job.ms.items() if k != "wait"}
            image = draw_overlay(frame.image, job.top, fps, {**work, **self.last_render_ms}, job.box)
        keep = True
        for sink in self.sinks:
            keep = sink.write(image, record) and keep
        t4 = time.perf_counter()
        job.ms["render"] = 1e3 * (t4 - t3)
        self.last_render_ms = {"render": job.ms["render"]}
        # one frame's work through every stage (waiting for a live frame is not work)
        job.ms["total"] = sum(v for k, v in job.ms.items() if k != "wait")
        self.stats.add_frame(job.ms, t4, age_ms)
        self.latency.add(1e3 * (t4 - job.captured))
        if self.health is not None:
            self.health.result(age_ms)
        return keep


def run(clf: Classifier, opts: RunOptions, source: Source | list[Source] | None = None, stdout: IO[str] | None = None,
        stderr: IO[str] | None = None, stats: RunStats | None = None, stop: threading.Event | None = None) -> dict:
    """Classify frames from `opts.source` (or the already opened `source`, one or a list) until it
    ends, `max_frames`, 'q' in the window, `stop` set (SIGTERM), or Ctrl-C. Returns the summary (also
    printed to stderr, and written to `opts.report` as JSON). The sources are closed at the end.
    `stats` (a RunStats over STAGES + "total") may be passed in so that another thread can read
    `stats.snapshot()` during the run.
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    check_options(opts)
    sources = (source if isinstance(source, list) else [source]) if source is not None else open_run_sources(opts)
    live = any(getattr(s, "live", False) for s in sources)
    stats = stats or RunStats((*STAGES, "total", *(("wait",) if live else ())))
    sinks: list[Sink] = []
    pipeline: Pipeline | None = None
    health_server: HealthServer | None = None
    ok = False
    health: Health | None = None
    per_source: list[SourceStats] = []
    try:
        mode = opts.latency_mode or ("fresh" if any(s.threaded for s in sources) else "throughput")
        stages = [Stages(clf, lambda shape: crop_box(shape, opts.roi, opts.center_crop), opts.smooth)
                  for _ in sources]
        health = Health(opts.stale_after, sources=lambda: [{"source": s.name, **s.status()} for s in sources])
        if opts.health:
            health_server = HealthServer(opts.health, health)
            print(f"edgecnn: health on {health_server.address}", file=stderr, flush=True)
        sinks = open_sinks(clf, opts, sources[0], stdout, stderr, health, per_source, stats)
        # the threads start last, when everything that takes their results is ready
        pipeline = Pipeline(sources, stages, opts.max_frames, sequential=not opts.pipelined, latency_mode=mode,
                            stop=stop)
        per_source.extend(SourceStats(s, pipeline.dropped_by_source, i) for i, s in enumerate(sources))
        interrupted = False
        lost: EdgeCNNError | None = None
        start = stats.start = time.perf_counter()
        for s in sources:
            if hasattr(s, "reset_outage"):
                s.reset_outage(start)
        render = Renderer(sinks, stats, start, health, per_source)
        try:
            for job in pipeline:
                if stats.frames == 0 and opts.banner:
                    print(opts.banner, file=stderr, flush=True)
                stats.dropped = sum(ps.dropped for ps in per_source)  # for snapshot()
                if not render(job):
                    break
            interrupted = stop is not None and stop.is_set()
        except KeyboardInterrupt:
            interrupted = True
        except EdgeCNNError as e:
            if stats.frames == 0:
                raise
            lost = e  # mid-stream (a live source that did not come back): summary first, then the error
        elapsed = time.perf_counter() - start
        summary = make_summary(clf, opts, sources, stats, elapsed, interrupted, per_source, mode)
        summary["frames_in"] = pipeline.frames_in
        summary["dropped_by"] = {"source": sum(s.dropped for s in sources), **pipeline.dropped_by}
        truncation = next((s.truncation for s in sources if s.truncation), None)
        if truncation and lost is None and not interrupted:
            lost = EdgeCNNError(truncation)  # the summary is printed, then this line, exit 2
        summary["latency"] = {k: v for k, v in render.latency.stats().items() if k in ("p50", "p90", "p99", "mean")}
        ok = True
    finally:
        if pipeline is not None:
            pipeline.close()
        for s in sources:
            s.close()
        failed = close_sinks(sinks, ok)
        close_health(health, health_server)
    return end_run(summary, format_summary(summary), opts.report, stderr, failed, lost)


def _outage(source: Source) -> float:
    return source.outage_s() if hasattr(source, "outage_s") else float(getattr(source, "retry_s", 0.0))


def make_summary(clf: Classifier, opts: RunOptions, sources: Source | list[Source], stats: RunStats, elapsed: float,
                 interrupted: bool, per_source: list[SourceStats] | None = None, mode: str | None = None) -> dict:
    sources = sources if isinstance(sources, list) else [sources]
    desc = clf.backend.describe()
    n = stats.frames
    stage_stats = stats.stage_stats()
    outages = [min(_outage(s), elapsed) for s in sources]
    by_source = []
    for i, s in enumerate(sources):
        ps = per_source[i] if per_source else None
        frames = ps.frames if ps is not None else n
        working = elapsed - outages[i]  # time with a source to read: outages left out
        age = ps.age.stats() if ps is not None and ps.frames else {}
        by_source.append({
            "source": getattr(s, "name", s.describe), "frames": frames,
            "fps": frames / working if working > 0 else 0.0,
            "dropped": ps.dropped if ps is not None else s.dropped, "reconnects": s.reconnects,
            "retry_seconds": outages[i],
            "state": s.status()["state"] if hasattr(s, "status") else "ended",
            "age_ms": {k: float(age[k]) for k in ("p50", "p90", "p99", "mean")} if age else
            {k: 0.0 for k in ("p50", "p90", "p99", "mean")},
        })
    age_all = stats.age.stats() if getattr(stats, "age", None) is not None and stats.age.count else {}
    return {
        "frames": n,
        "seconds": elapsed,
        "retry_seconds": max(outages) if len(outages) == 1 else sum(outages) / len(outages),
        "fps": sum(b["fps"] for b in by_source),
        "fps_wall": n / elapsed if elapsed > 0 else 0.0,
        "source": opts.source if isinstance(opts.source, str) else list(opts.source),
        "backend": desc["backend"],
        "precision": desc["precision"],
        "artifact": desc["artifact"],
        "threads": desc["threads"],
        "pipelined": opts.pipelined,
        "latency_mode": mode,
        "dropped": sum(b["dropped"] for b in by_source),
        "truncated": next((s.truncation for s in sources if s.truncation), None),
        "reconnects": sum(s.reconnects for s in sources),
        "interrupted": interrupted,
        "age_ms": {**{k: float(age_all[k]) for k in ("p50", "p90", "p99", "mean")}, "count": int(age_all["count"])}
        if age_all else {"count": 0},
        "sources": by_source,
        "stages": {k: {q: float(v[q]) for q in ("p50", "p90", "p99", "mean")} for k, v in stage_stats.items()},
    }
