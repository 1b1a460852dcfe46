"""Soak test of `edgecnn run --headless`: a million frames, bounded memory, no frame lost.

Runs `edgecnn run BUNDLE --source SRC --loop --headless --max-frames N` as a child process, reads its
JSON lines as they come (every frame index checked, in order) and samples the child's resident set
size (VmRSS in /proc/PID/status) after the first `--warmup` frames, every `--every` frames and at
the last frame. Bars (issue 14): RSS at the end minus RSS after the warm-up < 5 MB, and frames in
(read from the source, the run's report) == frames out (JSON lines) == N.

    .venv/bin/python benchmarks/soak_run.py                    # 1,000,000 frames, LeNet-5 reference bundle
    .venv/bin/python benchmarks/soak_run.py --frames 200000 --json soak.json

The default source is the bundle's own sample images, played in a loop (`--loop`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MB = 1 << 20


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default=str(REPO / "export" / "lenet5-digits"))
    ap.add_argument("--source", default=None, help="default: the bundle's samples/ folder")
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--warmup", type=int, default=10_000, help="RSS baseline after this many frames")
    ap.add_argument("--every", type=int, default=50_000, help="RSS sample interval (frames)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit-mb", type=float, default=5.0)
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    source = args.source or str(Path(args.bundle) / "samples")

    with tempfile.TemporaryDirectory(prefix="edgecnn-soak-") as tmp:
        report = Path(tmp) / "summary.json"
        cmd = [sys.executable, "-m", "edgecnn", "run", args.bundle, "--source", source, "--loop", "--headless",
               "--max-frames", str(args.frames), "--threads", str(args.threads), "--report", str(report)]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONPATH=str(REPO))
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        out, expected, bad_order = 0, None, 0
        trend: list[tuple[int, float, float]] = []  # (frames, seconds, RSS MB)
        rss_warm = rss_end = None
        for line in proc.stdout:
            # {"frame":123,...}: the index without a full JSON parse (a million lines)
            index = int(line[9 : line.index(b",")])
            if expected is not None and index != expected:
                bad_order += 1
            expected = index + 1
            out += 1
            if out == args.warmup or out % args.every == 0 or out == args.frames:
                rss = rss_bytes(proc.pid)
                trend.append((out, time.monotonic() - t0, rss / MB))
                print(f"{out:>9} frames  {time.monotonic() - t0:8.1f} s  RSS {rss / MB:8.2f} MB", flush=True)
                if out == args.warmup:
                    rss_warm = rss
                if out == args.frames:
                    rss_end = rss
        err = proc.stderr.read().decode(errors="replace")
        rc = proc.wait()
        summary = json.loads(report.read_text()) if report.exists() else {}
    result = {
        "command": " ".join(cmd[1:]),
        "rc": rc,
        "frames_requested": args.frames,
        "frames_out": out,
        "frames_in": summary.get("frames_in"),
        "frames_summary": summary.get("frames"),
        "out_of_order": bad_order,
        "rss_after_warmup_mb": rss_warm / MB if rss_warm else None,
        "rss_end_mb": rss_end / MB if rss_end else None,
        "rss_delta_mb": (rss_end - rss_warm) / MB if rss_warm and rss_end else None,
        "fps": summary.get("fps"),
        "seconds": time.monotonic() - t0,
        "trend": trend,
    }
    ok = (rc == 0 and out == args.frames == result["frames_in"] == result["frames_summary"] and bad_order == 0
          and result["rss_delta_mb"] is not None and abs(result["rss_delta_mb"]) < args.limit_mb)
    result["pass"] = ok
    print(err.strip().splitlines()[-8:] and "\n".join(err.strip().splitlines()[-8:]))
    print(f"frames in {result['frames_in']}, out {out}, out of order {bad_order}; RSS after {args.warmup} frames "
          f"{result['rss_after_warmup_mb']:.2f} MB, at the end {result['rss_end_mb']:.2f} MB "
          f"(delta {result['rss_delta_mb']:+.2f} MB, bar < {args.limit_mb:g}): {'PASS' if ok else 'FAIL'}"
          if rss_warm and rss_end else f"run did not complete (rc {rc}): FAIL")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
