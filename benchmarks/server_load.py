"""Does the dashboard server slow the classifier? Side by side in one run (issue 14 item 6).

`edgecnn run --serve` classifies OpenCV's vtest.avi (real 768x576 frames, looped, unpaced, as fast as it
goes) with the bundle's auto artifact, 1 thread, in this process. Phases alternate, each LOAD_S long:

    idle  - the server is up, nobody connected
    load  - a separate client process opens 50 /stream viewers (10 of them slow readers with 4 KB
            receive buffers), 100 idle connections (half send nothing, half a half-sent request) and
            sends malformed requests (binary, a 6 MB header block, an over-long header line,
            a bad request line) every 50 ms; refused viewers retry every second

    idle load idle load idle load idle  (x2 configurations: --max-viewers 4, the default, and 50)

Measured: classification FPS of each phase (frames read by the classifier's source per second, first
second of each phase excluded), the ratio load / mean of the idle phases next to it (bar >= 0.8), the
process's threads during load vs idle (bar: equal), its RSS at the end of each idle phase vs the first
(bar: back within 5 MB), what the clients saw (frames received, 503s, idle connections the server
closed, malformed requests answered 400). All on 127.0.0.1. Bounded: ~2 minutes.

    .venv/bin/python benchmarks/server_load.py [--bundle export/lenet5-digits] [--out runs/benchmarks/server_load.json]

On the shared 2-core development machine absolute FPS are noisy; the interleaved ratios are what counts.
The client process runs at nice 19: on a device the viewers are other machines, so their own CPU cost
(reading 50 MJPEG streams) is not the server's; the server's own threads (JPEG encoding, socket writes,
parsing) run in the measured process at normal priority and count fully.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgecnn.runtime import Classifier  # noqa: E402
from edgecnn.runtime.app import RunOptions, run  # noqa: E402
from edgecnn.runtime.sources import open_source  # noqa: E402
from edgecnn.utils import atomic_write_json  # noqa: E402

VTEST = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"
LOAD_S = 5.0
SETTLE_S = 1.0

CLIENT = r'''
import asyncio, json, socket, sys
port, viewers, idle, seconds, bad = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "1"
stats = {"frames": 0, "bytes": 0, "served_viewers": 0, "refused_503": 0, "idle_closed_by_server": 0,
         "malformed_sent": 0, "malformed_400": 0, "errors": 0}

async def viewer(i):
    slow = i < 10
    while True:
        try:
            sock = socket.socket()
            if slow:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            r, w = await asyncio.open_connection(sock=sock, limit=1 << 20)
            w.write(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await r.readuntil(b"\r\n\r\n")
            if b" 503 " in head.split(b"\r\n")[0]:
                stats["refused_503"] += 1
                w.close()
                await asyncio.sleep(1.0)
                continue
            stats["served_viewers"] += 1
            while True:
                chunk = await r.read(4096 if slow else 1 << 16)
                if not chunk:
                    break
                stats["bytes"] += len(chunk)
                stats["frames"] += chunk.count(b"--frame")
                if slow:
                    await asyncio.sleep(0.2)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            stats["errors"] += 1
            await asyncio.sleep(1.0)

async def idler(i):
    while True:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            if i % 2:
                w.write(b"GET /api/stats HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            if not await r.read(100):
                stats["idle_closed_by_server"] += 1
            w.close()
        except OSError:
            stats["errors"] += 1
        await asyncio.sleep(0.5)

BAD = [b"\x16\x03\x01\x02\x00garbage\r\n\r\n",
       b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: %s\r\n" % (k, b"a" * 1000) for k in range(6000)) + b"\r\n",
       b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 10000 + b"\r\n\r\n",
       b"GET /\x00\x01 NOTHTTP\r\n\r\n"]

async def malformed():
    k = 0
    while True:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(BAD[k % len(BAD)])
            stats["malformed_sent"] += 1
            k += 1
            line = await asyncio.wait_for(r.read(12), 5)
            stats["malformed_400"] += line.endswith(b" 400")
            w.close()
        except (OSError, asyncio.TimeoutError):
            stats["errors"] += 1
        await asyncio.sleep(0.05)

async def main():
    tasks = [asyncio.create_task(viewer(i)) for i in range(viewers)]
    tasks += [asyncio.create_task(idler(i)) for i in range(idle)]
    if bad:
        tasks.append(asyncio.create_task(malformed()))
    await asyncio.sleep(seconds)
    for t in tasks:
        t.cancel()
    print(json.dumps(stats))

asyncio.run(main())
'''


class LoopingVideo:
    """vtest.avi again and again, as a file source (read ahead by the app); counts frames read."""

    threaded = False

    def __init__(self, path: str):
        self.path = path
        self.src = open_source(path)
        self.fps, self.dropped, self.reconnects, self.frame_count = self.src.fps, 0, 0, 0
        self.describe = f"video {path} (looped)"
        self.stamps: list[float] = []
        self.stop = threading.Event()

    def read(self):
        if self.stop.is_set():
            return None
        frame = self.src.read()
        if frame is None:
            self.src.close()
            self.src = open_source(self.path)
            frame = self.src.read()
        self.stamps.append(time.monotonic())
        return frame

    def close(self) -> None:
        self.src.close()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fps_between(stamps: list[float], t0: float, t1: float) -> float:
    n = sum(1 for t in stamps if t0 <= t < t1)
    return n / (t1 - t0)


def one_config(bundle: str, max_viewers: int, viewers: int, idle: int, pairs: int, malformed: bool = True) -> dict:
    clf = Classifier(bundle, threads=1)
    port = free_port()
    source = LoopingVideo(VTEST)
    opts = RunOptions(source=VTEST, serve=f"127.0.0.1:{port}", max_viewers=max_viewers)
    done: dict = {}
    devnull = open(os.devnull, "w")  # noqa: SIM115 (closed below)
    runner = threading.Thread(target=lambda: done.update(summary=run(clf, opts, source, stdout=devnull,
                                                                    stderr=devnull)))
    runner.start()
    time.sleep(3)  # warm-up: first frames, allocations
    phases = []
    threads_idle, threads_load, rss_idle = [], [], []
    for k in range(2 * pairs + 1):
        kind = "load" if k % 2 else "idle"
        client = None
        if kind == "load":
            client = subprocess.Popen([sys.executable, "-c", CLIENT, str(port), str(viewers), str(idle),
                                       str(LOAD_S + SETTLE_S), "1" if malformed else "0"],
                                      stdout=subprocess.PIPE, text=True, preexec_fn=lambda: os.nice(19))
        t0 = time.monotonic()
        time.sleep(SETTLE_S)
        t1 = time.monotonic()
        time.sleep(LOAD_S / 2)
        (threads_load if kind == "load" else threads_idle).append(threading.active_count())
        time.sleep(LOAD_S / 2)
        t2 = time.monotonic()
        phase = {"kind": kind, "fps": fps_between(source.stamps, t1, t2), "seconds": t2 - t0}
        if client is not None:
            out, _ = client.communicate(timeout=60)
            phase["clients"] = json.loads(out.strip().splitlines()[-1])
            time.sleep(1.0)  # the server notices the closed sockets
        else:
            gc.collect()
            rss_idle.append(rss_mb())
            phase["rss_mb"] = rss_idle[-1]
        phases.append(phase)
    source.stop.set()
    runner.join(timeout=30)
    devnull.close()
    clf.close()
    ratios = [phases[k]["fps"] / ((phases[k - 1]["fps"] + phases[k + 1]["fps"]) / 2)
              for k in range(1, len(phases), 2)]
    return {"max_viewers": max_viewers, "viewers": viewers, "idle_connections": idle, "phases": phases,
            "ratios": ratios, "min_ratio": min(ratios), "threads_idle": threads_idle, "threads_load": threads_load,
            "rss_idle_mb": rss_idle, "rss_growth_mb": rss_idle[-1] - rss_idle[0],
            "frames": done.get("summary", {}).get("frames")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default=str(REPO / "export" / "lenet5-digits"))
    ap.add_argument("--viewers", type=int, default=50)
    ap.add_argument("--idle", type=int, default=100)
    ap.add_argument("--pairs", type=int, default=3, help="idle/load pairs per configuration (default 3)")
    ap.add_argument("--max-viewers", default="4,50", help="server --max-viewers values to run (default 4,50)")
    ap.add_argument("--no-malformed", dest="malformed", action="store_false", help="leave out malformed requests")
    ap.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "server_load.json"),
                    help="where the JSON results go (default runs/benchmarks/server_load.json)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    results = {"machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start",
               "configs": [one_config(args.bundle, int(mv), args.viewers, args.idle, args.pairs, args.malformed)
                           for mv in args.max_viewers.split(",")]}
    ok = True
    for c in results["configs"]:
        fps = "  ".join(f"{p['kind']} {p['fps']:.0f}" for p in c["phases"])
        clients = [p["clients"] for p in c["phases"] if "clients" in p]
        print(f"--max-viewers {c['max_viewers']}: FPS {fps}")
        print(f"  load/idle ratios {', '.join(f'{r:.3f}' for r in c['ratios'])} (min {c['min_ratio']:.3f}, bar >= 0.8)")
        print(f"  threads idle {c['threads_idle']} load {c['threads_load']}; RSS at idle ends "
              f"{', '.join(f'{m:.1f}' for m in c['rss_idle_mb'])} MB (growth {c['rss_growth_mb']:+.1f} MB, bar < 5)")
        last = clients[-1]
        print(f"  clients (last load phase): {last['served_viewers']} viewers served, {last['refused_503']} refused "
              f"(503), {last['frames']} frames / {last['bytes'] / 1e6:.1f} MB received, "
              f"{last['idle_closed_by_server']} idle connections closed by the server, "
              f"{last['malformed_400']}/{last['malformed_sent']} malformed requests answered 400")
        ok &= (c["min_ratio"] >= 0.8 and max(c["threads_load"]) <= max(c["threads_idle"])
               and c["rss_growth_mb"] < 5)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, results)
    print(f"results: {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
