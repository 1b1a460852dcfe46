"""Issue 26: `edgecnn run --headless` FPS on a 1280x720 video with MobileNetV2 128 int8, before vs after.

"Before" is the edgecnn package of an earlier commit (default: the one before the fast frame path),
unpacked with `git archive` into a temporary folder; "after" is this checkout. Runs alternate
before/after/before/... in this one script so machine load hits both alike; each side has its own
tune cache, warmed by one untimed run (FPS counts from the first frame anyway). Reported: FPS of each
run, the median per side, their ratio, and each run's stage p50s (from its own --report).

Also measured, to show what bounds FPS on this machine: decoding alone (the same video through
cv2.VideoCapture, ms a frame) and the chosen artifact's bare inference call (ms), each in a loop of its
own; with every stage on some core, FPS cannot pass cores x 1000 / (decode + bare inference) whatever
the rest costs ("ceiling").

    .venv/bin/python benchmarks/run_fps_frame_path.py [--rounds 3] [--threads 1] [--before REV]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from frame_path import build  # noqa: E402
from pipeline_fps import CACHE, hd_video  # noqa: E402

BAR = 2.0
STAGES = ("capture", "preprocess", "inference", "postprocess", "render")


def one_run(tree: Path, cache: Path, bundle: Path, video: Path, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), EDGECNN_CACHE=str(cache), OMP_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "r.json"
        r = subprocess.run([sys.executable, "-m", "edgecnn", "run", str(bundle), "--source", str(video), "--headless",
                            "--precision", "int8", "--threads", str(threads), "--report", str(report)],
                           capture_output=True, env=env, check=False)
        if r.returncode != 0:
            raise SystemExit(f"run failed: {r.stderr.decode()[-1500:]}")
        return json.loads(report.read_text())


def floors(bundle: Path, video: Path, threads: int, chosen: str) -> dict:
    """Decoding alone (ms a frame over the whole video) and the chosen artifact's bare call (p50 ms)."""
    import time

    import cv2

    from edgecnn.bundle import Bundle
    from edgecnn.runtime import tune as tune_mod
    from edgecnn.runtime.backends import open_backend

    cap, n = cv2.VideoCapture(str(video)), 0
    t0 = time.perf_counter()
    while cap.read()[0]:
        n += 1
    decode_ms = 1e3 * (time.perf_counter() - t0) / max(n, 1)
    b = Bundle.load(bundle)
    backend, precision = chosen.split()
    cand = next(c for c in tune_mod.plan(b, threads=threads)[0]
                if c.selection.backend == backend and c.selection.precision == precision)
    engine = open_backend(cand.selection.artifact, backend, threads, **cand.selection.options)
    x = engine.prepare(tune_mod.sample_inputs(b, 1))
    ts = []
    for _ in range(300):
        t1 = time.perf_counter_ns()
        engine.run_raw(x)
        ts.append((time.perf_counter_ns() - t1) / 1e6)
    engine.close()
    return {"decode_ms": decode_ms, "bare_ms": float(np.median(ts[50:])), "frames_decoded": n}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--before", default="0d6a6d3^", help="git revision of the 'before' code")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    bundle = build(128)
    video = hd_video(CACHE / "vtest-1280x720.mp4")
    work = Path(tempfile.mkdtemp(prefix="edgecnn-fps-"))
    before = work / "before"
    before.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", args.before, "edgecnn"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
    trees = {"before": before, "after": REPO}
    caches = {k: work / f"cache-{k}" for k in trees}
    for k in trees:  # warm: the auto choice measured and cached, untimed
        one_run(trees[k], caches[k], bundle, video, args.threads)
    rows = []
    for _ in range(args.rounds):
        for k in trees:
            s = one_run(trees[k], caches[k], bundle, video, args.threads)
            row = {"side": k, "fps": s["fps"], "frames": s["frames"], "backend": f"{s['backend']} {s['precision']}",
                   "p50": {st: s["stages"][st]["p50"] for st in STAGES}, "load": os.getloadavg()[0]}
            rows.append(row)
            print(f"{k:<7} {row['fps']:7.1f} FPS  {row['backend']}  "
                  + " ".join(f"{st[:4]} {row['p50'][st]:.2f}" for st in STAGES) + f"  load {row['load']:.1f}",
                  flush=True)
    med = {k: float(np.median([r["fps"] for r in rows if r["side"] == k])) for k in trees}
    ratio = med["after"] / med["before"]
    floor = floors(bundle, video, args.threads, rows[-1]["backend"])
    cores = os.cpu_count() or 1
    ceiling = cores * 1000 / (floor["decode_ms"] + floor["bare_ms"])
    print(f"decode alone {floor['decode_ms']:.2f} ms a frame, {rows[-1]['backend']} bare call {floor['bare_ms']:.2f} ms: "
          f"{cores} cores cannot pass {ceiling:.0f} FPS ({ceiling / med['before']:.2f}x 'before')")
    print(f"median FPS before {med['before']:.1f}, after {med['after']:.1f}: {ratio:.2f}x (bar >= {BAR}) "
          f"{'PASS' if ratio >= BAR else 'FAIL'}; shared machine: runs alternate, load shown per run")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "median_fps": med, "ratio": ratio, **floor,
                                               "ceiling_fps": ceiling}, indent=2) + "\n")
    return 0 if ratio >= BAR else 1


if __name__ == "__main__":
    sys.exit(main())
