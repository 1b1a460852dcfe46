"""Where results go: an OpenCV window, JSON lines on stdout or in a rotated file, a video file (the HTTP
dashboard: server.py)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from pathlib import Path
from typing import IO, Any, Callable, NoReturn

import cv2
import numpy as np

from ..errors import EdgeCNNError
from ..stale import clean_stale
from ..utils import atomic_write_json

log = logging.getLogger("edgecnn.runtime")

VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}


class Sink:
    """`write` returns False when the user asked to stop (window closed, 'q' pressed)."""

    wants_image = True  # False: the overlay need not be drawn for this sink (read once per frame)

    def write(self, image: np.ndarray | None, record: dict[str, Any]) -> bool:  # pragma: no cover
        raise NotImplementedError

    def close(self, ok: bool = True) -> None:
        pass


class JsonLinesSink(Sink):
    """One JSON object per frame on a stream (stdout), flushed so pipes see it at once."""

    wants_image = False

    def __init__(self, stream: IO[str]):
        self.stream = stream

    def write(self, image: np.ndarray | None, record: dict[str, Any]) -> bool:
        self.stream.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.stream.flush()
        return True


def _rotating(path: Path, max_bytes: int, keep: int) -> Any:
    """The standard library's size-based rotation (FILE -> FILE.1 -> ... -> FILE.KEEP); a write error
    is kept for the sink to report (`.error`), not printed as logging's traceback."""
    import logging.handlers  # here: it brings socket and more (~5 ms of every run's start without --predictions)

    class Rotating(logging.handlers.RotatingFileHandler):
        error: BaseException | None = None

        def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
            import sys

            self.error = sys.exc_info()[1]

    return Rotating(path, maxBytes=max_bytes, backupCount=keep, encoding="utf-8")


class PredictionsSink(Sink):
    """`--predictions FILE`: one JSON line per result, appended and flushed line by line; when FILE
    would pass `max_bytes`, it becomes FILE.1 (FILE.1 becomes FILE.2, ...; `keep` old files are kept).
    Each line is one write() call followed by a flush, so a stop (SIGTERM ends the loop between two
    results) never leaves a line half written or unwritten in a buffer."""

    wants_image = False

    def __init__(self, path: str | Path, max_bytes: int = 10 << 20, keep: int = 5):
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise EdgeCNNError(f"--predictions {self.path}: folder {self.path.parent} does not exist")
        try:
            self.handler = _rotating(self.path, max_bytes, keep)
        except OSError as e:
            raise EdgeCNNError(f"--predictions {self.path}: cannot write there ({e.strerror or e})") from None
        self.handler.setFormatter(logging.Formatter("%(message)s"))
        self.lines = 0

    def write(self, image: np.ndarray | None, record: dict[str, Any]) -> bool:
        line = json.dumps(record, separators=(",", ":"))
        self.handler.handle(logging.makeLogRecord({"msg": line, "levelno": logging.INFO, "levelname": "INFO"}))
        if self.handler.error is not None:
            e, self.handler.error = self.handler.error, None
            raise EdgeCNNError(f"--predictions {self.path}: write failed ({getattr(e, 'strerror', None) or e})")
        self.lines += 1
        return True

    def close(self, ok: bool = True) -> None:
        self.handler.close()


def display_available() -> bool:
    """A desktop to show a window on (X11/Wayland), and an OpenCV with GUI support."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        cv2.namedWindow("edgecnn-probe", cv2.WINDOW_AUTOSIZE)
        cv2.destroyWindow("edgecnn-probe")
        return True
    except cv2.error:  # opencv-python-headless has no GUI
        return False


class WindowSink(Sink):
    def __init__(self, title: str = "edgecnn"):
        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)

    def write(self, image: np.ndarray | None, record: dict[str, Any]) -> bool:
        cv2.imshow(self.title, image)
        key = cv2.waitKey(1) & 0xFF
        visible = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1
        return key not in (ord("q"), 27) and visible

    def close(self, ok: bool = True) -> None:
        with contextlib.suppress(cv2.error):
            cv2.destroyWindow(self.title)


class VideoSink(Sink):
    """cv2.VideoWriter into a hidden partial file next to `path`, renamed into place on close.

    cv2.VideoWriter.write reports nothing (a full disk makes FFmpeg drop data silently and leave a
    file without its index: "moov atom not found"), so the sink checks for itself: at open (the
    writer opened, the folder has room), at every write (the filesystem still has `min_free_bytes`
    free), and at close (the finished file reopens with every frame written, the last one decodable).
    Any failure deletes the partial file and raises one EdgeCNNError; a video at `path` is complete.
    Frames are resized to the first frame's size. Partial files of killed runs are cleaned up.
    """

    min_free_bytes = 4 << 20  # stop before the disk is full: once it is, the writer fails silently

    def __init__(self, path: str | Path, fps: float | Callable[[], float]):
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in VIDEO_CODECS:
            raise EdgeCNNError(f"--save {self.path}: unsupported video type; use one of {', '.join(VIDEO_CODECS)}")
        if not self.path.parent.is_dir():
            raise EdgeCNNError(f"--save {self.path}: folder {self.path.parent} does not exist")
        clean_stale(self.path.parent, rf"\.{re.escape(self.path.stem)}\.partial-(?P<pid>\d+){re.escape(ext)}",
                    "a partial video")
        self.tmp = self.path.with_name(f".{self.path.stem}.partial-{os.getpid()}{ext}")
        self._fps = fps  # a callable: asked at the first frame (a live source knows its rate once connected)
        self.fps = 0.0
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.frames = 0
        self.failed = False
        self._check_space()

    def _fail(self, why: str) -> NoReturn:
        self.failed = True
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)
        raise EdgeCNNError(f"--save {self.path}: {why}; no video saved")

    def _check_space(self) -> None:
        try:
            st = os.statvfs(self.path.parent)
        except OSError as e:
            self._fail(f"cannot check the folder ({e.strerror or e})")
        free = st.f_bavail * st.f_frsize
        if free < self.min_free_bytes:
            self._fail(f"No space left on device: {self.path.parent} ({free / 2**20:.1f} MiB free, the video "
                       f"needs at least {self.min_free_bytes / 2**20:.0f} MiB to be written safely)")

    def write(self, image: np.ndarray | None, record: dict[str, Any]) -> bool:
        if self.failed:
            return False
        if self.writer is None:
            fps = self._fps() if callable(self._fps) else self._fps
            self.fps = fps if fps and fps > 0 else 10.0
            self.size = (image.shape[1], image.shape[0])
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_CODECS[self.path.suffix.lower()])
            self.writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, self.size)
            if not self.writer.isOpened():
                self._fail("OpenCV cannot write this video type here")
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(image)
        self.frames += 1
        self._check_space()
        return True

    def _verify(self) -> str | None:
        """Why the finished partial file is not the complete video (None: it is)."""
        if not self.tmp.exists():
            return "the writer produced no file"
        cap = cv2.VideoCapture(str(self.tmp), cv2.CAP_FFMPEG)
        try:
            if not cap.isOpened():
                return "the written file cannot be read back (incomplete: disk full?)"
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            if count != self.frames:
                return f"the written file holds {count} of the {self.frames} frames (incomplete: disk full?)"
            cap.set(cv2.CAP_PROP_POS_FRAMES, self.frames - 1)
            ok, _ = cap.read()
            if not ok:
                return "the last frame of the written file cannot be decoded (incomplete: disk full?)"
        finally:
            cap.release()
        return None

    def close(self, ok: bool = True) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if not (ok and self.frames and not self.failed):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)
            return
        problem = self._verify()
        if problem:
            self._fail(problem)
        os.replace(self.tmp, self.path)
        log.info("saved %d frames to %s", self.frames, self.path)


def close_sinks(sinks: list[Sink], ok: bool) -> EdgeCNNError | None:
    """Close every sink; the first EdgeCNNError one raised (a video that could not be completed) is returned."""
    failed: EdgeCNNError | None = None
    for sink in sinks:
        try:
            sink.close(ok and failed is None)
        except EdgeCNNError as e:
            failed = failed or e
    return failed


def close_health(health: Any, server: Any) -> None:
    """Stop the health endpoint's server, then the systemd notifier (STOPPING=1), whichever a run has."""
    if server is not None:
        server.close()
    if health is not None:
        health.close()


def end_run(summary: dict, text: str, report: str | None, stderr: IO[str], failed: EdgeCNNError | None,
            lost: EdgeCNNError | None) -> dict:
    """A run's last words: the summary on stderr, the --report file, then the error that ended it (if any)."""
    print(text, file=stderr, flush=True)
    if report:
        atomic_write_json(report, summary)
    if failed is not None:
        raise failed
    if lost is not None:
        raise lost
    return summary
