"""The stages of `edgecnn run` and the threads that overlap them.

    capture (read/decode) -> preprocess (crop, then the frame path: resize, colour, normalize, quantize,
        layout, into the artifact's own input) -> infer (one backend call + postprocess)
        -> render (overlay + sinks, in the caller's thread)

`Pipeline` runs capture, preprocess and infer each in its own thread, joined by small bounded
queues, and hands finished frames to the caller in source order, so that throughput approaches
1 / (slowest stage) rather than 1 / (sum of stages): OpenCV decoding, OpenCV/numpy preprocessing and
the inference backends release the GIL while they work. The queues block when full, so a file
source loses no frame (its reader simply waits); a live source keeps only its newest frame in its
own capture thread (`Source`), so a slow model never builds up lag beyond the few frames in flight
here. `sequential=True` runs the same stage functions one after the other in the caller's thread
(no overlap), which benchmarks use as the baseline.

Each stage times its own work (time.perf_counter) into the frame's `ms`; waiting in a queue is not
a stage's time. `Job.captured` is when the frame was read, so the caller can measure end-to-end
latency as well.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from ..preprocess import softmax
from .classifier import Classifier
from .sources import Frame, Source

QUEUE_DEPTH = 2  # frames waiting between two stages; small: more only adds latency
_END = object()
_POLL_S = 0.1  # how often a blocked stage looks at the stop flag


@dataclass
class Job:
    """One frame on its way through the stages."""

    frame: Frame
    captured: float  # time.perf_counter() when the frame was read
    ms: dict[str, float] = field(default_factory=dict)  # per-stage milliseconds, filled stage by stage
    box: tuple[int, int, int, int] | None = None  # the classified region (None: the whole frame)
    x: np.ndarray | None = None  # the artifact's input, (1, ...) in its layout and dtype (`Classifier.prepare`)
    probs: np.ndarray | None = None
    top: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class _Failure:
    error: BaseException


class Stages:
    """The stage functions (each Job -> Job), shared by the threaded and the sequential pipeline."""

    def __init__(self, clf: Classifier, crop: Callable[[tuple[int, ...]], tuple | None],
                 smooth: float | None = None):
        self.clf, self.crop, self.smooth = clf, crop, smooth
        self._boxes: dict[tuple, tuple | None] = {}
        self._smoothed: np.ndarray | None = None

    def preprocess(self, job: Job) -> Job:
        t0 = time.perf_counter()
        image = job.frame.image
        key = image.shape[:2]
        if key not in self._boxes:
            self._boxes[key] = self.crop(image.shape)
        box = self._boxes[key]
        if box is not None:
            image = image[box[1] : box[1] + box[3], box[0] : box[0] + box[2]]
        job.box, job.x = box, self.clf.prepare(image)  # a new array: the infer thread reads it later
        job.ms["preprocess"] = 1e3 * (time.perf_counter() - t0)
        return job

    def infer(self, job: Job) -> Job:
        """Inference, then postprocess (softmax, EMA smoothing in frame order, top-k)."""
        t1 = time.perf_counter()
        logits = self.clf.infer_prepared(job.x)
        t2 = time.perf_counter()
        probs = softmax(logits)[0]
        if self.smooth is not None:
            self._smoothed = probs if self._smoothed is None else self.smooth * probs + (1 - self.smooth) * self._smoothed
            probs = self._smoothed
        job.probs, job.top = probs, self.clf.top_of(probs)
        job.x = None  # the input is no longer needed: keep frames in flight small
        job.ms["inference"] = 1e3 * (t2 - t1)
        job.ms["postprocess"] = 1e3 * (time.perf_counter() - t2)
        return job


class Pipeline:
    """Frames of `source` through `stages`, yielded in order as finished Jobs (see the module doc).

    `max_frames` bounds how many frames are taken from the source (`frames_in`). Errors in a stage
    thread are raised in the caller's thread when the iteration reaches them. Always `close()`.
    """

    def __init__(self, source: Source, stages: Stages, max_frames: int | None = None, sequential: bool = False,
                 depth: int = QUEUE_DEPTH):
        self.source, self.stages, self.max_frames = source, stages, max_frames
        self.sequential = sequential
        self.frames_in = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        depth = 1 if source.threaded else depth  # a live source: as little lag as possible
        self._queues = [queue.Queue(maxsize=depth) for _ in range(3)]
        if not sequential:
            steps: list[tuple[str, Callable[[Job], Job]]] = [("preprocess", stages.preprocess),
                                                            ("infer", stages.infer)]
            self._spawn("capture", self._capture_loop, self._queues[0])
            for i, (name, fn) in enumerate(steps):
                self._spawn(name, self._stage_loop, fn, self._queues[i], self._queues[i + 1])

    # -- the threads ----------------------------------------------------------------------------

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=f"edgecnn-{name}", daemon=True)
        t.start()
        self._threads.append(t)

    def _put(self, q: queue.Queue, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue) -> Any:
        while not self._stop.is_set():
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        return _END

    def _read(self) -> Job | None:
        if self.max_frames is not None and self.frames_in >= self.max_frames:
            return None
        frame = self.source.read()
        if frame is None:
            return None
        self.frames_in += 1
        return Job(frame, frame.timestamp, {"capture": frame.read_ms})

    def _capture_loop(self, out: queue.Queue) -> None:
        try:
            while not self._stop.is_set():
                job = self._read()
                if job is None:
                    break
                if not self._put(out, job):
                    return
        except BaseException as e:  # handed downstream; the caller raises it
            self._put(out, _Failure(e))
            return
        self._put(out, _END)

    def _stage_loop(self, fn: Callable[[Job], Job], inq: queue.Queue, out: queue.Queue) -> None:
        while True:
            item = self._get(inq)
            if item is _END or isinstance(item, _Failure):
                self._put(out, item)
                return
            try:
                item = fn(item)
            except BaseException as e:
                self._put(out, _Failure(e))
                return
            if not self._put(out, item):
                return

    # -- the caller's side ----------------------------------------------------------------------

    def __iter__(self) -> Iterator[Job]:
        if self.sequential:
            while (job := self._read()) is not None:
                yield self.stages.infer(self.stages.preprocess(job))
            return
        last = self._queues[-1]
        while True:
            try:  # short waits keep Ctrl-C responsive
                item = last.get(timeout=_POLL_S)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item

    def close(self) -> None:
        """Stop the threads (frames still in flight are discarded) and wait for them. A live source
        is closed first, which wakes a capture thread waiting for its next frame; a file source is
        left for the caller to close once no thread reads it any more."""
        self._stop.set()
        if self.source.threaded:
            self.source.close()
        for t in self._threads:
            t.join(timeout=5)
