"""Where results go: an OpenCV window, JSON lines on stdout, a video file (the HTTP dashboard: server.py)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from ..errors import EdgeCNNError

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
    """cv2.VideoWriter into a hidden temp file next to `path`, renamed into place on close: a video
    that is there is complete; a failed run leaves none. Frames are resized to the first frame's size."""

    def __init__(self, path: str | Path, fps: float):
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in VIDEO_CODECS:
            raise EdgeCNNError(f"--save {self.path}: unsupported video type; use one of {', '.join(VIDEO_CODECS)}")
        if not self.path.parent.is_dir():
            raise EdgeCNNError(f"--save {self.path}: folder {self.path.parent} does not exist")
        self.tmp = self.path.with_name(f".{self.path.stem}.partial-{os.getpid()}{ext}")
        self.fps = fps if fps and fps > 0 else 10.0
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, image: np.ndarray | None, record: dict[str, Any]) -> bool:
        if self.writer is None:
            self.size = (image.shape[1], image.shape[0])
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_CODECS[self.path.suffix.lower()])
            self.writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, self.size)
            if not self.writer.isOpened():
                raise EdgeCNNError(f"--save {self.path}: OpenCV cannot write this video type here")
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(image)
        self.frames += 1
        return True

    def close(self, ok: bool = True) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if ok and self.frames and self.tmp.exists():
            os.replace(self.tmp, self.path)
            log.info("saved %d frames to %s", self.frames, self.path)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)
