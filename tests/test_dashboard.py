"""The live dashboard (`edgecnn run --serve`, edgecnn/runtime/server.py): the page in a real headless
Chromium while a real video plays, the JSON API, and the server's hardening bounds.

Everything listens on 127.0.0.1 only; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from edgecnn.errors import EdgeCNNError
from edgecnn.runtime import server as server_mod
from edgecnn.runtime.server import DashboardSink, is_loopback

REPO = Path(__file__).resolve().parents[1]
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, headers: dict | None = None, timeout: float = 5) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with NO_PROXY.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _record(i: int, label: str = "7") -> dict:
    return {"frame": i, "t": i / 30, "top": [{"label": label, "prob": 0.9}, {"label": "1", "prob": 0.05}],
            "ms": {"capture": 0.1, "preprocess": 0.5 + i % 3, "inference": 2.0 + i % 5, "postprocess": 0.1},
            "fps": 30.0}


def _raw(port: int, data: bytes, read: bool = True, timeout: float = 5) -> bytes:
    """Send raw bytes; return what the server answers before it closes (or the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:  # the server closed on us mid-send (header too large): that is an answer too
            pass
        out = b""
        if read:
            try:
                while chunk := s.recv(65536):
                    out += chunk
            except OSError:
                pass
        return out


@pytest.fixture(scope="module")
def digit_video_long(tmp_path_factory) -> Path:
    """A real video of held-out digits (a new digit every 4 frames, 8 FPS: 50 s with --realtime)."""
    from edgecnn.data import load_dataset
    from edgecnn.data.video import write_digit_video

    path = tmp_path_factory.mktemp("dash-video") / "digits.mp4"
    write_digit_video(load_dataset("digits"), path, count=100, frames_per_image=4, fps=8, seed=3)
    return path


# -- the page in a real browser, while a video plays ----------------------------------------------


def test_dashboard_page_in_headless_chromium_updates_live(digits_bundle, digit_video_long, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    assert Path(CHROMEDRIVER).exists(), "chromium-driver is not installed (scripts/setup.sh installs it)"
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        # -X faulthandler: a shutdown that hangs is dumped (SIGABRT below), not just killed
        [sys.executable, "-X", "faulthandler", "-m", "edgecnn", "run", str(digits_bundle), "--source", str(digit_video_long),
         "--realtime", "--threads", "1", "--serve", f"127.0.0.1:{port}", "--serve-token", "t0ken"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # even in a background suite
    base, tok = f"http://127.0.0.1:{port}/", "?token=t0ken"  # the page passes the token on to stream + API
    driver = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if _get(base + "api/latest" + tok, timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        assert proc.poll() is None and _get(base + "api/latest" + tok)[0] == 200, "the run did not start serving"
        assert _get(base + "api/latest")[0] == 401

        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-proxy-server", "--disable-dev-shm-usage", "--window-size=1280,900",
                     f"--user-data-dir={tmp_path / 'chromium'}"):
            opts.add_argument(flag)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        driver.set_page_load_timeout(30)
        driver.get(base + tok)
        wait = WebDriverWait(driver, 30, poll_frequency=0.2)

        def text(id_: str) -> str:
            return driver.find_element(By.ID, id_).text.strip()

        first = wait.until(lambda d: text("top") or None)
        assert "%" in first
        frames0 = int(wait.until(lambda d: text("frames") if text("frames") not in ("", "0") else None))
        # The predictions text changes (new digits, new frame numbers) and the stats move on.
        wait.until(lambda d: text("top") != first)
        wait.until(lambda d: int(text("frames") or 0) > frames0)
        assert float(text("fps")) > 0
        stages = text("stages")
        assert "inference" in stages and "preprocess" in stages
        running = text("running")
        assert "onnxruntime" in running or "litert" in running
        assert digits_bundle.name in text("model")
        # result age p50 / p99 and the per-source table (state, FPS, age, drops)
        p50, p99 = (float(v) for v in text("age").split("/"))
        assert 0 < p50 <= p99
        sources = text("sources")
        assert digit_video_long.name in sources and "live" in sources
        # The MJPEG stream is being shown: the <img> has decoded a frame.
        wait.until(lambda d: d.execute_script("var i = document.getElementById('stream');"
                                               "return i.complete && i.naturalWidth > 0;"))
        # The chart has been drawn (non-blank pixels on the canvas).
        wait.until(lambda d: d.execute_script(
            "var c = document.getElementById('chart'), g = c.getContext('2d');"
            "var px = g.getImageData(0, 0, c.width, c.height).data, n = 0;"
            "for (var i = 3; i < px.length; i += 4) if (px[i]) n++; return n > 200;"))
        docs_shot = os.environ.get("EDGECNN_DASHBOARD_SCREENSHOT")  # for docs/img/dashboard.png
        time.sleep(15 if docs_shot else 1)  # chart history for the screenshot
        shot = Path(docs_shot or tmp_path / "dashboard.png")
        shot.parent.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        # The JSON API while the video plays: fps, stage percentiles, the latest top-k.
        status, body = _get(base + "api/stats" + tok)
        stats = json.loads(body)
        assert status == 200 and stats["fps"] > 0 and stats["frames"] > frames0
        for stage in ("preprocess", "inference", "postprocess", "total"):
            s = stats["stages"][stage]
            assert 0 <= s["p50"] <= s["p90"] <= s["p99"] and s["n"] >= 1
        assert stats["latest"]["top"] and 0 <= stats["latest"]["top"][0]["prob"] <= 1
        assert stats["running"]["artifact"].startswith("model") and stats["viewers"]["stream"] == 1
        latest = json.loads(_get(base + "api/latest" + tok)[1])
        assert latest["frame"] >= stats["latest"]["frame"] and len(latest["top"]) == 5
    finally:
        if driver is not None:
            driver.quit()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
                _, dump = proc.communicate()
                pytest.fail(f"no exit 20 s after Ctrl-C; thread stacks:\n{dump[-6000:]}")
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr and not proc.stderr.closed else ""


# -- the server's bounds, in-process ---------------------------------------------------------------


@pytest.fixture()
def dash(monkeypatch):
    monkeypatch.setattr(server_mod, "REQUEST_TIMEOUT_S", 1.0)
    sink = DashboardSink("127.0.0.1:0", info={"name": "test-model", "backend": "onnxruntime"}, max_viewers=2)
    yield sink
    sink.close()


def test_stats_are_bounded_and_api_answers(dash):
    assert _get(dash.address + "api/latest")[0] == 503  # nothing classified yet
    for i in range(3 * server_mod.WINDOW):
        assert dash.write(None, _record(i)) is True
    stats = json.loads(_get(dash.address + "api/stats")[1])
    assert stats["frames"] == 3 * server_mod.WINDOW
    assert {s["n"] for s in stats["stages"].values()} == {server_mod.WINDOW}  # fixed memory per stage
    inf = stats["stages"]["inference"]
    assert inf["p50"] == 4.0 and inf["p90"] == 6.0  # 2.0 + i % 5 over the window
    assert stats["running"]["name"] == "test-model" and stats["latest"]["frame"] == 3 * server_mod.WINDOW - 1
    latest = json.loads(_get(dash.address + "api/latest")[1])
    assert latest["top"][0] == {"label": "7", "prob": 0.9} and latest["n"] == 3 * server_mod.WINDOW


def test_token_is_required_everywhere_when_set():
    sink = DashboardSink("127.0.0.1:0", token="s3cret")
    try:
        sink.write(None, _record(0))
        for path in ("", "api/stats", "api/latest"):
            assert _get(sink.address + path)[0] == 401
            assert _get(sink.address + path + "?token=wrong")[0] == 401
            assert _get(sink.address + path + "?token=s3cret")[0] == 200
        for path in ("stream", "frame.jpg", "api/events"):
            assert _get(sink.address + path)[0] == 401
        # The page is one response (CSS and JS inlined) and passes its token on to the stream and the API.
        page = _get(sink.address + "?token=s3cret")[1].decode()
        assert "<style>" in page and "api/events" in page and "encodeURIComponent(token)" in page
        assert 'src="static/' not in page and 'href="static/' not in page
        assert _get(sink.address + "api/stats", {"X-Edgecnn-Token": "s3cret"})[0] == 200
        assert _get(sink.address + "api/stats", {"Authorization": "Bearer s3cret"})[0] == 200
    finally:
        sink.close()


def test_viewer_cap_slow_viewer_and_latest_frame_semantics(dash):
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)  # ~1 MB JPEGs at q80: slow
    assert not dash.wants_image  # nobody watches: no overlay, no JPEG
    dash.write(image, _record(0))
    assert dash._image is None
    # Two viewers that never read a byte (their socket buffers fill up), then a third is refused.
    stuck = []
    for _ in range(2):
        s = socket.create_connection(("127.0.0.1", dash.port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        stuck.append(s)
    deadline = time.monotonic() + 10
    while dash._viewers["stream"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dash.wants_image and dash._viewers["stream"] == 2
    status, body = _get(dash.address + "stream")
    assert status == 503 and b"--max-viewers 2" in body
    # The classifier never blocks on them: 300 frames in well under a second each.
    t0 = time.perf_counter()
    worst = 0.0
    for i in range(1, 301):
        t = time.perf_counter()
        dash.write(image, _record(i))
        worst = max(worst, time.perf_counter() - t)
        time.sleep(0.002)  # ~400 frames a second
    assert time.perf_counter() - t0 < 5 and worst < 0.5, worst
    # Latest-frame semantics: frames were skipped instead of queued.
    time.sleep(0.5)
    # Frames are taken for drawing/encoding at most stream_fps (25) a second: 300 writes in about
    # 1 s gave far fewer JPEGs, the newest frame at the time each time.
    assert 2 <= dash.encoded < 100 and dash._jpeg[0] > 1 and dash._jpeg[1][:2] == b"\xff\xd8"
    threads = threading.active_count()
    for s in stuck:
        s.close()
    deadline = time.monotonic() + 10
    while dash._viewers["stream"] and time.monotonic() < deadline:
        dash.write(image, _record(0))  # a write wakes the stuck writers, which then see the closed socket
        time.sleep(0.1)
    assert dash._viewers["stream"] == 0 and not dash.wants_image
    assert threading.active_count() <= threads


def test_half_sent_idle_and_oversized_requests_are_cut_off(dash):
    threads = threading.active_count()
    # 40 half-sent requests: all closed by the server within REQUEST_TIMEOUT_S (1 s here), no new threads.
    socks = []
    for _ in range(40):
        s = socket.create_connection(("127.0.0.1", dash.port), timeout=5)
        s.sendall(b"GET /api/stats HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        socks.append(s)
    assert threading.active_count() == threads
    t0 = time.monotonic()
    for s in socks:
        assert s.recv(100) == b""  # EOF: the server closed it
        s.close()
    assert time.monotonic() - t0 < 5
    # A 6 MB header block and an over-long header line are refused, not buffered.
    big = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"a" * 1000) for i in range(6000))
    assert _raw(dash.port, big + b"\r\n")[:12] in (b"HTTP/1.0 400", b"HTTP/1.1 400", b"")
    long_line = b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 10000 + b"\r\n\r\n"
    assert _raw(dash.port, long_line)[:12] in (b"HTTP/1.0 400", b"HTTP/1.1 400")
    assert _raw(dash.port, b"\x16\x03\x01garbage\r\n\r\n")[:12] in (b"HTTP/1.0 400", b"HTTP/1.1 400")
    assert _get(dash.address + "nope")[0] == 404
    assert _get(dash.address + "api/stats")[0] == 200  # still serving


def test_events_are_throttled_one_message_per_frame(dash):
    got: list[dict] = []

    def read() -> None:
        with NO_PROXY.open(dash.address + "api/events", timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            t_end = time.monotonic() + 2.0
            while time.monotonic() < t_end:
                line = resp.readline()
                if line.startswith(b"data: "):
                    got.append(json.loads(line[6:]))

    reader = threading.Thread(target=read)
    reader.start()
    t_end = time.monotonic() + 2.2
    i = 0
    while time.monotonic() < t_end:  # ~1000 frames a second
        dash.write(None, _record(i, label=str(i % 10)))
        i += 1
        time.sleep(0.001)
    reader.join(timeout=10)
    assert i > 300
    assert 5 <= len(got) <= 2.5 * server_mod.EVENTS_PER_S + 2, len(got)
    frames = [g["frame"] for g in got]
    assert frames == sorted(set(frames))  # each message a newer frame, never a repeat


def test_bad_addresses_and_options_are_one_line_errors():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
    with pytest.raises(EdgeCNNError, match="expected HOST:PORT"):
        DashboardSink("127.0.0.1:http")
    with pytest.raises(EdgeCNNError, match="--max-viewers"):
        DashboardSink("127.0.0.1:0", max_viewers=0)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        with pytest.raises(EdgeCNNError, match="cannot listen"):
            DashboardSink(f"127.0.0.1:{busy.getsockname()[1]}")
    finally:
        busy.close()


# -- the overlay reads on any frame -----------------------------------------------------------------


def _panel_rows(img: np.ndarray, x: int) -> int:
    """Rows of the darkened top-k panel in column x (a white frame darkened to 3/8)."""
    column = img[:, x].astype(int).mean(axis=1)
    dark = np.flatnonzero(column < 120)
    return int(dark[dark < img.shape[0] // 2].size)


def test_overlay_text_on_a_dark_panel_and_scaled_to_the_frame():
    from edgecnn.runtime.overlay import draw_overlay

    top = [("seven", 0.91), ("one", 0.05), ("two", 0.02)]
    heights = {}
    for h, w in ((480, 640), (1080, 1920)):
        white = np.full((h, w, 3), 235, np.uint8)
        out = draw_overlay(white, top, 29.5, {"inference": 3.2, "render": 1.1})
        assert out.shape == white.shape and (white == 235).all()  # a copy; the frame is untouched
        pad = max(4, int(30 * max(0.45, min(w, h) / 700)) // 4)
        heights[h] = _panel_rows(out, pad + 1)
        panel = out[pad + 1 : pad + heights[h] - 1, pad + 1 : pad + w // 8].astype(int).mean(axis=2)
        # dark behind the labels, with white label text on it (contrast >= 2.5x in brightness)
        assert np.median(panel) < 100 and panel.max() > 250
        # the top-1 bar is green and no text is drawn over it: its row holds only bar colours
        green = (out[..., 1].astype(int) - out[..., 0] > 80) & (out[..., 1] > 150) & (out[..., 2] < 120)
        ys, xs = np.nonzero(green)
        assert ys.size > 0 and ys.max() < heights[h] + pad
        # the status line at the bottom is on a dark panel too, and fits in the frame
        bottom = out[h - 6 : h - 2, 2 : w // 4].astype(int).mean(axis=2)
        assert np.median(bottom) < 100
    assert heights[1080] > 1.8 * heights[480]  # font and rows scale with the frame


def test_serve_without_aiohttp_is_one_line_naming_the_extra():
    """A device install without the serve extra: `--serve` says what to install, exit 2, no traceback."""
    blocker = (
        "import importlib.abc, sys\n"
        "class B(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'aiohttp':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, B())\n"
        "from edgecnn.cli import main\n"
        f"sys.exit(main(['run', {str(REPO / 'export' / 'lenet5-digits')!r}, '--source', "
        "'/usr/share/doc/opencv-doc/examples/data/vtest.avi', '--serve', '127.0.0.1:0', '--max-frames', '5']))\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "edgecnn[serve]" in proc.stderr and "Traceback" not in proc.stderr


def test_many_viewers_share_one_send_budget_and_memory_is_trimmed(monkeypatch):
    """12 fast viewers get STREAM_SENDS_PER_S frames a second between them, not 12 x stream_fps."""
    monkeypatch.setattr(server_mod, "STREAM_SENDS_PER_S", 24.0)
    trims = []
    monkeypatch.setattr(server_mod, "release_free_memory", lambda: trims.append(time.monotonic()))
    sink = DashboardSink(f"127.0.0.1:{_free_port()}", max_viewers=12, stream_fps=25.0)
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)
    counts = [0] * 12
    stop = threading.Event()

    def viewer(k: int) -> None:
        with socket.create_connection(("127.0.0.1", sink.port), timeout=5) as s:
            s.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(0.5)  # the shared budget may leave a viewer without a frame for a while: look at stop
            while not stop.is_set():
                try:
                    chunk = s.recv(1 << 16)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                counts[k] += chunk.count(b"--frame")

    try:
        readers = [threading.Thread(target=viewer, args=(k,), daemon=True) for k in range(12)]
        for t in readers:
            t.start()
        deadline = time.monotonic() + 10
        while sink._viewers["stream"] < 12 and time.monotonic() < deadline:
            sink.write(image, _record(0))
            time.sleep(0.01)
        assert sink._viewers["stream"] == 12
        before = sum(counts)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:  # 100 frames a second from the classifier
            sink.write(image, _record(1))
            time.sleep(0.01)
        sent = sum(counts) - before
        # Budget 24 a second -> about 72 in 3 s; without it 12 viewers x 25 FPS = 900.
        assert 30 <= sent <= 24 * 3 * 1.5 + 12, sent
        assert not trims
        stop.set()
        for t in readers:
            t.join(timeout=5)
        deadline = time.monotonic() + 10
        while (sink._viewers["stream"] or not trims) and time.monotonic() < deadline:
            sink.write(image, _record(2))  # wakes the writers, which then see the closed sockets
            time.sleep(0.1)
        assert sink._viewers["stream"] == 0 and len(trims) == 1  # once, after the last one left
    finally:
        stop.set()
        sink.close()
