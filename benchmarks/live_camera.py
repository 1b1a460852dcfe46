"""Fresh results from a real-time camera: result age measured against the camera's own send log.

A camera simulator (tests/camera_sim.py, its own process) serves OpenCV's vtest.avi as MJPEG over HTTP
at a real-time 25 FPS on 127.0.0.1 and logs the send time of every frame. `edgecnn run --headless`
classifies it; each JSON line carries `frame` (the index of the frame on the connection), `captured`
and `age_ms`. The age of a result measured against the simulator = (captured + age_ms / 1000) -
send time of that frame: network, FFmpeg's demuxer, decoding, waiting in the pipeline, preprocess,
inference, postprocess, all included.

Scenarios (each `--seconds` long, then SIGTERM):
  slow model   ResNet-50-224 fp32 ONNX, 1 thread (random weights: timing only; cached under
               runs/benchmarks/; ~66 ms a frame here), fresh mode (the default for a camera) and throughput mode (the
               queues: the behaviour before fresh mode). Bar: fresh age p50 <= 1.5 x inference p50 + 60 ms.
  fast model   LeNet-5 digits bundle: bar 25 FPS (>= 24 over the run) and 0 frames dropped.

    .venv/bin/python benchmarks/live_camera.py [--seconds 20] [--slow-bundle DIR] [--fast-bundle DIR]

Writes runs/benchmarks/live_camera.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from camera_sim import free_port  # noqa: E402

CACHE = REPO / "runs" / "benchmarks"


def fast_bundle() -> Path:
    out = CACHE / "lenet5-digits-bundle"
    if not (out / "manifest.json").is_file():
        run_dir = CACHE / "lenet5-digits-run"
        for args in (["train", "lenet5", "--data", "digits", "--epochs", "8", "--out", str(run_dir), "--seed", "0"],
                     ["export", str(run_dir / "best.pt"), "--formats", "onnx", "--out", str(out)]):
            subprocess.run([sys.executable, "-m", "edgecnn", *args], check=True, cwd=REPO)
    return out


def slow_bundle() -> Path:
    """ResNet-50 at 224 px, fp32 ONNX, random weights: ~66 ms a frame at 1 thread on this machine's CPU
    when it is quiet (ResNet-18 took 21 ms, MobileNetV2-224 5 ms: not slower than the camera)."""
    from runtime_overhead import mobilenet_bundle

    return mobilenet_bundle(CACHE / "resnet50-224-bundle", "resnet50", 224, tflite=False)


def pct(x: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(x), q)) if x else float("nan")


def scenario(name: str, bundle: Path, seconds: float, extra: list[str], fps: float) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        sent_log, report, preds = Path(tmp) / "sent.jsonl", Path(tmp) / "report.json", Path(tmp) / "preds.jsonl"
        cam = subprocess.Popen([sys.executable, str(REPO / "tests" / "camera_sim.py"), "--port", str(port),
                                "--fps", str(fps), "--frames", "300", "--log", str(sent_log)],
                               stdout=subprocess.PIPE, text=True)
        try:
            assert cam.stdout.readline().startswith("serving")
            env = dict(os.environ, PYTHONPATH=str(REPO))
            proc = subprocess.Popen(
                [sys.executable, "-m", "edgecnn", "run", str(bundle), "--source", f"http://127.0.0.1:{port}/video.mjpg",
                 "--headless", "--backend", "onnxruntime", "--precision", "fp32", "--report", str(report),
                 "--predictions", str(preds), *extra],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
            deadline = time.monotonic() + 60
            while not (preds.exists() and preds.stat().st_size) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(seconds)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        finally:
            cam.terminate()
            cam.wait()
        if proc.returncode != 0:
            raise SystemExit(f"{name}: edgecnn run failed ({proc.returncode}):\n{err}")
        summary = json.loads(report.read_text())
        sent: dict[int, dict[int, float]] = {}
        for line in sent_log.read_text().splitlines():
            r = json.loads(line)
            sent.setdefault(r["conn"], {})[r["i"]] = r["t"]
        records = [json.loads(line) for line in preds.read_text().splitlines()]
    conn = sent[min(sent)]  # one connection: frame i of edgecnn is the i-th frame sent on it
    skip = 25  # the first second: connection set-up and warm-up
    ages, reads, bad = [], [], 0
    for r in records[skip:]:
        t_sent = conn.get(r["frame"])
        if t_sent is None:
            continue
        if r["captured"] < t_sent:
            bad += 1  # a frame read before it was sent would mean the index mapping is wrong
        ages.append(1e3 * (r["captured"] + r["age_ms"] / 1e3 - t_sent))
        reads.append(1e3 * (r["captured"] - t_sent))
    inf = summary["stages"]["inference"]
    out = {
        "scenario": name, "args": extra, "camera_fps": fps, "seconds": summary["seconds"],
        "results": summary["frames"], "frames_in": summary["frames_in"], "fps": summary["fps"],
        "dropped": summary["dropped"], "dropped_by": summary["dropped_by"], "latency_mode": summary["latency_mode"],
        "inference_ms": {"p50": inf["p50"], "p99": inf["p99"]},
        "age_ms_vs_send_log": {"p50": pct(ages, 50), "p90": pct(ages, 90), "p99": pct(ages, 99), "n": len(ages)},
        "sent_to_read_ms": {"p50": pct(reads, 50), "p99": pct(reads, 99)},
        "age_ms_edgecnn": {k: summary["age_ms"][k] for k in ("p50", "p99")},
        "read_before_sent": bad,
    }
    print(f"{name:<22} {out['fps']:6.1f} FPS  inference p50 {inf['p50']:6.1f} ms  age vs send log p50 "
          f"{out['age_ms_vs_send_log']['p50']:6.1f} ms p99 {out['age_ms_vs_send_log']['p99']:6.1f} ms  "
          f"(edgecnn's own p50 {summary['age_ms']['p50']:.1f} ms; sent->read p50 {out['sent_to_read_ms']['p50']:.1f} ms)"
          f"  dropped {summary['dropped']}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--slow-bundle", type=Path, default=None)
    ap.add_argument("--fast-bundle", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=CACHE / "live_camera.json")
    args = ap.parse_args()
    slow = args.slow_bundle or slow_bundle()
    fast = args.fast_bundle or fast_bundle()
    rows = [
        scenario("slow, fresh", slow, args.seconds, ["--threads", "1"], 25.0),
        scenario("slow, throughput", slow, args.seconds, ["--threads", "1", "--latency-mode", "throughput"], 25.0),
        scenario("fast, fresh", fast, args.seconds, ["--threads", "1"], 25.0),
    ]
    slow_row, fast_row = rows[0], rows[2]
    limit = 1.5 * slow_row["inference_ms"]["p50"] + 60
    bars = {
        "slow: age p50 <= 1.5 x inference p50 + 60 ms": slow_row["age_ms_vs_send_log"]["p50"] <= limit,
        "fast: 25 FPS (>= 24)": fast_row["fps"] >= 24.0,
        "fast: nothing dropped": fast_row["dropped"] == 0,
        "index mapping sane (no frame read before it was sent)": all(r["read_before_sent"] == 0 for r in rows),
    }
    for k, v in bars.items():
        print(f"  {'PASS' if v else 'FAIL'}  {k}" + (f"  ({slow_row['age_ms_vs_send_log']['p50']:.1f} <= {limit:.1f})"
                                                     if k.startswith("slow") else ""))
    import platform

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "bars": bars, "machine": platform.processor() or platform.machine(),
                                    "cpus": os.cpu_count(), "load_avg": os.getloadavg()}, indent=2))
    print(f"wrote {args.out}")
    return 0 if all(bars.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
