"""The stages of `edgecnn run` and the threads that overlap them.

    capture (wait + read/decode) -> preprocess (crop, then the frame path: resize, colour, normalize,
        quantize, layout, into the artifact's own input) -> infer (one backend call + postprocess)
        -> render (overlay + sinks, in the caller's thread)

`Pipeline` runs, per source, a capture and a preprocess thread, and one inference thread for all
sources (one loaded model, used from one thread: every backend is safe that way), joined by
`_Slot`s; finished frames go to the caller. OpenCV decoding, OpenCV/numpy preprocessing and the
inference backends release the GIL while they work, so throughput approaches 1 / (slowest stage)
rather than 1 / (sum of stages).

Two latency modes (`--latency-mode`):
  * `fresh` (the default for cameras and streams): every slot keeps only the newest item per source;
    an older one is replaced and counted as dropped (`dropped_by[stage]`), so a result describes the
    newest frame the model could take: its age stays near capture + preprocess + inference, whatever
    the model's speed.
  * `throughput` (the default for files): slots are FIFO queues of QUEUE_DEPTH that block when full:
    a file loses no frame (its reader waits), results come in source order.
A live source also keeps only its newest frame in its own capture thread (`Source`).
`sequential=True` runs the same stage functions one after the other in the caller's thread (one
source, no overlap), which benchmarks use as the baseline.

Each stage times its own work (time.perf_counter) into the job's `ms`; waiting in a slot is not a
stage's time; "wait" is the time a live source's read waited for the frame to arrive (not work:
left out of "total"). `Job.captured` is when the frame was read, so the caller can measure a
result's age.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from ..preprocess import softmax
from .classifier import Classifier
from .sources import Frame, Source

QUEUE_DEPTH = 2  # throughput mode: frames waiting between two stages; small: more only adds latency
LATENCY_MODES = ("fresh", "throughput")
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
    source: int = 0  # index of the source in the pipeline's list


@dataclass
class _End:
    source: int


@dataclass
class _Failure:
    error: BaseException


class _Slot:
    """Items between two stages. fresh: the newest Job per source (a newer one replaces it and is
    counted as dropped); throughput: a FIFO of `depth` whose put() blocks while full. Control items
    (_End, _Failure) are never dropped."""

    def __init__(self, fresh: bool, depth: int, stop: threading.Event, on_drop: Callable[[Job], None]):
        self.fresh, self.depth, self.stop, self.on_drop = fresh, depth, stop, on_drop
        self.items: deque[Any] = deque()
        self.cond = threading.Condition()

    def put(self, item: Any) -> bool:
        with self.cond:
            if self.fresh and isinstance(item, Job):
                for old in self.items:
                    if isinstance(old, Job) and old.source == item.source:
                        self.items.remove(old)
                        self.on_drop(old)
                        break
            elif isinstance(item, Job):
                while len(self.items) >= self.depth:
                    if self.stop.is_set():
                        return False
                    self.cond.wait(_POLL_S)
            self.items.append(item)
            self.cond.notify_all()
            return True

    def get(self) -> Any:
        """The oldest item; None once the pipeline is stopped."""
        with self.cond:
            while not self.items:
                if self.stop.is_set():
                    return None
                self.cond.wait(_POLL_S)
            item = self.items.popleft()
            self.cond.notify_all()
            return item


class Stages:
    """The stage functions (each Job -> Job), shared by the threaded and the sequential pipeline.
    One Stages per source (crop boxes and EMA smoothing are per source); they may share a Classifier."""

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
    """Frames of `sources` through their `stages`, yielded as finished Jobs (see the module doc).

    `sources` and `stages` are one object or lists of the same length. `max_frames` bounds how many
    frames are taken from each source (`frames_in`, per source in `frames_in_by`). Errors in a stage
    thread are raised in the caller's thread when the iteration reaches them. `stop` (an Event) ends
    the iteration at the next poll. Always `close()`.
    """

    def __init__(self, sources: Source | list[Source], stages: Stages | list[Stages], max_frames: int | None = None,
                 sequential: bool = False, depth: int = QUEUE_DEPTH, latency_mode: str | None = None,
                 stop: threading.Event | None = None):
        self.sources = sources if isinstance(sources, list) else [sources]
        self.stages = stages if isinstance(stages, list) else [stages]
        if len(self.sources) != len(self.stages):
            raise ValueError("one Stages per source")
        if sequential and len(self.sources) != 1:
            raise ValueError("sequential=True takes one source")
        self.source = self.sources[0]
        self.max_frames, self.sequential = max_frames, sequential
        if latency_mode is None:
            latency_mode = "fresh" if any(s.threaded for s in self.sources) else "throughput"
        if latency_mode not in LATENCY_MODES:
            raise ValueError(f"latency_mode must be one of {LATENCY_MODES}, got {latency_mode!r}")
        self.latency_mode = latency_mode
        fresh = latency_mode == "fresh"
        self.frames_in_by = [0] * len(self.sources)
        self.dropped_by: dict[str, int] = {"preprocess": 0, "infer": 0, "render": 0}  # slot before that stage
        self.dropped_by_source = [0] * len(self.sources)
        self._drop_lock = threading.Lock()
        self._stop = threading.Event()
        self._user_stop = stop
        self._threads: list[threading.Thread] = []
        n = len(self.sources)

        def slot(stage: str, size: int) -> _Slot:
            return _Slot(fresh, size, self._stop, lambda job: self._dropped(stage, job))

        self._pre_in = [slot("preprocess", depth) for _ in range(n)]
        self._infer_in = slot("infer", depth * n)
        self._out = slot("render", depth * n)
        self._ended = 0
        # fresh mode's CPU saving: when the model will still be busy after the next frame has arrived and
        # been preprocessed, this frame would only be replaced: it is dropped before preprocessing
        self._fresh = fresh
        self._infer_started: float | None = None  # perf_counter when the running inference began
        self._infer_s = 0.0  # EMAs, seconds: inference + postprocess, preprocess, frame interval per source
        self._pre_s = [0.0] * n
        self._interval_s = [0.0] * n
        self._last_frame = [0.0] * n
        self._captures: list[threading.Thread | None] = [None] * n
        if not sequential:
            for i in range(n):
                self._captures[i] = self._spawn(f"capture-{i}" if n > 1 else "capture", self._capture_loop, i)
                self._spawn(f"preprocess-{i}" if n > 1 else "preprocess", self._preprocess_loop, i)
            self._spawn("infer", self._infer_loop)

    @property
    def frames_in(self) -> int:
        return sum(self.frames_in_by)

    @property
    def dropped(self) -> int:
        """Frames dropped between the stages (fresh mode); the sources' own drops are theirs."""
        return sum(self.dropped_by.values())

    def _dropped(self, stage: str, job: Job) -> None:
        with self._drop_lock:
            self.dropped_by[stage] += 1
            self.dropped_by_source[job.source] += 1

    # -- the threads ----------------------------------------------------------------------------

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> threading.Thread:
        t = threading.Thread(target=target, args=args, name=f"edgecnn-{name}", daemon=True)
        t.start()
        self._threads.append(t)
        return t

    def _read(self, i: int) -> Job | None:
        if self.max_frames is not None and self.frames_in_by[i] >= self.max_frames:
            return None
        frame = self.sources[i].read()
        if frame is None:
            return None
        self.frames_in_by[i] += 1
        ms = {"capture": frame.read_ms}
        if self.sources[i].live:
            ms["wait"] = frame.wait_ms
        return Job(frame, frame.timestamp, ms, source=i)

    def _capture_loop(self, i: int) -> None:
        try:
            while not self._stop.is_set():
                job = self._read(i)
                if job is None:
                    break
                if not self._pre_in[i].put(job):
                    return
        except BaseException as e:  # handed downstream; the caller raises it
            self._pre_in[i].put(_Failure(e))
            return
        self._pre_in[i].put(_End(i))

    def _replaced_anyway(self, i: int, job: Job) -> bool:
        """Fresh mode: will a newer frame of source i arrive and be preprocessed before the model is free?
        (Then preprocessing this one is wasted CPU: it would be replaced in the slot before inference.)
        Judged from measured averages, with half a frame interval to spare."""
        t = job.frame.timestamp
        if self._last_frame[i]:
            gap = t - self._last_frame[i]
            self._interval_s[i] = gap if not self._interval_s[i] else 0.9 * self._interval_s[i] + 0.1 * gap
        self._last_frame[i] = t
        started = self._infer_started
        if not self._fresh or started is None or not self._interval_s[i] or not self._infer_s:
            return False
        free_in = started + self._infer_s - time.perf_counter()
        return free_in > 1.5 * self._interval_s[i] + self._pre_s[i]

    def _preprocess_loop(self, i: int) -> None:
        fn = self.stages[i].preprocess
        while (item := self._pre_in[i].get()) is not None:
            if isinstance(item, Job):
                if self._replaced_anyway(i, item):
                    self._dropped("preprocess", item)
                    continue
                try:
                    item = fn(item)
                    ms = item.ms["preprocess"] / 1e3
                    self._pre_s[i] = ms if not self._pre_s[i] else 0.9 * self._pre_s[i] + 0.1 * ms
                except BaseException as e:
                    item = _Failure(e)
            if not self._infer_in.put(item) or not isinstance(item, Job):
                return

    def _infer_loop(self) -> None:
        while (item := self._infer_in.get()) is not None:
            if isinstance(item, _End):
                self._ended += 1
                if self._ended < len(self.sources):
                    continue
            elif isinstance(item, Job):
                t0 = self._infer_started = time.perf_counter()
                try:
                    item = self.stages[item.source].infer(item)
                except BaseException as e:
                    item = _Failure(e)
                took = time.perf_counter() - t0
                self._infer_s = took if not self._infer_s else 0.9 * self._infer_s + 0.1 * took
                self._infer_started = None
            if not self._out.put(item) or not isinstance(item, Job):
                return

    # -- the caller's side ----------------------------------------------------------------------

    def _stopping(self) -> bool:
        return self._stop.is_set() or (self._user_stop is not None and self._user_stop.is_set())

    def __iter__(self) -> Iterator[Job]:
        if self.sequential:
            while not self._stopping() and (job := self._read(0)) is not None:
                yield self.stages[0].infer(self.stages[0].preprocess(job))
            return
        out = self._out
        while True:
            with out.cond:  # short waits keep Ctrl-C and the stop flag responsive
                if not out.items:
                    out.cond.wait(_POLL_S)
                item = out.items.popleft() if out.items else None
                if item is not None:
                    out.cond.notify_all()
            if self._stopping():
                return
            if item is None:
                continue
            if isinstance(item, _End):
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item

    def close(self) -> None:
        """Stop the threads (frames still in flight are discarded) and wait for them (at most ~1 s
        in all: a stage thread still busy is a daemon, left to end). Live sources are closed first,
        which wakes capture threads waiting for their next frame; a file source is left for the
        caller to close once no thread reads it any more."""
        self._stop.set()
        for s in self.sources:
            if s.threaded:
                s.close()
        deadline = time.monotonic() + 1.0
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        for i, s in enumerate(self.sources):  # a file's reader is released by the caller: not under a read
            if not s.threaded and self._captures[i] is not None:
                self._captures[i].join(timeout=5)
