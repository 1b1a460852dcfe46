"""Does the dashboard server slow the classifier? Side by side in one run (issue 14 item 6).

`edgecnn run --serve` classifies OpenCV's vtest.avi (real 768x576 frames, looped, unpaced, as fast as it
goes) with the bundle's auto artifact, 1 thread, in this process. Phases alternate (2.5 s each, the first
0.5 s not counted), 12 pairs per configuration:

    idle  - the server is up, nobody connected
    load  - one client process opens 50 /stream viewers (10 of them slow readers with 4 KB
            receive buffers), 100 idle connections (half send nothing, half a half-sent request) and
            sends malformed requests (binary, a 6 MB header block, an over-long header line,
            a bad request line) every 50 ms; refused viewers retry every second

    idle load idle load ... idle  (x2 configurations: --max-viewers 4, the default, and 50)

Measured: classification FPS of each phase (frames read by the classifier's source per second), the
ratio of each load phase to the mean of the idle phases around it (bar: median >= 0.8), the process's
threads during load vs idle (bar: equal), its RSS at the end of each idle phase (bar: the last within
5 MB of the one after the first load cycle, when allocator arenas have filled once), what the clients
saw (frames received, 503s, idle connections the server closed, malformed requests answered 400).
All on 127.0.0.1. Bounded: about 2 minutes.

    .venv/bin/python benchmarks/server_load.py [--bundle export/lenet5-digits] [--out runs/benchmarks/server_load.json]

On the shared 2-core development machine absolute FPS are noisy; the interleaved ratios are what counts.
The classifier's process is pinned to the first half of the CPUs and the client process to the other
half: on a device the viewers are other machines, so their own cost (reading up to 50 MJPEG streams) is
not the server's. The server's own threads (event loop, JPEG encoder) run in the measured process and
count fully; their CPU seconds per second are printed next to the classifier's.
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
CLIENT_CPUS: set[int] = set(os.sched_getaffinity(0))
LOAD_S = 2.0    # measured seconds per phase: short phases, many pairs (the load of a shared machine drifts)
SETTLE_S = 0.5

CLIENT = r'''
import asyncio, json, socket, sys
port, viewers, idle, bad = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
opened = set()  # every writer of the current phase, closed when it ends
phase = {"on": False}  # loops end when a phase does (a cancel alone can be lost in wait_for)
stats = {"frames": 0, "bytes": 0, "served_viewers": 0, "refused_503": 0, "idle_closed_by_server": 0,
         "malformed_sent": 0, "malformed_400": 0, "errors": 0}

async def connect(rcvbuf=None):
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    r, w = await asyncio.open_connection(sock=sock, limit=1 << 20)
    opened.add(w)
    return r, w

async def viewer(i):
    slow = i < 10  # 10 slow readers: 4 KB buffers, 4 KB every 0.2 s
    while phase["on"]:
        try:
            r, w = await connect(4096 if slow else None)
            w.write(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await r.readuntil(b"\r\n\r\n")
            if b" 503 " in head.split(b"\r\n")[0]:
                stats["refused_503"] += 1
                w.close()
                await asyncio.sleep(1.0)
                continue
            stats["served_viewers"] += 1
            while phase["on"]:
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
    while phase["on"]:
        try:
            r, w = await connect()
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
    while phase["on"]:
        try:
            r, w = await connect()
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
    # stdin: "on" opens every connection, "off" closes them all, "quit" prints the stats
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks = []
    while True:
        cmd = (await reader.readline()).strip()
        phase["on"] = False
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=3)
        for w in opened:
            w.close()
        opened.clear()
        tasks = []
        if cmd == b"on":
            phase["on"] = True
            tasks = [asyncio.create_task(viewer(i)) for i in range(viewers)]
            tasks += [asyncio.create_task(idler(i)) for i in range(idle)]
            if bad:
                tasks.append(asyncio.create_task(malformed()))
        elif cmd != b"off":
            break
        print("ok", flush=True)
    print(json.dumps(stats), flush=True)

asyncio.run(main())
'''


class LoopingVideo:
    """vtest.avi again and again, as a file source (read ahead by the app); counts frames read."""

    threaded = False
    live = False
    abandoned = False

    def __init__(self, path: str):
        self.path = path
        self.src = open_source(path)
        self.fps, self.dropped, self.reconnects, self.frame_count = self.src.fps, 0, 0, 0
        self.retry_s, self.truncation = 0.0, None  # the Source attributes the run's summary reads
        self.describe = self.name = f"video {path} (looped)"
        self.frames = 0  # a counter read at phase edges: a list of stamps would grow the RSS being measured
        self.stop = threading.Event()

    def read(self):
        if self.stop.is_set():
            return None
        frame = self.src.read()
        if frame is None:
            self.src.close()
            self.src = open_source(self.path)
            frame = self.src.read()
        self.frames += 1
        return frame

    def status(self) -> dict:
        return {"state": "live"}

    def outage_s(self) -> float:
        return 0.0

    def close(self) -> None:
        self.src.close()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def thread_cpu() -> dict[str, float]:
    """CPU seconds used so far by each named thread of this process (/proc/self/task/TID/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for t in threading.enumerate():
        try:
            fields = Path(f"/proc/self/task/{t.native_id}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, TypeError):
            continue
        out[t.name] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_config(bundle: str, max_viewers: int, viewers: int, idle: int, pairs: int, malformed: bool = True) -> dict:
    clf = Classifier(bundle, threads=1)
    port = free_port()
    source = LoopingVideo(VTEST)
    opts = RunOptions(source=VTEST, serve=f"127.0.0.1:{port}", max_viewers=max_viewers)
    done: dict = {}
    devnull = open(os.devnull, "w")  # noqa: SIM115 (closed below)
    runner = threading.Thread(target=lambda: done.update(summary=run(clf, opts, source, stdout=devnull,
                                                                    stderr=devnull)), name="classifier")
    runner.start()
    # One client process, switched on and off, pinned to other CPUs than this process (on a device the
    # viewers are other machines; a niced client on this shared machine barely ran and applied no load).
    client = subprocess.Popen([sys.executable, "-c", CLIENT, str(port), str(viewers), str(idle),
                               "1" if malformed else "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, preexec_fn=lambda: os.sched_setaffinity(0, CLIENT_CPUS))

    def command(cmd: str) -> None:
        client.stdin.write(cmd + "\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == "ok"

    time.sleep(3)  # warm-up: first frames, allocations
    phases = []
    threads = {"idle": [], "load": []}
    rss_idle = []
    for k in range(2 * pairs + 1):
        kind = "load" if k % 2 else "idle"
        command("on" if kind == "load" else "off")
        t0 = time.monotonic()
        time.sleep(SETTLE_S)  # connections open (or close) and the server settles
        t1, n1 = time.monotonic(), source.frames
        cpu0 = thread_cpu()
        time.sleep(LOAD_S / 2)
        threads[kind].append(threading.active_count())
        time.sleep(LOAD_S / 2)
        t2, n2 = time.monotonic(), source.frames
        cpu1 = thread_cpu()
        phase = {"kind": kind, "fps": (n2 - n1) / (t2 - t1), "seconds": t2 - t0,
                 "thread_cpu_s_per_s": {k: round((cpu1[k] - cpu0[k]) / (t2 - t1), 3) for k in cpu1 if k in cpu0}}
        if kind == "idle":
            gc.collect()
            rss_idle.append(rss_mb())
            phase["rss_mb"] = rss_idle[-1]
        phases.append(phase)
    client.stdin.write("quit\n")
    client.stdin.flush()
    out, _ = client.communicate(timeout=60)
    source.stop.set()
    runner.join(timeout=30)
    devnull.close()
    clf.close()
    ratios = [phases[k]["fps"] / ((phases[k - 1]["fps"] + phases[k + 1]["fps"]) / 2)
              for k in range(1, len(phases), 2)]
    ratios_sorted = sorted(ratios)
    return {"max_viewers": max_viewers, "viewers": viewers, "idle_connections": idle, "phases": phases,
            "ratios": ratios, "median_ratio": ratios_sorted[len(ratios) // 2], "min_ratio": ratios_sorted[0],
            "threads_idle": threads["idle"], "threads_load": threads["load"], "rss_idle_mb": rss_idle,
            # growth after the first load cycle (allocator arenas and caches fill once), to the end
            "rss_growth_mb": rss_idle[-1] - rss_idle[1], "clients": json.loads(out.strip().splitlines()[-1]),
            "frames": done.get("summary", {}).get("frames")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default=str(REPO / "export" / "lenet5-digits"))
    ap.add_argument("--viewers", type=int, default=50)
    ap.add_argument("--idle", type=int, default=100)
    ap.add_argument("--pairs", type=int, default=12, help="idle/load pairs per configuration (default 12)")
    ap.add_argument("--max-viewers", default="4,50", help="server --max-viewers values to run (default 4,50)")
    ap.add_argument("--no-malformed", dest="malformed", action="store_false", help="leave out malformed requests")
    ap.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "server_load.json"),
                    help="where the JSON results go (default runs/benchmarks/server_load.json)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:  # the classifier's process on the first half of the CPUs, the clients on the rest
        global CLIENT_CPUS
        half = len(cpus) // 2
        CLIENT_CPUS = set(cpus[half:])
        os.sched_setaffinity(0, set(cpus[:half]))  # before any thread starts: all of them inherit it
    results = {"machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start",
               "configs": [one_config(args.bundle, int(mv), args.viewers, args.idle, args.pairs, args.malformed)
                           for mv in args.max_viewers.split(",")]}
    ok = True
    for c in results["configs"]:
        fps = " ".join(f"{p['fps']:.0f}" for p in c["phases"])
        cl = c["clients"]
        print(f"--max-viewers {c['max_viewers']}: FPS idle/load/idle/...: {fps}")
        print(f"  load/idle ratios: median {c['median_ratio']:.3f}, min {c['min_ratio']:.3f} over "
              f"{len(c['ratios'])} pairs (bar: median >= 0.8)")
        print(f"  threads idle {sorted(set(c['threads_idle']))} load {sorted(set(c['threads_load']))}; RSS at idle "
              f"ends {c['rss_idle_mb'][0]:.1f} -> {c['rss_idle_mb'][1]:.1f} (first load) -> "
              f"{c['rss_idle_mb'][-1]:.1f} MB (growth after the first cycle {c['rss_growth_mb']:+.1f} MB, bar < 5)")
        print(f"  clients (all load phases): {cl['served_viewers']} viewer connections served, {cl['refused_503']} "
              f"refused (503), {cl['frames']} frames / {cl['bytes'] / 1e6:.1f} MB received, "
              f"{cl['idle_closed_by_server']} idle connections closed by the server, "
              f"{cl['malformed_400']}/{cl['malformed_sent']} malformed requests answered 400")
        for kind in ("idle", "load"):
            per = [p["thread_cpu_s_per_s"] for p in c["phases"] if p["kind"] == kind]
            names = sorted({k for d in per for k in d})
            shown = ", ".join(f"{k} {sum(d.get(k, 0) for d in per) / len(per):.2f}" for k in names)
            print(f"  CPU s/s by thread, {kind}: {shown}")
        ok &= (c["median_ratio"] >= 0.8 and max(c["threads_load"]) <= max(c["threads_idle"])
               and c["rss_growth_mb"] < 5)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, results)
    print(f"results: {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
