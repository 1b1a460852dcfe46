"""Is `edgecnn run` still producing results? `/healthz` and systemd's notify protocol.

`Health` is told of every result (`result()`, from the render loop) and answers from that alone:

    GET /healthz   200 {"status": "ok", ...}       a result within the last `stale_after` seconds
                   503 {"status": "starting"|"stale", ...}   none yet, or none for `stale_after` s

It is served by the `--serve` dashboard and, without a dashboard, by `HealthServer` (`--health
HOST:PORT`, the standard library's threading HTTP server: one small JSON answer, no aiohttp needed).
The body names no source URI (a stream URL may hold a password) and needs no dashboard token.

systemd (`Type=notify`, through the `sdnotify` package, only when `NOTIFY_SOCKET` is set):
`READY=1` after the first result; `WATCHDOG=1` from the result path itself, every half
`WATCHDOG_USEC` at most, so a pipeline that stops producing results (a wedged thread, a camera that
is gone) stops the pings and systemd restarts the service after `WatchdogSec`; `STATUS=` with the
FPS, the result age and the source state, refreshed about once a second; `STOPPING=1` at the end.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from typing import Any, Callable

import numpy as np

from ..errors import EdgeCNNError

log = logging.getLogger("edgecnn.runtime")

DEFAULT_STALE_AFTER_S = 5.0
RATE_WINDOW_S = 5.0  # fps = results in the last 5 s / that time
STATUS_EVERY_S = 1.0  # STATUS= refresh while running


class SystemdNotifier:
    """sd_notify through the `sdnotify` package; inert when the process is not a notify service."""

    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self.watchdog_s: float | None = None
        self._notifier: Any = None
        if not self.enabled:
            return
        try:
            import sdnotify
        except ImportError:
            raise EdgeCNNError("NOTIFY_SOCKET is set (a systemd notify service) but the sdnotify package is "
                               "missing: pip install 'edgecnn[service]'") from None
        self._notifier = sdnotify.SystemdNotifier()
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        # as sd_watchdog_enabled(3): WATCHDOG_PID, when set, must name this process
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6

    def notify(self, message: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(message)


class Health:
    """Freshness of results, thread-safe. `sources()` returns [{"source": name, "state": ...}] for the body."""

    def __init__(self, stale_after: float = DEFAULT_STALE_AFTER_S,
                 sources: Callable[[], list[dict[str, Any]]] | None = None,
                 notifier: SystemdNotifier | None = None):
        if not stale_after > 0:
            raise EdgeCNNError(f"--stale-after must be positive, got {stale_after:g}")
        self.stale_after = float(stale_after)
        self.sources = sources or (lambda: [])
        self.notifier = notifier if notifier is not None else SystemdNotifier()
        self._lock = threading.Lock()
        self._times: deque[float] = deque(maxlen=1024)  # monotonic time of recent results
        self._ages: deque[float] = deque(maxlen=256)  # their age in ms
        self.results = 0
        self.start = time.monotonic()
        self._ready = False
        self._last_ping = -1e9
        self.watchdog_pings = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.notifier.enabled:
            self._thread = threading.Thread(target=self._status_loop, name="edgecnn-notify", daemon=True)
            self._thread.start()

    def result(self, age_ms: float) -> None:
        """One result was delivered, `age_ms` after its frame was captured (render loop)."""
        now = time.monotonic()
        with self._lock:
            self.results += 1
            self._times.append(now)
            self._ages.append(age_ms)
        n = self.notifier
        if not n.enabled:
            return
        if not self._ready:
            self._ready = True
            n.notify("READY=1")
            self._send_status()
        if n.watchdog_s is not None and now - self._last_ping >= n.watchdog_s / 2:
            self._last_ping = now
            self.watchdog_pings += 1
            n.notify("WATCHDOG=1")

    def state(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body) of /healthz."""
        now = time.monotonic()
        with self._lock:
            last = self._times[-1] if self._times else None
            recent = [t for t in self._times if now - t <= RATE_WINDOW_S]
            ages = np.fromiter(self._ages, np.float64, len(self._ages))
            results = self.results
        since = None if last is None else now - last
        if since is None:
            status = "starting"
        else:
            status = "ok" if since < self.stale_after else "stale"
        span = now - recent[0] if len(recent) >= 2 else 0.0
        fps = (len(recent) - 1) / span if span > 0 else 0.0
        body: dict[str, Any] = {
            "status": status,
            "results": results,
            "last_result_s": None if since is None else round(since, 3),
            "stale_after_s": self.stale_after,
            "fps": round(fps, 2),
            "age_ms_p50": round(float(np.percentile(ages, 50)), 2) if ages.size else None,
            "age_ms_p99": round(float(np.percentile(ages, 99)), 2) if ages.size else None,
            "uptime_s": round(now - self.start, 2),
            "sources": self.sources(),
        }
        return (200 if status == "ok" else 503), body

    def _send_status(self) -> None:
        code, body = self.state()
        states = ", ".join(f"{s.get('source', '?')} {s.get('state', '?')}" for s in body["sources"])
        if body["status"] == "ok":
            text = f"{body['fps']:.1f} FPS, result age p50 {body['age_ms_p50']:.0f} ms"
        elif body["status"] == "starting":
            text = "waiting for the first result"
        else:
            text = f"no result for {body['last_result_s']:.0f} s"
        self.notifier.notify(f"STATUS={text}{'; ' + states if states else ''}")

    def _status_loop(self) -> None:
        while not self._stop.wait(STATUS_EVERY_S):
            try:
                self._send_status()
            except Exception as e:  # never die silently in a thread; the run goes on
                log.warning("systemd status update failed: %s", e)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self.notifier.enabled:
            self.notifier.notify("STOPPING=1")


class HealthServer:
    """`--health HOST:PORT`: GET /healthz (and nothing else) on a small threaded HTTP server."""

    def __init__(self, addr: str, health: Health):
        # here, not at import: http.server brings the email parser and socket (~15 ms of every run's start)
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from .server import parse_address

        host, port = parse_address(addr, flag="--health")
        state = health.state

        class Handler(BaseHTTPRequestHandler):
            timeout = 5  # a client that sends no complete request in 5 s is dropped

            def log_message(self, *args: Any) -> None:  # no access log on the terminal
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path.split("?", 1)[0] != "/healthz":
                    code, body = 404, {"error": "not found: GET /healthz"}
                else:
                    code, body = state()
                data = json.dumps(body, separators=(",", ":")).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                self.wfile.write(data)

        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            raise EdgeCNNError(f"--health {addr}: cannot listen there ({e.strerror or e})") from None
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.address = f"http://{host if ':' not in host else f'[{host}]'}:{self.port}/healthz"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="edgecnn-health", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=2)
