"""`edgecnn run`: real-time classification of a camera, stream, video or image folder.

One frame's path:  capture -> (ROI / centre crop) -> preprocess -> inference -> postprocess
(softmax, optional EMA smoothing, top-k) -> render (overlay + sinks). Each stage is timed with
time.perf_counter; the run ends with a summary (frames, FPS, p50/p90/p99 per stage).

Files and folders are read and preprocessed one frame ahead in a thread (nothing dropped), so
decoding overlaps inference; live sources are read in the loop, newest frame first. "capture" is
the time the loop waited for its next frame (near 0 when frames are ready ahead of inference).
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from ..errors import EdgeCNNError
from ..preprocess import softmax
from ..profile.stats import latency_stats
from ..utils import atomic_write_json
from .classifier import Classifier
from .overlay import STAGES, draw_overlay
from .sinks import JsonLinesSink, Sink, VideoSink, WindowSink, display_available
from .sources import Frame, Source, open_source

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
    width: int | None = None
    height: int | None = None
    banner: str | None = None  # printed to stderr once the first frame is in (after any bad-input error)
    max_viewers: int = 4  # --serve: concurrent /stream (and /api/events) clients
    serve_token: str | None = None  # --serve: required as ?token= or a header when set
    device: str | None = None  # the device profile applied (shown by the dashboard)


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


class _Prefetcher:
    """Reads and preprocesses frames of a file source one step ahead, in order, in a thread."""

    _END = object()

    def __init__(self, source: Source, prepare, depth: int = 4):
        self.source, self.prepare = source, prepare
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="edgecnn-prefetch", daemon=True)
        self.thread.start()

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _loop(self) -> None:
        try:
            while not self.stop.is_set():
                frame = self.source.read()
                if frame is None:
                    break
                if not self._put((frame, *self.prepare(frame))):
                    return
        except BaseException as e:  # handed to the main thread, which raises it
            self._put(e)
            return
        self._put(self._END)

    def get(self) -> tuple | None:
        item = self.q.get()
        if item is self._END:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/mean of one stage's milliseconds (NaN for a stage that never ran)."""
    keys = ("p50", "p90", "p99", "mean")
    if not values:
        return dict.fromkeys(keys, float("nan"))
    stats = latency_stats(values)
    return {k: float(stats[k]) for k in keys}


def format_summary(summary: dict) -> str:
    lines = [
        f"{summary['frames']} frames in {summary['seconds']:.2f} s = {summary['fps']:.1f} FPS  "
        f"[{summary['backend']} {summary['precision']} {summary['artifact']}, threads {summary['threads'] or 'default'}]"
        + ("  (interrupted)" if summary.get("interrupted") else "")
    ]
    if summary.get("dropped") or summary.get("reconnects"):
        lines.append(f"dropped {summary['dropped']} stale frames, reconnected {summary['reconnects']} times")
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


def open_run_source(opts: RunOptions) -> Source:
    return open_source(opts.source, realtime=opts.realtime, width=opts.width, height=opts.height,
                       reconnect_timeout=opts.reconnect_timeout)


def run(clf: Classifier, opts: RunOptions, source: Source | None = None, stdout: IO[str] | None = None,
        stderr: IO[str] | None = None) -> dict:
    """Classify frames from `opts.source` (or the already opened `source`) until it ends, `max_frames`,
    'q' in the window, or Ctrl-C. Returns the summary (also printed to stderr, and written to
    `opts.report` as JSON). The source is closed at the end.
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    check_options(opts)
    source = source or open_run_source(opts)
    sinks: list[Sink] = []
    ok = False
    prefetch: _Prefetcher | None = None
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
                                 max_viewers=opts.max_viewers, token=opts.serve_token)
            sinks.append(dash)
            print(f"edgecnn: dashboard on {dash.address}{'?token=TOKEN' if opts.serve_token else ''} "
                  f"(MJPEG {dash.address}stream, JSON {dash.address}api/stats)", file=stderr, flush=True)
        box_cache: dict[tuple, tuple | None] = {}

        def prepare(frame: Frame) -> tuple[np.ndarray, float, tuple | None]:
            t0 = time.perf_counter()
            key = frame.image.shape[:2]
            if key not in box_cache:
                box_cache[key] = crop_box(frame.image.shape, opts.roi, opts.center_crop)
            box = box_cache[key]
            image = frame.image if box is None else frame.image[box[1] : box[1] + box[3], box[0] : box[0] + box[2]]
            x = clf.preprocess(image)
            return x, 1e3 * (time.perf_counter() - t0), box

        if not source.threaded:
            prefetch = _Prefetcher(source, prepare)
        times: dict[str, list[float]] = {k: [] for k in (*STAGES, "total")}
        smoothed: np.ndarray | None = None
        fps_ema: float | None = None
        last_ms: dict[str, float] = {}
        interrupted = False
        lost: EdgeCNNError | None = None
        n = 0
        start = time.perf_counter()
        prev_end = start
        try:
            while opts.max_frames is None or n < opts.max_frames:
                t0 = time.perf_counter()
                if prefetch is not None:
                    item = prefetch.get()
                    if item is None:
                        break
                    frame, x, pre_ms, box = item
                    t1 = time.perf_counter()
                    capture_ms = 1e3 * (t1 - t0)
                else:
                    frame = source.read()
                    if frame is None:
                        break
                    capture_ms = 1e3 * (time.perf_counter() - t0)
                    x, pre_ms, box = prepare(frame)
                    t1 = time.perf_counter()
                if n == 0 and opts.banner:
                    print(opts.banner, file=stderr, flush=True)
                logits = clf.infer_preprocessed(x[None])
                t2 = time.perf_counter()
                probs = softmax(logits)[0]
                if opts.smooth is not None:
                    smoothed = probs if smoothed is None else opts.smooth * probs + (1 - opts.smooth) * smoothed
                    probs = smoothed
                top = clf.top_of(probs)
                t3 = time.perf_counter()
                interval = t3 - prev_end
                prev_end = t3
                if interval > 0:
                    fps_ema = 1 / interval if fps_ema is None else 0.9 * fps_ema + 0.1 / interval
                stage_ms = {"capture": capture_ms, "preprocess": pre_ms, "inference": 1e3 * (t2 - t1),
                            "postprocess": 1e3 * (t3 - t2)}
                record = {"frame": frame.index, "t": round(t3 - start, 4),
                          "top": [{"label": lab, "prob": round(p, 5)} for lab, p in top],
                          "ms": {k: round(v, 3) for k, v in stage_ms.items()},
                          "fps": round(fps_ema or 0.0, 2)}
                if frame.name is not None:
                    record["name"] = frame.name
                draw = any(s.wants_image for s in sinks)  # per frame: the dashboard wants one only while watched
                image = draw_overlay(frame.image, top, fps_ema, {**stage_ms, **last_ms}, box) if draw else None
                keep = True
                for sink in sinks:
                    keep = sink.write(image, record) and keep
                t4 = time.perf_counter()
                stage_ms["render"] = 1e3 * (t4 - t3)
                last_ms = {"render": stage_ms["render"]}
                for k, v in stage_ms.items():
                    times[k].append(v)
                times["total"].append(sum(stage_ms.values()))  # one frame's latency through every stage
                n += 1
                if not keep:
                    break
        except KeyboardInterrupt:
            interrupted = True
        except EdgeCNNError as e:
            if n == 0:
                raise
            lost = e  # mid-stream (a live source that did not come back): summary first, then the error
        elapsed = time.perf_counter() - start
        desc = clf.backend.describe()
        summary = {
            "frames": n,
            "seconds": elapsed,
            "fps": n / elapsed if elapsed > 0 else 0.0,
            "source": opts.source,
            "backend": desc["backend"],
            "precision": desc["precision"],
            "artifact": desc["artifact"],
            "threads": desc["threads"],
            "dropped": source.dropped,
            "reconnects": source.reconnects,
            "interrupted": interrupted,
            "stages": {k: percentiles(v) for k, v in times.items()},
        }
        ok = True
    finally:
        if prefetch is not None:
            prefetch.close()
        source.close()
        for sink in sinks:
            sink.close(ok)
    print(format_summary(summary), file=stderr, flush=True)
    if opts.report:
        atomic_write_json(opts.report, summary)
    if lost is not None:
        raise lost
    return summary
