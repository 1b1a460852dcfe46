"""Unattended live sources (issue 27): health, systemd notify, stop while a stream hangs, sources that
come late or come back, fresh results. A real-time MJPEG-over-HTTP camera (tests/camera_sim.py,
vtest.avi at 25 FPS) on 127.0.0.1; `edgecnn run` in a subprocess; every wait is bounded.
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

import pytest
from camera_sim import CameraSim, encode_video, free_port

from edgecnn.runtime.health import Health, HealthServer, SystemdNotifier

REPO = Path(__file__).resolve().parents[1]
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    return encode_video(limit=50, scale=0.5)  # 384x288: cheap to decode on a shared 2-core machine


def _env(**extra: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), **extra)
    for k in ("EDGECNN_DEBUG", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        if k not in extra:
            env.pop(k, None)
    return env


def _get(url: str, timeout: float = 2) -> tuple[int, dict]:
    """(status, JSON body; {} when the body is not JSON)."""
    try:
        with NO_PROXY.open(url, timeout=timeout) as resp:
            code, data = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        code, data = e.code, e.read()
    try:
        return code, json.loads(data)
    except ValueError:
        return code, {}


def _run_args(bundle: Path, source: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "edgecnn", "run", str(bundle), "--source", source, "--headless",
            "--backend", "onnxruntime", "--precision", "fp32", "--threads", "1", *extra]


class _NotifySocket:
    """A real NOTIFY_SOCKET: an AF_UNIX datagram socket; every message with its arrival time."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._recv, daemon=True)
        self._thread.start()

    def _recv(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def times(self, prefix: str) -> list[float]:
        return [t for t, m in list(self.messages) if m.startswith(prefix)]

    def wait_for(self, prefix: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := self.times(prefix):
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no {prefix} within {timeout} s; got {self.messages}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


# -- health -----------------------------------------------------------------------------------------


def test_health_states_and_healthz_on_both_servers():
    """starting (503) -> ok (200) while results come -> stale (503) after stale_after; the same body on
    --health's own server and on the dashboard, where /healthz needs no token."""
    pytest.importorskip("aiohttp")
    from edgecnn.runtime.server import DashboardSink

    health = Health(0.3, sources=lambda: [{"source": "cam", "state": "live"}], notifier=SystemdNotifier())
    own = HealthServer("127.0.0.1:0", health)
    dash = DashboardSink("127.0.0.1:0", token="secret", health=health)
    try:
        for url in (own.address, dash.address + "healthz"):
            code, body = _get(url)
            assert code == 503 and body["status"] == "starting" and body["results"] == 0
        for _ in range(5):
            health.result(42.0)
            time.sleep(0.02)
        for url in (own.address, dash.address + "healthz"):
            code, body = _get(url)
            assert code == 200 and body["status"] == "ok" and body["results"] == 5, body
            assert body["age_ms_p50"] == 42.0 and body["fps"] > 10 and body["sources"][0]["state"] == "live"
        assert _get(dash.address + "api/stats")[0] == 401  # the rest of the dashboard keeps its token
        assert _get(own.address.replace("/healthz", "/other"))[0] == 404
        time.sleep(0.35)
        code, body = _get(own.address)
        assert code == 503 and body["status"] == "stale" and body["last_result_s"] >= 0.3
    finally:
        own.close()
        dash.close()
        health.close()


def test_healthz_and_systemd_notify_follow_the_camera(digits_bundle, jpegs, tmp_path):
    """READY=1 after the first result and WATCHDOG=1 pings on a real NOTIFY_SOCKET while frames flow;
    /healthz 200 live, 503 within stale_after + 1 s of the camera going away, and no watchdog ping while
    it is gone; SIGTERM then ends the run with STOPPING=1."""
    stale_after = 1.0
    notify = _NotifySocket(tmp_path / "notify.sock")
    port = free_port()
    with CameraSim(jpegs, fps=25) as cam:
        proc = subprocess.Popen(
            _run_args(digits_bundle, cam.url, "--health", f"127.0.0.1:{port}", "--stale-after", str(stale_after),
                      "--reconnect-timeout", "30"),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env=_env(NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="400000"))
        try:
            notify.wait_for("READY=1", 30)
            notify.wait_for("WATCHDOG=1", 5)
            time.sleep(0.5)
            code, body = _get(f"http://127.0.0.1:{port}/healthz")
            assert code == 200 and body["status"] == "ok" and body["fps"] > 5, body
            assert body["sources"][0]["state"] == "live"
            time.sleep(0.5)
            pings_live = len(notify.times("WATCHDOG=1"))
            assert pings_live >= 3  # every 0.2 s (half of WATCHDOG_USEC) while results flow

            cam.stop()
            gone = time.monotonic()
            while (code := _get(f"http://127.0.0.1:{port}/healthz")[0]) == 200 and time.monotonic() - gone < 5:
                time.sleep(0.05)
            unhealthy_after = time.monotonic() - gone
            assert code == 503 and unhealthy_after <= stale_after + 1, unhealthy_after
            time.sleep(1.0)
            late = [t - gone for t in notify.times("WATCHDOG=1") if t > gone + 0.5]
            assert not late, f"watchdog pings while the camera was gone: {late}"
            assert any("FPS" in m for _, m in notify.messages if m.startswith("STATUS="))
            assert any("no result for" in m for _, m in notify.messages if m.startswith("STATUS="))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                _, err = proc.communicate(timeout=10)
            finally:
                if proc.poll() is None:
                    proc.kill()
                notify.close()
    assert proc.returncode == 0, err
    assert notify.times("STOPPING=1")
    assert "Traceback" not in err and "frames in" in err
