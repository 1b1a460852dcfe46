"""Sample sources for series bundles (sensors, audio), named by URI and cut into sliding windows. No torch.

    csv:FILE                             a CSV recording: one row a sample, one column a channel, an optional
    csv:FILE?columns=ax,ay,az            header row; `columns` picks channels by header name or 0-based index
    wav:FILE                             a WAV (or any libsndfile) recording, through soundfile
    serial:///dev/ttyUSB0?baud=115200    a sensor that prints one sample a line ("1.0,2.0,3.0", or separated by
                                         spaces, tabs or ';'), through pyserial (`serial://` + any pyserial URL);
                                         the first line after opening (maybe the tail of one) is dropped
    mic://  mic://DEVICE                 a microphone through PortAudio (sounddevice); DEVICE: index or name

`SlidingWindows` cuts the samples (n, C) into windows of the manifest's `length` every `hop` samples;
window k covers samples [k*hop, k*hop + length) of the stream. Files hand over every window in order
(nothing is lost: throughput). Live sources (serial, mic, and files played with realtime=True at their
sample rate) are read by a capture thread into a bounded buffer, and `read()` returns the newest complete
window not yet delivered: a slow consumer skips windows (counted in `dropped`) instead of lagging. Each
window carries `captured`, the wall-clock time (time.time(), epoch seconds) when its last sample arrived.
A lost serial port is reopened with backoff for up to `reconnect_timeout` seconds (0: forever); samples from before the
gap never share a window with samples after it.
"""

from __future__ import annotations

import csv
import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from ..errors import EdgeCNNError

log = logging.getLogger("edgecnn.runtime")

SERIES_SCHEMES = ("csv:", "wav:", "serial:", "mic:")
CHUNK = 4096  # samples read from a file at a time
MAX_BAD_LINES = 50  # a serial stream with this many unreadable lines in a row is refused
SERIAL_TIMEOUT_S = 0.2  # one blocking read of a serial port (keeps Ctrl-C and close() responsive)
_SPLIT = re.compile(r"[,;\s]+")


def is_series_uri(uri: str) -> bool:
    """Whether a source URI names a series source (csv:, wav:, serial://, mic://)."""
    return str(uri).strip().lower().startswith(SERIES_SCHEMES)


@dataclass
class Window:
    """One window of samples on its way to the classifier."""

    samples: np.ndarray  # float32 (length, channels)
    index: int  # window number k in the stream (live sources skip some)
    start: int  # stream position of its first sample (samples since the start of the stream)
    end: int  # one past its last sample: start + length
    captured: float  # time.time() (epoch seconds) when its last sample arrived
    timestamp: float  # time.perf_counter() of the same moment
    read_ms: float  # reading/parsing the samples of this window (waiting for a live source left out)
    after_gap: bool = False  # the first window after a live source came back (the stream has a hole)


# -- readers: each returns chunks of samples (n, C) float32; None at the end or when lost -----------


class _CsvReader:
    live = False
    sample_rate: float | None = None

    def __init__(self, path: str, channels: int, columns: list[str] | None):
        self.path = Path(path)
        self.describe = f"CSV {path}"
        if not self.path.is_file():
            raise EdgeCNNError(f"csv:{path}: no such file")
        self.channels = channels
        self.columns = columns
        self._open()

    def _open(self) -> None:
        self._file = open(self.path, newline="", encoding="utf-8", errors="replace")  # noqa: SIM115
        self._rows = csv.reader(self._file)
        self._line = 0
        self._pick: list[int] | None = None
        self._first: list[str] | None = None
        first = self._next_row()
        if first is None:
            raise EdgeCNNError(f"csv:{self.path}: no samples in the file")
        header = not all(_is_number(cell) for cell in first)
        names = [c.strip() for c in first] if header else None
        self._pick = self._choose_columns(names, len(first))
        if not header:
            self._first = first

    def _choose_columns(self, names: list[str] | None, width: int) -> list[int]:
        c = self.channels
        if self.columns is None:
            if width != c:
                raise EdgeCNNError(f"csv:{self.path}: {width} columns, the bundle takes {c} channels "
                                   "(pick them with csv:FILE?columns=NAME,...)")
            return list(range(width))
        if len(self.columns) != c:
            raise EdgeCNNError(f"csv:{self.path}: columns= names {len(self.columns)}, the bundle takes {c} channels")
        pick = []
        for col in self.columns:
            if names is not None and col in names:
                pick.append(names.index(col))
            elif col.isdigit() and int(col) < width:
                pick.append(int(col))
            else:
                known = f" (the header has {', '.join(names)})" if names else " (the file has no header row)"
                raise EdgeCNNError(f"csv:{self.path}: no column {col!r}{known}")
        return pick

    def _next_row(self) -> list[str] | None:
        for row in self._rows:
            self._line = self._rows.line_num
            if row and any(cell.strip() for cell in row) and not row[0].lstrip().startswith("#"):
                return row
        return None

    def read(self) -> np.ndarray | None:
        out = np.empty((CHUNK, self.channels), np.float32)
        n = 0
        assert self._pick is not None
        need = max(self._pick) + 1
        while n < CHUNK:
            if self._first is not None:
                row, self._first = self._first, None
            else:
                row = self._next_row()
                if row is None:
                    break
            if len(row) < need:
                raise EdgeCNNError(f"csv:{self.path} line {self._line}: {len(row)} values, expected {need} "
                                   "(a missing column?)")
            for j, col in enumerate(self._pick):
                cell = row[col].strip()
                if not cell:
                    out[n, j] = np.nan  # a missing value: the preprocessing fills in the channel mean
                    continue
                try:
                    out[n, j] = float(cell)
                except ValueError:
                    raise EdgeCNNError(f"csv:{self.path} line {self._line}: {cell[:40]!r} in column {col + 1} "
                                       "is not a number") from None
            n += 1
        return out[:n] if n else None

    def rewind(self) -> bool:
        self._file.close()
        self._open()
        return True

    def close(self) -> None:
        self._file.close()


def _is_number(text: str) -> bool:
    t = text.strip()
    if not t:
        return True  # an empty cell is a missing value, not a name
    try:
        float(t)
    except ValueError:
        return False
    return True


def resample(x: np.ndarray, from_rate: float, to_rate: float) -> np.ndarray:
    """(n, C) samples from one rate to another: scipy's polyphase filter (anti-aliased), float32."""
    from fractions import Fraction

    from scipy.signal import resample_poly

    ratio = Fraction(to_rate / from_rate).limit_denominator(1000)
    y = resample_poly(x.astype(np.float64), ratio.numerator, ratio.denominator, axis=0)
    return y.astype(np.float32)


class _WavReader:
    live = False

    def __init__(self, path: str, channels: int, sample_rate: float | None, allow_resample: bool):
        try:
            import soundfile
        except (ImportError, OSError):
            raise EdgeCNNError("wav: needs soundfile: pip install 'edgecnn[stream]'") from None
        self.path = path
        self.channels = channels
        if not Path(path).is_file():
            raise EdgeCNNError(f"wav:{path}: no such file")
        try:
            self._file = soundfile.SoundFile(path)
        except (RuntimeError, soundfile.LibsndfileError) as e:  # LibsndfileError subclasses RuntimeError
            raise EdgeCNNError(f"wav:{path}: not a readable audio file ({str(e).splitlines()[0][:120]})") from None
        rate = float(self._file.samplerate)
        self.file_rate = rate
        self.sample_rate = sample_rate or rate
        self.file_channels = self._file.channels
        if self.file_channels != channels and channels != 1:
            raise EdgeCNNError(f"wav:{path}: {self.file_channels} channels, the bundle takes {channels}")
        self._resampled: np.ndarray | None = None
        self._pos = 0
        if sample_rate is not None and abs(rate - sample_rate) > 1e-6:
            if not allow_resample:
                self._file.close()
                raise EdgeCNNError(f"wav:{path}: {rate:g} Hz, the bundle takes {sample_rate:g} Hz "
                                   "(pass --resample to convert it, or resample the file)")
            # the whole file at once: exact, no seams where chunks would meet
            self._resampled = resample(self._mono(self._file.read(dtype="float32", always_2d=True)), rate,
                                       sample_rate)
        mono = " (mixed down to mono)" if self.file_channels != channels else ""
        conv = f", resampled {rate:g} -> {sample_rate:g} Hz" if self._resampled is not None else ""
        self.describe = f"WAV {path} ({rate:g} Hz{conv}{mono})"

    def _mono(self, x: np.ndarray) -> np.ndarray:
        return x.mean(axis=1, keepdims=True, dtype=np.float32) if x.shape[1] != self.channels else x

    def read(self) -> np.ndarray | None:
        if self._resampled is not None:
            chunk = self._resampled[self._pos : self._pos + CHUNK]
            self._pos += len(chunk)
        else:
            chunk = self._mono(self._file.read(CHUNK, dtype="float32", always_2d=True))
        return chunk if len(chunk) else None

    def rewind(self) -> bool:
        self._pos = 0
        self._file.seek(0)
        return True

    def close(self) -> None:
        self._file.close()


class _SerialReader:
    """Lines of numbers from a serial port; unreadable lines (a partial first line, noise) are skipped."""

    live = True
    sample_rate: float | None = None

    def __init__(self, url: str, baud: int, channels: int):
        try:
            import serial
        except ImportError:
            raise EdgeCNNError("serial:// needs pyserial: pip install 'edgecnn[stream]'") from None
        self._serial = serial
        self.url, self.baud, self.channels = url, baud, channels
        self.describe = f"serial {url} at {baud} baud"
        self.bad_lines = 0  # in a row
        self.skipped = 0  # in all
        self._port = self._open()

    def _open(self) -> Any:
        try:
            port = self._serial.serial_for_url(self.url, baudrate=self.baud, timeout=SERIAL_TIMEOUT_S)
        except (self._serial.SerialException, OSError, ValueError) as e:
            raise EdgeCNNError(f"cannot open serial port {self.url}: {e}") from None
        self._pending = b""
        self._first = True  # the first line may begin mid-line: always dropped
        return port

    def read(self) -> np.ndarray | None:
        """The samples of the complete lines that arrived (maybe none, after SERIAL_TIMEOUT_S); None: lost."""
        try:
            data = self._port.read(max(1, self._port.in_waiting))
        except (self._serial.SerialException, OSError) as e:
            log.warning("%s: %s", self.describe, e)
            return None
        if not data:
            return np.empty((0, self.channels), np.float32)
        lines = (self._pending + data).split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > 4096:  # no newline for this long: not a line protocol
            lines.append(self._pending)
            self._pending = b""
        rows = []
        for raw in lines:
            text = raw.decode("ascii", "replace").strip()
            if not text or text.startswith("#"):
                continue
            if self._first:  # opening flushed the port: the first line may be the tail of one, even if it parses
                self._first = False
                continue
            values = self._parse(text)
            if values is None:
                self.skipped += 1
                self.bad_lines += 1
                if self.bad_lines >= MAX_BAD_LINES:
                    raise EdgeCNNError(f"{self.describe}: {self.bad_lines} lines in a row are not {self.channels} "
                                       f"numbers (last: {text[:60]!r})")
                if self.bad_lines == 1:
                    log.warning("%s: skipping a line that is not %d numbers: %r", self.describe, self.channels,
                                text[:60])
                continue
            self.bad_lines = 0
            rows.append(values)
        return np.asarray(rows, np.float32).reshape(-1, self.channels)

    def _parse(self, text: str) -> list[float] | None:
        parts = [p for p in _SPLIT.split(text) if p]
        if len(parts) != self.channels:
            return None
        try:
            return [float(p) for p in parts]
        except ValueError:
            return None

    def reopen(self) -> bool:
        self.close()
        try:
            self._port = self._open()
        except EdgeCNNError:
            return False
        return True

    def close(self) -> None:
        try:
            self._port.close()
        except (self._serial.SerialException, OSError):
            pass


class _MicReader:
    """PortAudio input through sounddevice: its callback hands blocks to a queue the capture thread reads."""

    live = True

    def __init__(self, device: str, channels: int, sample_rate: float | None):
        try:
            import sounddevice
        except (ImportError, OSError) as e:  # OSError: the PortAudio library itself is missing
            raise EdgeCNNError(f"mic:// needs sounddevice and the PortAudio library (pip install 'edgecnn[stream]'; "
                               f"apt install libportaudio2): {e}") from None
        if sample_rate is None:
            raise EdgeCNNError("mic:// needs a sample rate, and the bundle records none")
        self.sample_rate = float(sample_rate)
        self.channels = channels
        self._sd = sounddevice
        self.device = device
        self.describe = f"microphone {device or 'default'} at {sample_rate:g} Hz"
        self._blocks: deque[np.ndarray] = deque()
        self._ready = threading.Condition()
        self.overflows = 0
        self._stream = self._open()

    def _open(self) -> Any:
        d = self.device
        dev: int | str | None = None if not d else int(d) if d.isdigit() else d
        try:
            stream = self._sd.InputStream(samplerate=self.sample_rate, channels=self.channels, dtype="float32",
                                          device=dev, callback=self._callback)
            stream.start()
        except (self._sd.PortAudioError, ValueError) as e:
            raise EdgeCNNError(f"mic://{d}: no usable audio input here ({e})") from None
        return stream

    def _callback(self, indata: np.ndarray, frames: int, when: Any, status: Any) -> None:
        if status.input_overflow:
            self.overflows += 1
        with self._ready:
            self._blocks.append(indata.copy())
            self._ready.notify()

    def read(self) -> np.ndarray | None:
        with self._ready:
            self._ready.wait_for(lambda: bool(self._blocks) or not self._stream.active, 0.5)
            blocks = list(self._blocks)
            self._blocks.clear()
        if not blocks:
            return None if not self._stream.active else np.empty((0, self.channels), np.float32)
        return np.concatenate(blocks)

    def reopen(self) -> bool:
        self.close()
        try:
            self._stream = self._open()
        except EdgeCNNError:
            return False
        return True

    def close(self) -> None:
        try:
            self._stream.close()
        except self._sd.PortAudioError:
            pass


# -- windows -----------------------------------------------------------------------------------


class SlidingWindows:
    """Windows of `length` samples every `hop` samples over pushed chunks (module docstring).

    `pop()` hands over every window in order (files); `newest()` the newest complete one, skipping
    older ones (live). Memory stays bounded: samples no window will need are let go.
    """

    def __init__(self, length: int, hop: int, channels: int, newest_only: bool = False):
        if hop < 1:
            raise EdgeCNNError(f"--hop must be at least 1 sample, got {hop}")
        self.length, self.hop, self.channels = length, hop, channels
        self.newest_only = newest_only  # live: windows older than the newest complete one are never wanted
        self._buf = np.empty((0, channels), np.float32)
        self._base = 0  # stream position of _buf[0]
        self.total = 0  # samples pushed so far (the stream position of the next sample)
        self._origin = 0  # where windows start counting (moves after a gap)
        self._next = 0  # the next window index pop() hands over
        self._arrivals: deque[tuple[int, float, float]] = deque()  # (end position, time.time(), perf_counter)
        self._read_ms = 0.0
        self._gap = False

    def push(self, chunk: np.ndarray, captured: float, stamp: float, read_ms: float = 0.0) -> None:
        if len(chunk) == 0:
            return
        self._buf = np.concatenate([self._buf, chunk.astype(np.float32, copy=False)])
        self.total += len(chunk)
        self._arrivals.append((self.total, captured, stamp))
        self._read_ms += read_ms
        if self.newest_only:  # bounded however slow the consumer: keep what the newest window needs
            self._trim(self._start(max(self._next, self._complete())))

    def gap(self) -> None:
        """The stream had a hole: no window spans it; window indices go on from the first sample after it."""
        self._buf = self._buf[:0]
        self._base = self.total
        self._arrivals.clear()
        k = -(-(self.total - self._origin) // self.hop)  # the first window starting at or after the hole
        self._origin = self.total - k * self.hop
        self._next = k
        self._gap = True

    def _start(self, k: int) -> int:
        return self._origin + k * self.hop

    def _complete(self) -> int:
        """Index of the newest complete window, -1 if none."""
        return (self.total - self._origin - self.length) // self.hop if self.total - self._origin >= self.length else -1

    def _window(self, k: int) -> Window:
        start = self._start(k)
        end = start + self.length
        a = start - self._base
        samples = self._buf[a : a + self.length].copy()
        while self._arrivals and self._arrivals[0][0] < end:
            self._arrivals.popleft()
        _, captured, stamp = self._arrivals[0]
        w = Window(samples, k, start, end, captured, stamp, self._read_ms, self._gap)
        self._read_ms, self._gap = 0.0, False
        return w

    def _trim(self, keep_from: int) -> None:
        cut = keep_from - self._base
        if cut > 0:
            self._buf = self._buf[cut:]
            self._base = keep_from

    def pop(self) -> Window | None:
        """The next window in order, or None until enough samples are in."""
        if self._next > self._complete():
            return None
        w = self._window(self._next)
        self._next += 1
        self._trim(self._start(self._next))
        return w

    def newest(self) -> tuple[Window | None, int]:
        """(the newest complete window not yet handed over, how many older ones it skips), or (None, 0)."""
        k = self._complete()
        if k < self._next:
            return None, 0
        skipped = k - self._next
        w = self._window(k)
        self._next = k + 1
        self._trim(self._start(self._next))
        return w, skipped


# -- the source --------------------------------------------------------------------------------


def _parse_uri(uri: str) -> tuple[str, str, dict[str, list[str]]]:
    """(scheme, target, query) of csv:FILE?.., wav:FILE, serial://PORT?baud=N, mic://DEVICE."""
    s = uri.strip()
    scheme, _, rest = s.partition(":")
    scheme = scheme.lower()
    if scheme in ("serial", "mic"):
        if not rest.startswith("//"):
            raise EdgeCNNError(f"bad source {uri!r}: expected {scheme}://{'PORT' if scheme == 'serial' else 'DEVICE'}")
        parts = urlsplit(s)
        target = unquote(parts.netloc + parts.path)
        return scheme, target, parse_qs(parts.query)
    if rest.startswith("//"):  # csv:///abs/path or csv://rel/path
        rest = rest[2:]
    target, _, query = rest.partition("?")
    return scheme, target, parse_qs(query)


class SeriesSource:
    """Windows of a series stream. `read()` returns the next `Window`, or None at the end of the stream.

    channels/length: the bundle's window; hop: samples between window starts; sample_rate: the
    bundle's (None when it records none). realtime=True plays a file at its sample rate like a live
    source; loop=True plays a file again from the start at its end (stream positions go on counting).
    After the run: `dropped` windows a live source skipped, `reconnects`, `retry_s` (time without data
    while a lost port was reopened), `samples` (samples read), `rate_measured` (live: samples a second).
    """

    def __init__(self, uri: str, channels: int, length: int, hop: int, sample_rate: float | None = None,
                 resample: bool = False, realtime: bool = False, loop: bool = False,
                 reconnect_timeout: float = 30.0):
        self.uri = str(uri)
        if not reconnect_timeout >= 0:
            raise EdgeCNNError(f"--reconnect-timeout must be 0 (retry forever) or positive, got {reconnect_timeout:g}")
        scheme, target, query = _parse_uri(self.uri)
        known = {"csv": {"columns"}, "wav": set(), "serial": {"baud"}, "mic": set()}
        if scheme not in known:
            raise EdgeCNNError(f"not a series source: {uri!r} (csv:FILE, wav:FILE, serial://PORT?baud=N, mic://)")
        extra = set(query) - known[scheme]
        if extra:
            raise EdgeCNNError(f"{uri}: unknown option {sorted(extra)[0]!r}"
                               f"{' (known: ' + ', '.join(sorted(known[scheme])) + ')' if known[scheme] else ''}")
        self.reader: Any
        if scheme == "csv":
            cols = query.get("columns", [None])[0]
            columns = [c.strip() for c in cols.split(",")] if cols else None
            self.reader = _CsvReader(target, channels, columns)
        elif scheme == "wav":
            self.reader = _WavReader(target, channels, sample_rate, resample)
        elif scheme == "serial":
            baud = query.get("baud", ["115200"])[0]
            if not baud.isdigit() or int(baud) < 1:
                raise EdgeCNNError(f"{uri}: baud must be a positive integer, got {baud!r}")
            if not target:
                raise EdgeCNNError(f"{uri}: no port (serial:///dev/ttyUSB0?baud=115200)")
            self.reader = _SerialReader(target, int(baud), channels)
        else:
            self.reader = _MicReader(target, channels, sample_rate)
        self.live = bool(self.reader.live)
        self.sample_rate = sample_rate or getattr(self.reader, "sample_rate", None)
        if loop and self.live:
            self.reader.close()
            raise EdgeCNNError(f"--loop plays files again at their end; {self.uri} is a live source")
        if realtime and not self.live and not self.sample_rate:
            self.reader.close()
            raise EdgeCNNError("--realtime plays a file at its sample rate, and the bundle records none")
        self.threaded = self.live or realtime
        self.windows = SlidingWindows(length, hop, channels, newest_only=self.threaded)
        self._first_chunk = 0
        self.loop, self.reconnect_timeout = loop, reconnect_timeout
        self.error: str | None = None
        self.truncation: str | None = None  # the image Source's field: files here have no announced length
        self.dropped = self.reconnects = self.passes = 0
        self.retry_s = 0.0
        self.first_arrival: float | None = None
        self.last_arrival: float | None = None
        self._cond = threading.Condition()
        self._ended = False
        self._reconnecting = False
        self._stop = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        if self.threaded:
            self._thread = threading.Thread(target=self._capture_loop, name="edgecnn-capture", daemon=True)
            self._thread.start()

    @property
    def describe(self) -> str:
        return self.reader.describe

    @property
    def samples(self) -> int:
        return self.windows.total

    @property
    def rate_measured(self) -> float | None:
        """Samples a second a live source delivered (None for files read at full speed, or too few)."""
        if not self.threaded or self.first_arrival is None or self.last_arrival is None:
            return None
        span = self.last_arrival - self.first_arrival
        return (self.windows.total - self._first_chunk) / span if span > 1.0 else None

    def status(self) -> dict:
        """The source's state for /healthz and the dashboard: live, reconnecting, lost or ended."""
        if self.error:
            return {"state": "lost"}
        if self._ended:
            return {"state": "ended"}
        return {"state": "reconnecting" if self._reconnecting else "live"}

    def _read_chunk(self) -> tuple[np.ndarray | None, float]:
        """The next chunk (None at the end of a file, or a lost live source) and the ms spent reading it."""
        t0 = time.perf_counter()
        chunk = self.reader.read()
        if chunk is None and not self.live:
            self.passes += 1
            self._ended = not self.loop
            if self.loop and self.windows.total > 0 and self.reader.rewind():
                chunk = self.reader.read()
        return chunk, 1e3 * (time.perf_counter() - t0)

    # -- files at full speed: every window, in the caller's thread
    def _read_file(self) -> Window | None:
        while (w := self.windows.pop()) is None:
            chunk, ms = self._read_chunk()
            if chunk is None:
                return None
            self.windows.push(chunk, time.time(), time.perf_counter(), ms)
        return w

    # -- live sources (and realtime files): a capture thread keeps the newest samples
    def _capture_loop(self) -> None:
        pace_start = time.perf_counter()
        paced = 0
        try:
            while not self._stop.is_set():
                chunk, ms = self._read_chunk()
                if chunk is None:
                    if not self.live:
                        break
                    since = time.perf_counter()
                    self._reconnecting = True
                    back = self._reconnect(since)
                    self._reconnecting = False
                    self.retry_s += time.perf_counter() - since
                    if not back:
                        break
                    with self._cond:
                        self.windows.gap()
                    continue
                if len(chunk) == 0:
                    continue
                if not self.live:  # a file played like a sensor: each hop's samples at their time
                    for part in np.array_split(chunk, max(1, len(chunk) // self.windows.hop)):
                        paced += len(part)
                        delay = pace_start + paced / float(self.sample_rate) - time.perf_counter()
                        if delay > 0 and self._stop.wait(delay):
                            return
                        self._deliver(part, ms / max(1, len(chunk) // self.windows.hop))
                else:
                    self._deliver(chunk, ms)
        except EdgeCNNError as e:
            self.error = str(e)
        except Exception as e:  # never die silently in a thread
            self.error = f"{self.describe}: capture failed: {type(e).__name__}: {e}"
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _deliver(self, chunk: np.ndarray, ms: float) -> None:
        now, stamp = time.time(), time.perf_counter()
        if self.first_arrival is None:
            self.first_arrival, self._first_chunk = stamp, len(chunk)
        self.last_arrival = stamp
        with self._cond:
            self.windows.push(chunk, now, stamp, ms)
            self._cond.notify_all()

    def _reconnect(self, since: float) -> bool:
        deadline = time.monotonic() + (self.reconnect_timeout or float("inf"))  # 0: forever
        delay = 0.5
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            log.warning("%s: lost; reopening in %.1f s", self.describe, min(delay, remaining))
            if self._stop.wait(min(delay, remaining)):
                return False
            if self.reader.reopen():
                self.reconnects += 1
                log.warning("%s: reopened after %.1f s", self.describe, time.perf_counter() - since)
                return True
            delay = min(delay * 2, 8.0)
        self.error = f"{self.describe}: lost, and not back after {self.reconnect_timeout:g} s of retries"
        return False

    def read(self, stop: threading.Event | None = None) -> Window | None:
        """The next window (live: the newest one not yet delivered); None at the end of the stream, or
        once `stop` is set (a live source that sends nothing does not hold a stop up)."""
        if not self.threaded:
            return None if stop is not None and stop.is_set() else self._read_file()
        with self._cond:
            while True:
                w, skipped = self.windows.newest()
                if w is not None:
                    self.dropped += skipped
                    return w
                if stop is not None and stop.is_set():
                    return None
                if self._ended:
                    break
                self._cond.wait(0.2)  # short waits: a stop is honoured while the source is quiet
        if self.error:
            raise EdgeCNNError(self.error)
        return None

    def __iter__(self) -> Iterator[Window]:
        while (w := self.read()) is not None:
            yield w

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.reader.close()

    def __enter__(self) -> SeriesSource:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_series_source(uri: str, spec: dict, hop: int | None = None, **options: Any) -> SeriesSource:
    """A `SeriesSource` for a series bundle's manifest `input` block; hop defaults to a quarter window."""
    length = int(spec["length"])
    if not is_series_uri(uri):
        raise EdgeCNNError(f"this bundle takes series windows ({spec['channels']} channels x {length} samples): "
                           f"--source must be csv:FILE, wav:FILE, serial://PORT or mic://, got {uri!r}")
    hop = default_hop(length) if hop is None else hop
    return SeriesSource(uri, int(spec["channels"]), length, hop, spec.get("sample_rate"), **options)


def default_hop(length: int) -> int:
    """A quarter of the window (75 % overlap), at least one sample."""
    return max(1, length // 4)
