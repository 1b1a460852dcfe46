"""`edgecnn run --serve`: a live dashboard over HTTP, built on aiohttp (the `serve` extra).

The server runs in its own thread with its own asyncio event loop; `DashboardSink` is the `Sink` the
classifier loop writes to. Endpoints (all GET):

    /              the page (edgecnn/runtime/static/: HTML, CSS and JS shipped in the package, no CDN)
    /stream        multipart MJPEG of the annotated frames (latest-frame semantics)
    /frame.jpg     the newest annotated frame as one JPEG
    /api/stats     fps, per-stage p50/p90/p99/mean over the last WINDOW frames, frames, drops, uptime,
                   result age p50/p99 (whole run), per source: state, frames, fps, dropped, age,
                   what runs (model, backend, artifact, precision, threads, device, source), viewers
    /api/latest    top-k of the latest classified frame, its index and time
    /api/events    Server-Sent Events: one `frame` message per classified frame, at most EVENTS_PER_S a second
    /healthz       200 while results flow, 503 when none for --stale-after s (`health.py`; no token needed)

What a viewer can cost the classifier (the bound documented in docs/runtime.md):
  * `write()` never blocks on the network: it stores the newest record and image under a lock and
    updates fixed-size statistics (a few microseconds).
  * The overlay is drawn (`wants_image`, in the classifier thread) and JPEG-encoded (in the encoder
    thread) only while someone watches /stream or waits for /frame.jpg, at most `stream_fps` frames a
    second, once per frame whatever the number of viewers. A slow viewer skips frames (it always gets the newest one);
    one that takes nothing for WRITE_TIMEOUT_S is dropped.
  * Sending: at most STREAM_SENDS_PER_S frames a second to all /stream viewers together (each viewer
    gets min(stream_fps, STREAM_SENDS_PER_S / viewers) frames a second): the event loop's share of the
    CPU does not grow with the number of viewers (4 viewers: 25 FPS each; 50: 2 FPS each).
  * When the last viewer leaves, freed heap memory is handed back to the OS (glibc malloc_trim), so
    the process returns to about its size before they came.
  * Threads: always two (event loop + encoder), whatever the number of connections.
Hardening: at most `max_viewers` /stream and as many /api/events clients (503 beyond), at most
MAX_CONNECTIONS open sockets (closed at once beyond), REQUEST_TIMEOUT_S to send a complete request
(half-sent or idle connections are closed), request lines and header fields capped at MAX_LINE bytes
and MAX_HEADERS fields, an optional token (`?token=`, `X-Edgecnn-Token` or `Authorization: Bearer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from ..errors import EdgeCNNError
from ..utils import release_free_memory
from .sinks import Sink

log = logging.getLogger("edgecnn.runtime")
# aiohttp logs each malformed request with a traceback: from strangers, not for the user's terminal.
http_log = logging.getLogger("edgecnn.runtime.http")
http_log.propagate = False
http_log.addHandler(logging.NullHandler())

STATIC = Path(__file__).with_name("static")
WINDOW = 512              # frames kept per stage for the percentiles (fixed memory)
FPS_WINDOW_S = 5.0        # fps = frames classified in the last 5 s (at most WINDOW) / that time
EVENTS_PER_S = 10         # /api/events messages per client per second, at most
STATS_CACHE_S = 0.2       # /api/stats is computed at most 5 times a second, whatever the request rate
REQUEST_TIMEOUT_S = 10.0  # a connection must send a complete request within this (also the keep-alive)
WRITE_TIMEOUT_S = 10.0    # a viewer that takes no data for this long is dropped
MAX_CONNECTIONS = 256     # open sockets, all kinds
MAX_LINE = 4096           # bytes per request line / header field
MAX_HEADERS = 32
DEFAULT_MAX_VIEWERS = 4
DEFAULT_STREAM_FPS = 25.0
STREAM_SENDS_PER_S = 100.0  # frames a second written to all /stream viewers together
TRIM_AFTER_S = 1.0        # after the last viewer left, give freed memory back this much later


def parse_address(addr: str, flag: str = "--serve") -> tuple[str, int]:
    """'127.0.0.1:8080', ':8080' or '8080' -> (host, port); the host defaults to localhost."""
    host, _, port = addr.rpartition(":") if ":" in addr else ("", "", addr)
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise EdgeCNNError(f"{flag} {addr!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def page_html() -> bytes:
    """static/index.html with its CSS and JS inlined: one response, so a token in the page's URL is all
    it needs (the page passes the token on to /stream and the API)."""
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    css = (STATIC / "dashboard.css").read_text(encoding="utf-8")
    js = (STATIC / "dashboard.js").read_text(encoding="utf-8")
    html = html.replace('<link rel="stylesheet" href="static/dashboard.css">', f"<style>\n{css}</style>")
    html = html.replace('<script src="static/dashboard.js"></script>', f"<script>\n{js}</script>")
    return html.encode("utf-8")


def device_name() -> str:
    """The board (device tree model) or the CPU model, and the architecture."""
    import platform

    from ..devices.detect import board_model, parse_cpuinfo

    name = board_model(Path("/"))
    if name is None:
        with contextlib.suppress(OSError):
            name = parse_cpuinfo(Path("/proc/cpuinfo").read_text(errors="replace"))["model"]
    return f"{name or platform.node()} ({platform.machine()})"


class LiveWindow:
    """Thread-safe sliding-window statistics for the page: the latest record, per-stage windows, frame times.

    Not `profile.stats.RunStats` (whole-run histograms for the summary): the page shows the last WINDOW
    frames and the FPS of the last FPS_WINDOW_S seconds.
    """

    def __init__(self, window: int = WINDOW):
        self.lock = threading.Lock()
        self.window = window
        self.stages: dict[str, deque] = {}
        self.stamps: deque = deque(maxlen=window)
        self.frames = 0
        self.latest: dict[str, Any] | None = None
        self.latest_time = 0.0
        self.start = time.monotonic()

    def add(self, record: dict[str, Any]) -> None:
        now = time.monotonic()
        with self.lock:
            self.frames += 1
            self.latest, self.latest_time = record, time.time()
            self.stamps.append(now)
            ms = record.get("ms") or {}
            for k, v in ms.items():
                q = self.stages.get(k)
                if q is None:
                    q = self.stages[k] = deque(maxlen=self.window)
                q.append(v)
            if ms:  # the work of the frame: a live source's wait for it is not work
                self.stages.setdefault("total", deque(maxlen=self.window)).append(
                    sum(v for k, v in ms.items() if k != "wait"))

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        with self.lock:
            stages = {k: np.fromiter(q, np.float64, len(q)) for k, q in self.stages.items()}
            stamps = [t for t in self.stamps if now - t <= FPS_WINDOW_S]
            frames, latest, latest_time = self.frames, self.latest, self.latest_time
        fps = (len(stamps) - 1) / (now - stamps[0]) if len(stamps) >= 2 and now > stamps[0] else 0.0
        out = {}
        for k, x in stages.items():
            if x.size:
                p50, p90, p99 = np.percentile(x, (50, 90, 99))
                out[k] = {"p50": round(float(p50), 4), "p90": round(float(p90), 4), "p99": round(float(p99), 4),
                          "mean": round(float(x.mean()), 4), "n": int(x.size)}
        return {"fps": round(fps, 2), "frames": frames, "uptime_s": round(now - self.start, 2), "stages": out,
                "latest": self.latest_view(latest, latest_time, frames)}

    def latest_frame(self, unless: int = -1) -> tuple[int, dict[str, Any] | None]:
        """(frames so far, the latest record's view), read under the lock. The view is None before the
        first frame, and when the count equals `unless` (nothing new since the caller's last read)."""
        with self.lock:
            n = self.frames
            return n, None if n == unless else self.latest_view(self.latest, self.latest_time, n)

    @staticmethod
    def latest_view(record: dict[str, Any] | None, when: float, n: int) -> dict[str, Any] | None:
        if record is None:
            return None
        return {"frame": record.get("frame"), "n": n, "t": record.get("t"), "time": round(when, 3),
                "top": record.get("top", []), **({"name": record["name"]} if "name" in record else {})}


class _Refuse(asyncio.Protocol):
    """Beyond MAX_CONNECTIONS: close at once (no parser, no task, no memory kept)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class DashboardSink(Sink):
    """The dashboard server as a `Sink`. `address` is its URL once the constructor returns."""

    def __init__(self, addr: str, info: dict[str, Any] | None = None,
                 counters: Callable[[], dict[str, Any]] | None = None, max_viewers: int = DEFAULT_MAX_VIEWERS,
                 token: str | None = None, quality: int = 80, stream_fps: float = DEFAULT_STREAM_FPS,
                 health: Any = None):
        try:
            from aiohttp import web  # noqa: F401
        except ImportError:
            raise EdgeCNNError("--serve needs aiohttp: pip install 'edgecnn[serve]'") from None
        if max_viewers < 1:
            raise EdgeCNNError(f"--max-viewers must be at least 1, got {max_viewers}")
        if token is not None and not token:
            raise EdgeCNNError("--serve-token must not be empty")
        self.host, self.port = parse_address(addr)
        self.info = dict(info or {})
        self.counters = counters or (lambda: {})
        self.health = health  # a health.Health: /healthz (None: 404)
        self.max_viewers, self.token, self.quality = max_viewers, token, quality
        self.stream_interval = 1.0 / stream_fps
        self.stats = LiveWindow()
        self._page = page_html()
        # Shared between the classifier thread (write), the encoder thread and the event loop.
        self._lock = threading.Lock()
        self._image: np.ndarray | None = None
        self._image_seq = 0
        self._encode = threading.Event()
        self.encoded = 0                    # JPEGs encoded (at most one per frame, stream_fps a second)
        self._next_encode = 0.0             # monotonic time from which the encoder takes a new frame
        self._closed = False
        self._want = 0                      # stream viewers + snapshot waiters (read by wants_image)
        self._viewers = {"stream": 0, "events": 0}
        # Owned by the event loop.
        self._jpeg: tuple[int, bytes] = (0, b"")
        self._part = b""
        self._frame_waiter: asyncio.Future | None = None
        self._stats_cache: tuple[float, bytes] = (0.0, b"")
        # connections that have not sent a complete request yet -> when they opened (swept each second:
        # a closed one is forgotten then, with its buffers, not REQUEST_TIMEOUT_S later)
        self._pending: dict[Any, float] = {}
        self._trim: asyncio.TimerHandle | None = None
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._start_error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, args=(started,), name="edgecnn-http", daemon=True)
        self._thread.start()
        started.wait()
        if self._start_error is not None:
            self._thread.join(timeout=5)
            e = self._start_error
            reason = getattr(e, "strerror", None) or e
            raise EdgeCNNError(f"--serve {addr}: cannot listen there ({reason})") from None
        self._encoder = threading.Thread(target=self._encode_loop, name="edgecnn-jpeg", daemon=True)
        self._encoder.start()
        self.address = f"http://{self.host if ':' not in self.host else f'[{self.host}]'}:{self.port}/"
        if not is_loopback(self.host):
            log.warning("--serve %s:%d is reachable from other machines: anyone who can reach it sees the "
                        "camera and the results%s", self.host, self.port,
                        "" if token else "; set --serve-token TOKEN to require a token")

    # -- the classifier side (never blocks on the network) ---------------------------------------

    @property
    def wants_image(self) -> bool:  # type: ignore[override]
        """Draw the overlay only while someone watches, and only when the encoder will take it
        (at most stream_fps frames a second): the classifier pays for drawing only what is shown."""
        return self._want > 0 and self._image is None and time.monotonic() >= self._next_encode

    def write(self, image: np.ndarray | None, record: dict[str, Any]) -> bool:
        self.stats.add(record)
        if image is not None and self.wants_image:
            with self._lock:  # a reference: the caller does not modify an image after writing it
                self._image, self._image_seq = image, self._image_seq + 1
            self._encode.set()
        return True

    def close(self, ok: bool = True) -> None:
        if self._closed:
            return
        self._closed = True
        self._encode.set()
        if self._loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._encoder.join(timeout=5)

    # -- the encoder thread ----------------------------------------------------------------------

    def _encode_loop(self) -> None:
        while True:
            self._encode.wait()
            if self._closed:
                return
            self._encode.clear()
            with self._lock:
                image, seq, self._image = self._image, self._image_seq, None
            if image is None:
                continue
            # write() takes no frame before this: frames are drawn and encoded at most stream_fps a second
            self._next_encode = time.monotonic() + self.stream_interval
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            self.encoded += 1
            if ok and not self._closed:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    self._loop.call_soon_threadsafe(self._publish, seq, buf.tobytes())

    # -- the event loop --------------------------------------------------------------------------

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as e:  # reported by the constructor
            self._start_error = e
            started.set()
            self._loop.close()
            return
        started.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _start(self) -> None:
        from aiohttp import web

        @web.middleware
        async def guard(request: Any, handler: Callable) -> Any:
            return await self._guard_request(request, handler)

        app = web.Application(middlewares=[guard], client_max_size=4096)
        app.router.add_get("/", self._index)
        app.router.add_get("/index.html", self._index)
        app.router.add_get("/stream", self._stream)
        app.router.add_get("/frame.jpg", self._snapshot)
        app.router.add_get("/api/stats", self._api_stats)
        app.router.add_get("/api/latest", self._api_latest)
        app.router.add_get("/api/events", self._api_events)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, handler_cancellation=True, shutdown_timeout=1.0,
            keepalive_timeout=REQUEST_TIMEOUT_S, max_line_size=MAX_LINE, max_field_size=MAX_LINE,
            max_headers=MAX_HEADERS, lingering_time=1.0, logger=http_log)
        await self._runner.setup()
        self._frame_waiter = self._loop.create_future()
        server = self._runner.server
        loop = self._loop

        def protocol() -> asyncio.Protocol:
            if len(server.connections) >= MAX_CONNECTIONS:
                return _Refuse()
            handler = server()
            # Whatever the aiohttp version: a connection that has not sent one complete request in
            # REQUEST_TIMEOUT_S is closed (later requests are bounded by the keep-alive timeout).
            self._pending[handler] = loop.time()
            return handler

        try:
            self._listener = await loop.create_server(protocol, self.host, self.port, backlog=128,
                                                      reuse_address=True)
        except BaseException:
            await self._runner.cleanup()
            raise
        self.port = self._listener.sockets[0].getsockname()[1]
        loop.call_later(1.0, self._sweep_pending)

    def _sweep_pending(self) -> None:
        """Close connections that sent no complete request within REQUEST_TIMEOUT_S; forget closed ones."""
        if self._closed:
            return
        now = self._loop.time()
        for handler, opened in list(self._pending.items()):
            transport = handler.transport
            if (transport is None and now - opened > 1.0) or (transport is not None and transport.is_closing()):
                del self._pending[handler]  # closed (None also before connection_made: hence the second)
            elif now - opened >= REQUEST_TIMEOUT_S:
                del self._pending[handler]
                handler.force_close()
                handler.transport.close()
        self._loop.call_later(min(1.0, REQUEST_TIMEOUT_S / 4), self._sweep_pending)

    async def _stop(self) -> None:
        if self._frame_waiter is not None and not self._frame_waiter.done():
            self._frame_waiter.set_result(None)
        self._listener.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._runner.cleanup(), 5)

    def _publish(self, seq: int, jpeg: bytes) -> None:
        self._jpeg = (seq, jpeg)
        # one multipart part per frame, the same bytes object written to every viewer (no per-viewer copy)
        self._part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%b\r\n" % (
            len(jpeg), jpeg)
        waiter, self._frame_waiter = self._frame_waiter, self._loop.create_future()
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _next_jpeg(self, after: int, timeout: float) -> tuple[int, bytes]:
        """The newest JPEG newer than `after`; (after, b"") on timeout or close."""
        deadline = self._loop.time() + timeout
        while self._jpeg[0] <= after and not self._closed:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                return after, b""
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._frame_waiter), remaining)
        return self._jpeg if self._jpeg[0] > after else (after, b"")

    def _authorized(self, request: Any) -> bool:
        if self.token is None:
            return True
        given = request.query.get("token") or request.headers.get("X-Edgecnn-Token") or ""
        auth = request.headers.get("Authorization", "")
        if not given and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode("utf-8"))

    async def _guard_request(self, request: Any, handler: Callable) -> Any:
        from aiohttp import web

        self._pending.pop(request.protocol, None)
        # /healthz answers probes (systemd, Ansible) without the token: its body holds no image, label or URI
        if request.path != "/healthz" and not self._authorized(request):
            return web.Response(status=401, text="edgecnn: this dashboard needs its token: add ?token=TOKEN\n",
                                headers={"WWW-Authenticate": 'Bearer realm="edgecnn"'})
        return await handler(request)

    def _hold(self, kind: str) -> bool:
        if self._viewers[kind] >= self.max_viewers:
            return False
        self._viewers[kind] += 1
        return True

    def _busy(self, kind: str) -> Any:
        from aiohttp import web

        return web.Response(status=503, text=f"edgecnn: {self._viewers[kind]} {kind} viewers already "
                                             f"(--max-viewers {self.max_viewers})\n", headers={"Retry-After": "5"})

    async def _index(self, request: Any) -> Any:
        from aiohttp import web

        return web.Response(body=self._page, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})

    async def _stream(self, request: Any) -> Any:
        from aiohttp import web

        if not self._hold("stream"):
            return self._busy("stream")
        self._want += 1
        try:
            resp = web.StreamResponse(headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame",
                                               "Cache-Control": "no-cache, no-store"})
            await resp.prepare(request)
            seq = -1
            while not self._closed:
                seq, jpeg = await self._next_jpeg(seq, timeout=30)
                if not jpeg:
                    if self._closed:
                        break
                    continue  # no new frame for 30 s (paused source): keep the viewer
                # self._part is this very frame: nothing awaited since _next_jpeg returned
                sent = self._loop.time()
                await asyncio.wait_for(resp.write(self._part), WRITE_TIMEOUT_S)
                # the send budget: many viewers share STREAM_SENDS_PER_S frames a second
                gap = self._viewers["stream"] / STREAM_SENDS_PER_S - (self._loop.time() - sent)
                if gap > self.stream_interval / 2:
                    await asyncio.sleep(gap)
        except (ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            self._want -= 1
            self._viewers["stream"] -= 1
            self._left()
        return resp

    def _left(self) -> None:
        """A viewer left: when it was the last one, hand freed memory back to the OS a moment later."""
        if self._viewers["stream"] == 0 and self._viewers["events"] == 0 and not self._closed:
            if self._trim is not None:
                self._trim.cancel()
            self._trim = self._loop.call_later(TRIM_AFTER_S, release_free_memory)

    async def _snapshot(self, request: Any) -> Any:
        from aiohttp import web

        # results flowing: wait for the next frame (up to 5 s); none for --stale-after s (the camera is
        # gone): answer at once with the last frame there is, not after a 5 s hang
        flowing = self.health is None or self.health.state()[0] == 200
        self._want += 1  # the next frame gets drawn and encoded
        try:
            _, jpeg = await self._next_jpeg(self._jpeg[0], timeout=5 if flowing else 0)
        finally:
            self._want -= 1
        jpeg = jpeg or self._jpeg[1]  # nothing newer (the source paused): the last one there is
        if not jpeg:
            return web.Response(status=503, text="no frame yet\n", headers={"Retry-After": "1"})
        return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-cache"})

    def stats_body(self) -> bytes:
        """/api/stats as JSON bytes, cached for STATS_CACHE_S."""
        now = time.monotonic()
        if now - self._stats_cache[0] < STATS_CACHE_S:
            return self._stats_cache[1]
        snap = self.stats.snapshot()
        counters = self.counters()
        body = {"fps": snap["fps"], "fps_is": f"frames classified in the last {FPS_WINDOW_S:g} s / that time",
                "frames": snap["frames"], "dropped": counters.get("dropped", 0),
                "reconnects": counters.get("reconnects", 0), "uptime_s": snap["uptime_s"],
                "age_ms": counters.get("age_ms"), "latency_mode": counters.get("latency_mode"),
                "sources": counters.get("sources", []),
                "window_frames": WINDOW, "stages": snap["stages"], "latest": snap["latest"],
                "running": self.info,
                "viewers": {**self._viewers, "max": self.max_viewers}, "jpeg_encoded": self.encoded}
        data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        self._stats_cache = (now, data)
        return data

    async def _api_stats(self, request: Any) -> Any:
        from aiohttp import web

        return web.Response(body=self.stats_body(), content_type="application/json",
                            headers={"Cache-Control": "no-cache"})

    async def _healthz(self, request: Any) -> Any:
        from aiohttp import web

        if self.health is None:
            return web.json_response({"error": "no health monitor in this run"}, status=404)
        code, body = self.health.state()
        return web.json_response(body, status=code, headers={"Cache-Control": "no-cache"})

    async def _api_latest(self, request: Any) -> Any:
        from aiohttp import web

        _, view = self.stats.latest_frame()
        if view is None:
            return web.json_response({"error": "no frame classified yet"}, status=503)
        return web.json_response(view, headers={"Cache-Control": "no-cache"})

    async def _api_events(self, request: Any) -> Any:
        from aiohttp import web

        if not self._hold("events"):
            return self._busy("events")
        try:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
            await resp.prepare(request)
            await resp.write(b"retry: 2000\n\n")
            sent, last_write = -1, time.monotonic()
            while not self._closed:
                n, view = self.stats.latest_frame(unless=sent)
                if view is not None:
                    msg = f"id: {n}\nevent: frame\ndata: {json.dumps(view, separators=(',', ':'))}\n\n"
                    sent = n
                elif time.monotonic() - last_write > 15:
                    msg = ": idle\n\n"  # keeps proxies and phones from dropping a quiet stream
                else:
                    msg = ""
                if msg:
                    await asyncio.wait_for(resp.write(msg.encode()), WRITE_TIMEOUT_S)
                    last_write = time.monotonic()
                await asyncio.sleep(1 / EVENTS_PER_S)
        except (ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            self._viewers["events"] -= 1
            self._left()
        return resp
