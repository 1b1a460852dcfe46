"""A real-time IP camera for tests and benchmarks: MJPEG over HTTP on 127.0.0.1, playing a real video.

Frames of the video (default: OpenCV's vtest.avi) are JPEG-encoded once, then sent as
multipart/x-mixed-replace parts (each with its Content-Length, as IP cameras send them) at `fps`
frames a second, paced on the wall clock; every client gets the live stream from the moment it
connects (no backlog). The send time (time.time(), just before the part is written) of every
frame of every connection is logged: `sent[connection][i]` is the i-th frame that connection got,
so a client's frame index maps to its send time. `pause()` keeps connections open and sends
nothing (a hung camera); `stop()` closes the port and every connection (a camera that is gone);
`start()` opens it again on the same port.

As a script (`python tests/camera_sim.py --port 8554 --log sent.jsonl`) it serves until killed and
writes one JSON line per frame sent: {"conn": n, "i": index, "t": send time}.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Callable

import cv2

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def encode_video(path: Path = VTEST, limit: int = 100, quality: int = 80, scale: float = 1.0) -> list[bytes]:
    """The first `limit` frames of a video as JPEG bytes."""
    cap = cv2.VideoCapture(str(path))
    frames: list[bytes] = []
    try:
        while len(frames) < limit:
            ok, image = cap.read()
            if not ok:
                break
            if scale != 1.0:
                image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            frames.append(buf.tobytes())
    finally:
        cap.release()
    if not frames:
        raise RuntimeError(f"no frame decoded from {path}")
    return frames


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CameraSim:
    def __init__(self, frames: list[bytes], fps: float = 25.0, port: int = 0,
                 on_send: Callable[[int, int, float], None] | None = None):
        self.frames, self.interval = frames, 1.0 / fps
        self.port = port
        self.on_send = on_send
        self.sent: list[list[float]] = []  # per connection: send time of each frame
        self.connections = 0
        self._running = threading.Event()  # cleared by pause()
        self._running.set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._generation = 0  # stop() ends the handlers of earlier generations

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/video.mjpg"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sim = self
        generation = self._generation

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                with sim._lock:
                    conn = len(sim.sent)
                    sim.sent.append([])
                    sim.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                i, due = 0, time.monotonic()
                try:
                    while sim._generation == generation:
                        if not sim._running.is_set():
                            sim._running.wait(0.05)
                            due = time.monotonic()
                            continue
                        delay = due - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                        due += sim.interval
                        jpeg = sim.frames[i % len(sim.frames)]
                        part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%b\r\n" % (
                            len(jpeg), jpeg)
                        t = time.time()
                        sim.sent[conn].append(t)
                        if sim.on_send is not None:
                            sim.on_send(conn, i, t)
                        self.wfile.write(part)
                        self.wfile.flush()
                        i += 1
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass

        return Handler

    def start(self) -> CameraSim:
        self._generation += 1
        server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        """The camera is gone: the port closes, open connections are cut."""
        self._generation += 1
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> CameraSim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self._running.set()
        self.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", default=str(VTEST))
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--frames", type=int, default=200, help="frames of the video to loop over")
    ap.add_argument("--log", default=None, help="JSON lines: one per frame sent")
    args = ap.parse_args()
    out: IO[str] | None = open(args.log, "a", buffering=1) if args.log else None  # noqa: SIM115
    lock = threading.Lock()

    def log(conn: int, i: int, t: float) -> None:
        if out is not None:
            with lock:
                out.write(json.dumps({"conn": conn, "i": i, "t": t}) + "\n")

    sim = CameraSim(encode_video(Path(args.video), args.frames), args.fps, args.port, on_send=log).start()
    print(f"serving {sim.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sim.stop()


if __name__ == "__main__":
    main()
