"""Frame sources named by URI, as jetson-inference names them. OpenCV (+ Picamera2 on a Pi); no torch.

    0, 1, /dev/video0, v4l2:///dev/video0     a V4L2 camera (USB webcam, Pi camera via libcamera's V4L2 node)
    csi://0                                    a Jetson CSI camera through GStreamer's nvarguscamerasrc
    picamera2://0 (or picam://0)               the Raspberry Pi camera through Picamera2, when importable
    rtsp://..., http(s)://..., rtmp://...      a network stream (FFmpeg)
    video.mp4, file:///path/video.avi          a video file
    images/, 'images/*.png', photo.jpg         image files, in name order

Live sources (cameras, streams) are read by a capture thread that keeps only the newest frame, so a
slow consumer never sees growing lag; a live source that fails is reopened with backoff and logged.
Files and folders hand over every frame in order, unless `realtime=True` paces them at the video's
frame rate like a live camera (frames the consumer is too slow for are then dropped); `loop=True`
plays them again from the start at their end.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from ..errors import EdgeCNNError
from ..preprocess import load_image

log = logging.getLogger("edgecnn.runtime")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pbm")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
FOLDER_FPS = 10.0  # pacing of image folders with --realtime, and the frame rate of videos saved from them
STALL_TIMEOUT_S = 10.0  # a network stream silent this long (or --reconnect-timeout, if shorter) is lost


@dataclass
class Frame:
    image: np.ndarray  # uint8, BGR (or greyscale HxW for greyscale image files)
    index: int  # position in the source (frames dropped by a live source leave gaps)
    name: str | None  # the file name for image sources
    timestamp: float  # time.perf_counter() when it was captured
    read_ms: float  # how long reading/decoding it took


# -- readers: open, read one frame, reopen -----------------------------------------------------


class _CaptureReader:
    """A cv2.VideoCapture-like object (OpenCV or the Picamera2 adapter), reopenable."""

    def __init__(self, describe: str, open_fn: Callable[[], Any]):
        self.describe = describe
        self._open = open_fn
        self.cap = open_fn()
        self.pending: np.ndarray | None = None  # a frame decoded while checking the source
        self.counted = False
        self.fps = 0.0
        self.frame_count = 0
        get = getattr(self.cap, "get", None)
        if get is not None:
            self.fps = float(get(cv2.CAP_PROP_FPS) or 0.0)
            self.frame_count = int(get(cv2.CAP_PROP_FRAME_COUNT) or 0)

    def read(self) -> tuple[np.ndarray | None, str | None]:
        if self.pending is not None:
            image, self.pending = self.pending, None
            return image, None
        ok, image = self.cap.read()
        return (image if ok and image is not None and image.size else None), None

    def reopen(self) -> bool:
        self.release()
        try:
            self.cap = self._open()
        except EdgeCNNError:
            return False
        return True

    rewind = reopen  # a file from its first frame again (reopening is exact where seeking may not be)

    def release(self) -> None:
        self.cap.release()


class _FolderReader:
    """Image files in order; an unreadable file is logged and skipped."""

    def __init__(self, describe: str, files: list[Path]):
        self.describe = describe
        self.files = files
        self.fps = FOLDER_FPS
        self.frame_count = len(files)
        self._next = 0

    def read(self) -> tuple[np.ndarray | None, str | None]:
        while self._next < len(self.files):
            path = self.files[self._next]
            self._next += 1
            try:
                return load_image(str(path)), path.name
            except EdgeCNNError as e:
                log.warning("skipping %s", e)
        return None, None

    counted = False  # unreadable files are skipped (and logged), so a short pass is not truncation

    def reopen(self) -> bool:
        return False

    def rewind(self) -> bool:
        self._next = 0
        return True

    def release(self) -> None:
        pass


class _Picamera2Capture:
    """Picamera2 behind the VideoCapture calls the reader uses. 'RGB888' arrays are BGR in memory."""

    def __init__(self, index: int, width: int, height: int):
        from picamera2 import Picamera2

        self.cam = Picamera2(camera_num=index)
        config = self.cam.create_video_configuration(main={"size": (width, height), "format": "RGB888"})
        self.cam.configure(config)
        self.cam.start()

    def read(self) -> tuple[bool, np.ndarray | None]:
        try:
            return True, self.cam.capture_array()
        except Exception as e:  # the camera went away: let the reader reconnect
            log.warning("Picamera2 capture failed: %s", e)
            return False, None

    def release(self) -> None:
        self.cam.stop()
        self.cam.close()


# -- opening by URI -----------------------------------------------------------------------------


def _gstreamer_available() -> bool:
    info = cv2.getBuildInformation()
    m = re.search(r"GStreamer:\s*(\w+)", info)
    return bool(m and m.group(1).upper() == "YES")


def csi_pipeline(index: int, width: int, height: int, fps: int) -> str:
    """The usual Jetson pipeline: Argus camera -> NVMM -> BGR for appsink, dropping stale buffers."""
    return (
        f"nvarguscamerasrc sensor-id={index} ! video/x-raw(memory:NVMM), width={width}, height={height}, "
        f"framerate={fps}/1 ! nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR ! "
        "appsink drop=true max-buffers=1 sync=false"
    )


def _open_capture(target: Any, api: int, what: str, camera: bool, timeout_s: float | None = None) -> Any:
    params: list[int] = []
    if timeout_s is not None:  # FFmpeg's own defaults are 30 s to open and 30 s for a read that gets no data
        ms = max(1, round(1000 * timeout_s))
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
    cap = cv2.VideoCapture(target, api, params)
    if not cap.isOpened():
        cap.release()
        hint = " (busy, or not a capture device?)" if camera else ""
        raise EdgeCNNError(f"cannot open {what}{hint}")
    if camera:
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver queue short: newest frame, low latency
    return cap


def _camera_reader(device: str, width: int | None, height: int | None) -> _CaptureReader:
    if not os.path.exists(device):
        present = sorted(glob.glob("/dev/video*"))
        raise EdgeCNNError(
            f"camera {device} not found (cameras here: {', '.join(present) if present else 'none'})"
        )

    def open_fn() -> Any:
        cap = _open_capture(device, cv2.CAP_V4L2, f"camera {device}", camera=True)
        if width and height:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        return cap

    return _CaptureReader(f"camera {device}", open_fn)


def _image_files(pattern_or_dir: str) -> list[Path]:
    p = Path(pattern_or_dir)
    if p.is_dir():
        files = [f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file()]
        if not files:
            raise EdgeCNNError(f"no image files in {p} (looked for {', '.join(IMAGE_EXTENSIONS)})")
    else:
        files = [Path(f) for f in glob.glob(pattern_or_dir) if Path(f).is_file()]
        if not files:
            raise EdgeCNNError(f"no files match {pattern_or_dir}")
    return sorted(files, key=lambda f: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(f))])


def _video_reader(path: str) -> _CaptureReader:
    def open_fn() -> Any:
        cap = _open_capture(path, cv2.CAP_FFMPEG, f"video {path} (not a video OpenCV can decode)", camera=False)
        return cap

    reader = _CaptureReader(f"video {path}", open_fn)
    reader.counted = True  # its frame count comes from the file: fewer frames than that is a truncated file
    # Some broken files open but yield nothing: find out now, not as an empty run.
    image, _ = reader.read()
    if image is None:
        reader.release()
        raise EdgeCNNError(f"cannot read video {path}: no frame could be decoded")
    reader.pending = image
    return reader


def is_live_uri(uri: str) -> bool:
    """Whether a source URI names a camera or a network stream (not a file or folder)."""
    s = uri.strip()
    return (s.isdigit() or s.startswith(("v4l2://", "csi://", "picamera2://", "picam://"))
            or bool(re.fullmatch(r"/dev/video\d+", s)) or s.lower().startswith(STREAM_SCHEMES))


def _open_reader(uri: str, width: int | None, height: int | None, fps: int,
                 stall_timeout: float | None = None) -> tuple[Any, bool]:
    """(reader, live) for a source URI; a network stream that sends nothing for `stall_timeout`
    seconds fails its read (and is then reconnected), instead of blocking for FFmpeg's 30 s."""
    s = uri.strip()
    if s.startswith("file://"):
        s = s[len("file://") :]
    if s.isdigit():
        return _camera_reader(f"/dev/video{int(s)}", width, height), True
    if s.startswith("v4l2://"):
        rest = s[len("v4l2://") :]
        return _camera_reader(f"/dev/video{int(rest)}" if rest.isdigit() else rest, width, height), True
    if re.fullmatch(r"/dev/video\d+", s):
        return _camera_reader(s, width, height), True
    if s.startswith("csi://"):
        index = s[len("csi://") :] or "0"
        if not index.isdigit():
            raise EdgeCNNError(f"bad CSI camera URI {uri!r}; expected csi://0")
        if not _gstreamer_available():
            raise EdgeCNNError("csi:// needs OpenCV built with GStreamer (JetPack's python3-opencv, not the pip wheel)")
        pipeline = csi_pipeline(int(index), width or 1280, height or 720, fps)
        return _CaptureReader(
            f"CSI camera {index}",
            lambda: _open_capture(pipeline, cv2.CAP_GSTREAMER, f"CSI camera {index}", camera=False),
        ), True
    if s.startswith(("picamera2://", "picam://")):
        index = s.split("://", 1)[1] or "0"
        if not index.isdigit():
            raise EdgeCNNError(f"bad Picamera2 URI {uri!r}; expected picamera2://0")
        try:
            import picamera2  # noqa: F401
        except ImportError:
            raise EdgeCNNError(
                "picamera2:// needs Picamera2 (sudo apt install python3-picamera2; use a venv with "
                "--system-site-packages)"
            ) from None

        def open_pi() -> Any:
            try:
                return _Picamera2Capture(int(index), width or 1280, height or 720)
            except (RuntimeError, IndexError, OSError) as e:
                raise EdgeCNNError(f"cannot open Pi camera {index}: {e}") from None

        return _CaptureReader(f"Pi camera {index}", open_pi), True
    if s.lower().startswith(STREAM_SCHEMES):
        return _CaptureReader(s, lambda: _open_capture(s, cv2.CAP_FFMPEG, f"stream {s}", camera=False,
                                                       timeout_s=stall_timeout)), True
    p = Path(s)
    if p.is_dir() or any(ch in s for ch in "*?["):
        return _FolderReader(s, _image_files(s)), False
    if not p.exists():
        raise EdgeCNNError(f"source not found: {s} (a camera index, /dev/videoN, csi://N, a video, a folder or a URL)")
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        return _FolderReader(s, [p]), False
    return _video_reader(s), False


# -- the source --------------------------------------------------------------------------------


class Source:
    """Frames from a URI. `read()` returns the next Frame, or None at the end of the stream.

    `loop=True` plays a file or folder again from the start at its end (forever: bound the run with
    max_frames); frame indices go on counting. A network stream that sends nothing for
    `min(reconnect_timeout, STALL_TIMEOUT_S)` seconds counts as lost and is reopened like a stream that
    ended. After the run: `retry_s` is the time spent without frames while a lost live source was
    being waited for and reopened; `truncation` says (one line) when a video file ended before the
    frame count its container announces.
    """

    def __init__(self, uri: str, realtime: bool = False, width: int | None = None, height: int | None = None,
                 fps: int = 30, reconnect_timeout: float = 30.0, loop: bool = False):
        self.uri = str(uri)
        if reconnect_timeout <= 0:
            raise EdgeCNNError(f"--reconnect-timeout must be positive, got {reconnect_timeout:g}")
        if loop and is_live_uri(self.uri):
            raise EdgeCNNError(f"--loop plays files and folders again at their end; {self.uri} is a live source")
        self.stall_timeout = min(reconnect_timeout, STALL_TIMEOUT_S)
        self.reader, self.live = _open_reader(self.uri, width, height, fps, self.stall_timeout)
        self.fps = float(self.reader.fps or (fps if self.live else FOLDER_FPS))
        self.frame_count = int(getattr(self.reader, "frame_count", 0)) if not self.live else 0
        self.reconnect_timeout = reconnect_timeout
        self.threaded = self.live or realtime
        self.loop = loop
        self.error: str | None = None
        self.truncation: str | None = None
        self.reconnects = 0
        self.dropped = 0
        self.passes = 0  # complete passes over a file or folder
        self.retry_s = 0.0
        self._pass_frames = 0
        self._index = 0
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._delivered = -1
        self._ended = False
        self._stop = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        if self.threaded:
            self._thread = threading.Thread(target=self._capture_loop, name="edgecnn-capture", daemon=True)
            self._thread.start()

    @property
    def describe(self) -> str:
        return self.reader.describe

    def status(self) -> dict:
        """The source's state for the API and /healthz: live, reconnecting (since when), lost or ended."""
        if self.error:
            return {"state": "lost"}
        if self._ended:
            return {"state": "ended"}
        return {"state": "live"}

    # The capture thread of live (or realtime-paced) sources: keep only the newest frame.
    def _capture_loop(self) -> None:
        pace = None if self.live else 1.0 / self.fps
        start = time.perf_counter()
        stalled_since: float | None = None  # a read that hit the stall timeout, even if it then gave a frame
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                image, name = self.reader.read() if self.live else self._read_file()
                t1 = time.perf_counter()
                stalled = self.live and t1 - t0 >= 0.9 * self.stall_timeout
                if image is None:
                    if not self.live:
                        break
                    since = stalled_since or t0
                    back = self._reconnect(since)
                    self.retry_s += time.perf_counter() - since  # the outage: the stall, the failed read, retries
                    stalled_since = None
                    if not back:
                        break
                    continue
                if stalled:  # FFmpeg's read timeout may hand over what it had before failing the next read
                    stalled_since = t0
                    log.warning("%s: no data for %.1f s", self.describe, t1 - t0)
                elif stalled_since is not None:  # it came back by itself
                    self.retry_s += t0 - stalled_since
                    stalled_since = None
                frame = Frame(image, self._index, name, t1, 1e3 * (t1 - t0))
                self._index += 1
                if pace is not None:  # a file played like a camera: wait for this frame's time
                    delay = start + frame.index * pace - time.perf_counter()
                    if delay > 0 and self._stop.wait(delay):
                        break
                with self._cond:
                    if self._latest is not None and self._latest.index > self._delivered:
                        self.dropped += 1
                    self._latest = frame
                    self._cond.notify_all()
        except Exception as e:  # never die silently in a thread
            self.error = f"{self.describe}: capture failed: {type(e).__name__}: {e}"
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _reconnect(self, since: float) -> bool:
        """Reopen a lost live source with exponential backoff, up to reconnect_timeout seconds.
        `since`: perf_counter when the read that failed began (the start of the outage)."""
        deadline = time.monotonic() + self.reconnect_timeout
        delay = 0.5
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            log.warning("%s: no frame for %.1f s; reopening in %.1f s", self.describe, time.perf_counter() - since,
                        min(delay, remaining))
            if self._stop.wait(min(delay, remaining)):
                return False
            if self.reader.reopen():
                image, _ = self.reader.read()
                if image is not None:
                    self.reader.pending = image  # the first frame after the outage is delivered, not lost
                    self.reconnects += 1
                    log.warning("%s: reconnected after %.1f s without frames", self.describe,
                                time.perf_counter() - since)
                    return True
            delay = min(delay * 2, 8.0)
        self.error = f"{self.describe}: lost, and not back after {self.reconnect_timeout:g} s of retries"
        return False

    def _read_file(self) -> tuple[np.ndarray | None, str | None]:
        """The next image of a file or folder: at its end, check the count, and start again if looping."""
        image, name = self.reader.read()
        if image is None:
            self._end_of_pass()
            if self.loop and self._pass_frames > 0 and self.reader.rewind():
                self._pass_frames = 0
                image, name = self.reader.read()
        if image is not None:
            self._pass_frames += 1
        return image, name

    def _end_of_pass(self) -> None:
        self.passes += 1
        announced, got = self.frame_count, self._pass_frames
        # Containers may announce a frame or two more than they hold (a count estimated from the duration).
        if self.reader.counted and announced and got < announced - max(2, announced // 100) and not self.truncation:
            self.truncation = (f"{self.describe}: ended after {got} of the {announced} frames it announces "
                               "(a truncated or damaged file)")
            if self.loop:  # the run goes on: say it now (otherwise the run ends with it as its error)
                log.warning("%s", self.truncation)

    def read(self) -> Frame | None:
        """The next frame (live: the newest one not yet delivered); None at the end of the stream."""
        if not self.threaded:
            t0 = time.perf_counter()
            image, name = self._read_file()
            t1 = time.perf_counter()
            if image is None:
                return None
            frame = Frame(image, self._index, name, t1, 1e3 * (t1 - t0))
            self._index += 1
            return frame
        with self._cond:
            # Short waits keep Ctrl-C responsive while a camera is slow.
            while not self._cond.wait_for(
                lambda: self._ended or (self._latest is not None and self._latest.index > self._delivered), 0.5
            ):
                pass
            if self._latest is not None and self._latest.index > self._delivered:
                self._delivered = self._latest.index
                return self._latest
        if self.error:
            raise EdgeCNNError(self.error)
        return None

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame

    def close(self) -> None:
        """Stop the capture thread and release the reader (again: nothing)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.reader.release()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_source(uri: str, **options: Any) -> Source:
    """Open a frame source by URI (see the module docstring); EdgeCNNError with one line if it cannot be."""
    return Source(uri, **options)
