"""Frame sources named by URI, as jetson-inference names them. OpenCV (+ Picamera2 on a Pi); no torch.

    0, 1, /dev/video0, v4l2:///dev/video0     a V4L2 camera (USB webcam, Pi camera via libcamera's V4L2 node)
    csi://0                                    a Jetson CSI camera through GStreamer's nvarguscamerasrc
    picamera2://0 (or picam://0)               the Raspberry Pi camera through Picamera2, when importable
    rtsp://..., http(s)://..., rtmp://...      a network stream (FFmpeg)
    video.mp4, file:///path/video.avi          a video file
    images/, 'images/*.png', photo.jpg         image files, in name order

One dispatch (`SOURCE_KINDS`, first match wins, files last) maps a URI to a *reader*; a new kind of
source (sample windows: csv:, serial://, wav:, mic://) is one `SourceKind` in its own module and one
line in that list. Every item a source hands over is a `Frame` with its capture time (`captured`,
wall clock; `timestamp`, perf_counter).

Live sources (cameras, streams) are opened and read by a capture thread that keeps only the newest
frame, so a slow consumer never sees growing lag. The first connection and every reconnection are
retried at most ~1 s apart (with jitter) until `reconnect_timeout` (0: forever); the source's state
(connecting, live, reconnecting since T, lost) is logged and reported by `status()`. `close()` stops
the thread within a second: a read blocked in a driver or in FFmpeg is abandoned (the thread is left
to finish and release the reader itself), never freed under it.
Files and folders hand over every frame in order, unless `realtime=True` paces them at the video's
frame rate like a live camera (frames the consumer is too slow for are then dropped); `loop=True`
plays them again from the start at their end.
"""

from __future__ import annotations

import glob
import logging
import os
import random
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
RETRY_MAX_S = 1.0  # live sources are retried at most this far apart (0.25, 0.5, 1, 1, ... s, minus jitter)
RETRY_LOG_EVERY_S = 10.0  # while retrying, one log line this often (plus the first failure and the end)
CLOSE_WAIT_S = 1.0  # close() waits this long for the capture thread, then abandons a blocked read
STALLED_AFTER_S = 1.0  # a live read waiting longer than this (and 5 frame intervals) is an outage


@dataclass
class Frame:
    image: np.ndarray  # uint8, BGR (or greyscale HxW for greyscale image files)
    index: int  # position in the source (frames dropped by a live source leave gaps)
    name: str | None  # the file name for image sources
    timestamp: float  # time.perf_counter() when it was captured (read from the source)
    read_ms: float  # reading/decoding it (live sources: the CPU time of the read, waiting left out)
    captured: float = 0.0  # time.time() at `timestamp`: wall-clock epoch seconds
    wait_ms: float = 0.0  # live sources: waiting for it to arrive (wall time of the read - read_ms)


# -- readers: open, read one frame, reopen -----------------------------------------------------


class _CaptureReader:
    """A cv2.VideoCapture-like object (OpenCV or the Picamera2 adapter), reopenable. Live sources
    are created unconnected (`connect()` runs in their capture thread); files connect at once."""

    def __init__(self, describe: str, open_fn: Callable[[], Any], connect: bool = True):
        self.describe = describe
        self._open = open_fn
        self.cap: Any = None
        self.pending: np.ndarray | None = None  # a frame decoded while checking the source
        self.counted = False
        self.fps = 0.0
        self.frame_count = 0
        if connect:
            self.connect()

    def connect(self) -> None:
        """(Re)open; EdgeCNNError with the reason when it cannot be opened."""
        self.release()
        self.cap = self._open()
        get = getattr(self.cap, "get", None)
        if get is not None:
            self.fps = float(get(cv2.CAP_PROP_FPS) or 0.0) or self.fps
            self.frame_count = int(get(cv2.CAP_PROP_FRAME_COUNT) or 0)

    def read(self) -> tuple[np.ndarray | None, str | None]:
        if self.pending is not None:
            image, self.pending = self.pending, None
            return image, None
        if self.cap is None:
            return None, None
        ok, image = self.cap.read()
        return (image if ok and image is not None and image.size else None), None

    def reopen(self) -> bool:
        try:
            self.connect()
        except EdgeCNNError:
            return False
        return True

    rewind = reopen  # a file from its first frame again (reopening is exact where seeking may not be)

    def release(self) -> None:
        cap, self.cap = self.cap, None
        if cap is not None:
            cap.release()


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
    def open_fn() -> Any:
        if not os.path.exists(device):
            present = sorted(glob.glob("/dev/video*"))
            raise EdgeCNNError(
                f"camera {device} not found (cameras here: {', '.join(present) if present else 'none'})"
            )
        cap = _open_capture(device, cv2.CAP_V4L2, f"camera {device}", camera=True)
        if width and height:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        return cap

    return _CaptureReader(f"camera {device}", open_fn, connect=False)


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


@dataclass(frozen=True)
class ReaderOptions:
    """What an opener may use: capture size and rate for cameras, the stall timeout for streams."""

    width: int | None = None
    height: int | None = None
    fps: int = 30
    stall_timeout: float | None = None


@dataclass(frozen=True)
class SourceKind:
    """One entry of the URI dispatch. `open(uri, options)` returns a reader: an object with
    `describe`, `fps`, `frame_count`, `counted`, `read() -> (item | None, name)`, `reopen() -> bool`,
    `rewind() -> bool`, `release()`; live readers also `connect()` (raises EdgeCNNError), which the
    capture thread calls (the opener itself must not connect: a camera may not be there yet).
    Bad URI syntax, a missing library: EdgeCNNError from `open`, at once."""

    name: str
    matches: Callable[[str], bool]
    open: Callable[[str, ReaderOptions], Any]
    live: bool


def _digits_after(s: str, scheme: str, uri: str, example: str) -> int:
    index = s[len(scheme):] or "0"
    if not index.isdigit():
        raise EdgeCNNError(f"bad camera URI {uri!r}; expected {example}")
    return int(index)


def _open_v4l2(s: str, o: ReaderOptions) -> Any:
    if s.isdigit():
        return _camera_reader(f"/dev/video{int(s)}", o.width, o.height)
    rest = s[len("v4l2://"):] if s.startswith("v4l2://") else s
    return _camera_reader(f"/dev/video{int(rest)}" if rest.isdigit() else rest, o.width, o.height)


def _open_csi(s: str, o: ReaderOptions) -> Any:
    index = _digits_after(s, "csi://", s, "csi://0")
    if not _gstreamer_available():
        raise EdgeCNNError("csi:// needs OpenCV built with GStreamer (JetPack's python3-opencv, not the pip wheel)")
    pipeline = csi_pipeline(index, o.width or 1280, o.height or 720, o.fps)
    return _CaptureReader(f"CSI camera {index}",
                          lambda: _open_capture(pipeline, cv2.CAP_GSTREAMER, f"CSI camera {index}", camera=False),
                          connect=False)


def _open_picamera2(s: str, o: ReaderOptions) -> Any:
    index = _digits_after(s, s.split("://", 1)[0] + "://", s, "picamera2://0")
    try:
        import picamera2  # noqa: F401
    except ImportError:
        raise EdgeCNNError(
            "picamera2:// needs Picamera2 (sudo apt install python3-picamera2; use a venv with "
            "--system-site-packages)"
        ) from None

    def open_pi() -> Any:
        try:
            return _Picamera2Capture(index, o.width or 1280, o.height or 720)
        except (RuntimeError, IndexError, OSError) as e:
            raise EdgeCNNError(f"cannot open Pi camera {index}: {e}") from None

    return _CaptureReader(f"Pi camera {index}", open_pi, connect=False)


def _open_stream(s: str, o: ReaderOptions) -> Any:
    return _CaptureReader(redact_uri(s), lambda: _open_capture(s, cv2.CAP_FFMPEG, f"stream {redact_uri(s)}",
                                                               camera=False, timeout_s=o.stall_timeout),
                          connect=False)


def _open_file(s: str, o: ReaderOptions) -> Any:
    p = Path(s)
    if p.is_dir() or any(ch in s for ch in "*?["):
        return _FolderReader(s, _image_files(s))
    if not p.exists():
        raise EdgeCNNError(f"source not found: {s} (a camera index, /dev/videoN, csi://N, a video, a folder or a URL)")
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        return _FolderReader(s, [p])
    return _video_reader(s)


# The URI dispatch: first match wins; files and folders last.
SOURCE_KINDS: list[SourceKind] = [
    SourceKind("v4l2", lambda s: s.isdigit() or s.startswith("v4l2://") or bool(re.fullmatch(r"/dev/video\d+", s)),
               _open_v4l2, live=True),
    SourceKind("csi", lambda s: s.startswith("csi://"), _open_csi, live=True),
    SourceKind("picamera2", lambda s: s.startswith(("picamera2://", "picam://")), _open_picamera2, live=True),
    SourceKind("stream", lambda s: s.lower().startswith(STREAM_SCHEMES), _open_stream, live=True),
    SourceKind("file", lambda s: True, _open_file, live=False),
]


def _clean(uri: str) -> str:
    s = str(uri).strip()
    return s[len("file://"):] if s.startswith("file://") else s


def source_kind(uri: str) -> SourceKind:
    s = _clean(uri)
    return next(k for k in SOURCE_KINDS if k.matches(s))


def is_live_uri(uri: str) -> bool:
    """Whether a source URI names a camera or a network stream (not a file or folder)."""
    return source_kind(uri).live


def redact_uri(uri: str) -> str:
    """The URI without a password (rtsp://user:secret@host/ -> rtsp://user:***@host/): for logs, records, API."""
    return re.sub(r"^([a-zA-Z][\w+.-]*://[^/@:]*):[^/@]*@", r"\1:***@", str(uri).strip())


def _open_reader(uri: str, width: int | None, height: int | None, fps: int,
                 stall_timeout: float | None = None) -> tuple[Any, bool]:
    """(reader, live) for a source URI; a network stream that sends nothing for `stall_timeout`
    seconds fails its read (and is then reconnected), instead of blocking for FFmpeg's 30 s."""
    s = _clean(uri)
    kind = source_kind(s)
    return kind.open(s, ReaderOptions(width, height, fps, stall_timeout)), kind.live


# -- the source --------------------------------------------------------------------------------


class Source:
    """Frames from a URI. `read()` returns the next Frame, or None at the end of the stream.

    `loop=True` plays a file or folder again from the start at its end (forever: bound the run with
    max_frames); frame indices go on counting. A live source is connected in its capture thread,
    retried at most RETRY_MAX_S apart until `reconnect_timeout` seconds have passed (0: forever),
    for the first connection as for a source that was lost. A network stream that sends nothing for
    `min(reconnect_timeout, STALL_TIMEOUT_S)` seconds counts as lost. After the run: `outage_s()` is
    the time spent without frames (connecting, waiting for a lost source, reopening it), also while
    an outage is still going on; `truncation` says (one line) when a video file ended before the frame
    count its container announces. `abandoned` is True when close() left a blocked read behind.
    """

    def __init__(self, uri: str, realtime: bool = False, width: int | None = None, height: int | None = None,
                 fps: int = 30, reconnect_timeout: float = 30.0, loop: bool = False):
        self.uri = str(uri)
        if not reconnect_timeout >= 0:
            raise EdgeCNNError(f"--reconnect-timeout must be 0 (retry forever) or positive, got {reconnect_timeout:g}")
        if loop and is_live_uri(self.uri):
            raise EdgeCNNError(f"--loop plays files and folders again at their end; {self.uri} is a live source")
        self.stall_timeout = min(reconnect_timeout or STALL_TIMEOUT_S, STALL_TIMEOUT_S)
        self.reader, self.live = _open_reader(self.uri, width, height, fps, self.stall_timeout)
        self.name = redact_uri(self.uri)  # how records, logs and the API name it
        self._default_fps = float(fps if self.live else FOLDER_FPS)
        self.frame_count = int(getattr(self.reader, "frame_count", 0)) if not self.live else 0
        self.reconnect_timeout = reconnect_timeout
        self.threaded = self.live or realtime
        self.loop = loop
        self.error: str | None = None
        self.truncation: str | None = None
        self.reconnects = 0
        self.dropped = 0
        self.passes = 0  # complete passes over a file or folder
        self.retry_s = 0.0  # outages that ended (see outage_s())
        self._counting_from = 0.0  # perf_counter time before which outages are not the run's (reset_outage)
        self.abandoned = False
        self._outage_since: float | None = time.perf_counter() if self.live else None
        self._read_since: float | None = None  # perf_counter when the live read in progress began
        self._state = "connecting" if self.live else "live"
        self._state_since = time.time()
        self._pass_frames = 0
        self._index = 0
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._delivered = -1
        self._ended = False
        self._stop = threading.Event()
        self._closed = False
        self._release_lock = threading.Lock()  # who releases the reader: close() or a thread it abandoned
        self._thread_done = False
        self._thread: threading.Thread | None = None
        if self.threaded:
            self._thread = threading.Thread(target=self._capture_loop, name="edgecnn-capture", daemon=True)
            self._thread.start()

    @property
    def describe(self) -> str:
        return self.reader.describe

    @property
    def fps(self) -> float:
        """The frame rate the source announces (a live one: once connected; before that, the asked-for rate)."""
        return float(self.reader.fps or self._default_fps)

    # -- state and outage accounting (the capture thread writes, any thread reads) --------------

    def _set_state(self, state: str, since: float | None = None) -> None:
        with self._cond:
            self._state, self._state_since = state, time.time() if since is None else since

    def _stalled_for(self) -> float:
        """Seconds the live read in progress has waited, when that is long enough to be an outage (else 0)."""
        since = self._read_since
        if since is None or self._outage_since is not None:
            return 0.0
        waited = time.perf_counter() - since
        return waited if waited > max(STALLED_AFTER_S, 5 / (self.fps or 30.0)) else 0.0

    def status(self) -> dict[str, Any]:
        """{"state": connecting|live|stalled|reconnecting|lost|ended, "since": epoch s, "for_s": seconds
        in it}; stalled: connected, but no frame for more than STALLED_AFTER_S (and 5 frame intervals)."""
        with self._cond:
            state, since = self._state, self._state_since
            stalled = self._stalled_for() if state == "live" else 0.0
        if stalled:
            state, since = "stalled", time.time() - stalled
        return {"state": state, "since": round(since, 3), "for_s": round(max(0.0, time.time() - since), 3)}

    def outage_s(self) -> float:
        """Seconds without frames so far: ended outages plus the one going on now (a lost source being
        reopened, or a connected one silent for longer than STALLED_AFTER_S)."""
        with self._cond:
            ongoing = 0.0 if self._outage_since is None else time.perf_counter() - self._outage_since
            return self.retry_s + ongoing + self._stalled_for()

    def reset_outage(self, start: float) -> None:
        """Count outages from `start` (perf_counter: the run's start) on: time before it is not the run's."""
        with self._cond:
            self.retry_s, self._counting_from = 0.0, start
            if self._outage_since is not None:
                self._outage_since = max(self._outage_since, start)

    def _outage_begins(self, since: float) -> None:
        with self._cond:
            if self._outage_since is None:  # a stall noticed later may have begun before the run did
                self._outage_since = max(since, self._counting_from)

    def _outage_ends(self, until: float) -> None:
        with self._cond:
            if self._outage_since is not None:
                self.retry_s += max(0.0, until - self._outage_since)
                self._outage_since = None

    # -- the capture thread ---------------------------------------------------------------------

    def _publish(self, image: np.ndarray, name: str | None, t0: float, t1: float, cpu_s: float | None) -> Frame:
        """Hand a frame over (newest only); `cpu_s`: CPU time of a live read (None: files, no waiting)."""
        read_s = t1 - t0 if cpu_s is None else min(cpu_s, t1 - t0)
        frame = Frame(image, self._index, name, t1, 1e3 * read_s, time.time(), 1e3 * (t1 - t0 - read_s))
        self._index += 1
        with self._cond:
            # replaced before the consumer took it; frames before its first read (the model loading) are
            # not the run's: they are not counted
            if self._latest is not None and self._latest.index > self._delivered >= 0:
                self.dropped += 1
            self._latest = frame
            self._cond.notify_all()
        return frame

    def _capture_loop(self) -> None:
        try:
            if self.live:
                self._live_loop()
            else:
                self._paced_file_loop()
        except Exception as e:  # never die silently in a thread
            self.error = f"{self.describe}: capture failed: {type(e).__name__}: {e}"
            self._set_state("lost")
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()
            with self._release_lock:
                self._thread_done = True
                if self.abandoned:  # close() left us the reader: free it here, in the thread that used it
                    self.reader.release()

    def _paced_file_loop(self) -> None:
        """A file played like a camera (--realtime): each frame at its time, newest only."""
        pace, start = 1.0 / self.fps, time.perf_counter()
        while not self._stop.is_set():
            t0 = time.perf_counter()
            image, name = self._read_file()
            t1 = time.perf_counter()
            if image is None:
                self._set_state("ended")
                return
            delay = start + self._index * pace - time.perf_counter()
            if delay > 0 and self._stop.wait(delay):
                return
            t2 = time.perf_counter()  # its time has come: the moment a camera would have delivered it
            self._publish(image, name, t2 - (t1 - t0), t2, None)

    def _live_loop(self) -> None:
        outage_from = time.perf_counter()  # the first connection counts as an outage too
        first = True
        while not self._stop.is_set():
            if not self._connect(outage_from, first):
                return
            first = False
            stalled_since: float | None = None  # a read that hit the stall timeout, even if it then gave a frame
            while not self._stop.is_set():
                t0, c0 = time.perf_counter(), time.thread_time()
                self._read_since = t0
                image, name = self.reader.read()
                t1, cpu = time.perf_counter(), time.thread_time() - c0
                if self._stop.is_set():
                    return
                self._read_since = None
                if image is None:
                    outage_from = stalled_since or t0
                    self._outage_begins(outage_from)
                    self._set_state("reconnecting", time.time() - (time.perf_counter() - outage_from))
                    silent = time.perf_counter() - outage_from
                    log.warning("%s: lost%s; reopening it at most %g s apart%s", self.describe,
                                f" (no frame for {silent:.1f} s)" if silent >= 0.5 else "", RETRY_MAX_S,
                                self._for_how_long())
                    break
                if t1 - t0 >= 0.9 * self.stall_timeout:
                    # FFmpeg's read timeout may hand over what it had before failing the next read
                    stalled_since = t0
                    log.warning("%s: no data for %.1f s", self.describe, t1 - t0)
                elif stalled_since is not None:  # it came back by itself
                    self._outage_begins(stalled_since)
                    self._outage_ends(t0)
                    stalled_since = None
                self._publish(image, name, t0, t1, cpu)

    def _for_how_long(self) -> str:
        return " (forever)" if self.reconnect_timeout == 0 else f" for {self.reconnect_timeout:g} s"

    def _connect(self, outage_from: float, first: bool) -> bool:
        """Open the live source and read its first frame, retrying at most RETRY_MAX_S apart (with
        jitter) until reconnect_timeout (0: forever). False: stopped, or given up (self.error set)."""
        self._outage_begins(outage_from)
        deadline = None if self.reconnect_timeout == 0 else time.monotonic() + self.reconnect_timeout
        attempt, last_log, why = 0, -1e9, ""
        while not self._stop.is_set():
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                self.reader.connect()
                image, name = self.reader.read()
                why = "opened, but gave no frame"
            except EdgeCNNError as e:
                image, name, why = None, None, str(e)
            t1, cpu = time.perf_counter(), time.thread_time() - c0
            if self._stop.is_set():
                return False
            if image is not None:
                self._outage_ends(t1)
                self._set_state("live")
                if first:
                    log.info("%s: connected%s", self.describe,
                             f" after {t1 - outage_from:.1f} s of retries" if attempt else "")
                else:
                    self.reconnects += 1
                    log.warning("%s: reconnected after %.1f s without frames", self.describe, t1 - outage_from)
                self._publish(image, name, t0, t1, cpu)
                return True
            attempt += 1
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if attempt == 1 or now - last_log >= RETRY_LOG_EVERY_S:
                last_log = now
                what = "cannot connect" if first else "reopening failed"
                log.warning("%s: %s (%s); retrying at most %g s apart%s", self.describe, what, why, RETRY_MAX_S,
                            self._for_how_long())
            delay = min(RETRY_MAX_S, 0.25 * 2 ** (attempt - 1)) * random.uniform(0.8, 1.0)
            if deadline is not None:
                delay = min(delay, max(0.0, deadline - now))
            if self._stop.wait(delay):
                return False
        if self._stop.is_set():
            return False
        self.reader.release()
        if first:
            self.error = f"{why}; not up after {self.reconnect_timeout:g} s of retries (--reconnect-timeout)"
        else:
            self.error = f"{self.describe}: lost, and not back after {self.reconnect_timeout:g} s of retries"
        self._set_state("lost")
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

    # -- the consumer's side ----------------------------------------------------------------------

    def read(self) -> Frame | None:
        """The next frame (live: the newest one not yet delivered); None at the end of the stream or
        once the source is closed."""
        if not self.threaded:
            t0 = time.perf_counter()
            image, name = self._read_file()
            t1 = time.perf_counter()
            if image is None:
                self._set_state("ended")
                return None
            frame = Frame(image, self._index, name, t1, 1e3 * (t1 - t0), time.time())
            self._index += 1
            return frame
        with self._cond:
            # Short waits keep Ctrl-C responsive while a camera is slow.
            while not self._cond.wait_for(
                lambda: self._ended or self._stop.is_set()
                or (self._latest is not None and self._latest.index > self._delivered), 0.5
            ):
                pass
            if self._latest is not None and self._latest.index > self._delivered and not self._stop.is_set():
                self._delivered = self._latest.index
                return self._latest
        if self.error and not self._stop.is_set():
            raise EdgeCNNError(self.error)
        return None

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame

    def close(self) -> None:
        """Stop the capture thread and release the reader (again: nothing). A read still blocked
        after CLOSE_WAIT_S (a silent stream inside FFmpeg, a hung driver) is abandoned: the thread
        releases the reader itself when the read returns, so it is never freed under a running read."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=CLOSE_WAIT_S)
            with self._release_lock:
                if not self._thread_done:
                    self.abandoned = True
            if self.abandoned:
                log.warning("%s: a read (or open) is still blocked; left to its capture thread (not freed under it)",
                            self.describe)
                return
        self.reader.release()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_source(uri: str, **options: Any) -> Source:
    """Open a frame source by URI (see the module docstring); EdgeCNNError with one line if it cannot be."""
    return Source(uri, **options)
