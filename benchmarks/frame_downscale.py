"""Issue 26, follow-up: which large-frame downscale for the fast frame path (edgecnn/runtime/frame.py)?

Candidates for 1280x720 BGR frames (vtest.avi resized, as benchmarks/frame_path.py) -> the MobileNetV2-128
bundle's centre crop (area resize to 228x128, then the central 128 columns), against the reference (one
cv2.resize INTER_AREA straight from the frame, edgecnn.preprocess):
  frame.py  : what edgecnn/runtime/frame.py does: only the source columns the crop keeps, the first 2x halving
              from every other row, a second 2x halving, then one bilinear sample per kept pixel;
  kN+area   : INTER_AREA by an integer factor N (OpenCV's integer-scale area path), then INTER_AREA to the target;
  k2+lin    : one 2x halving, then bilinear;
  refwin    : the reference's INTER_AREA on just the source columns the crop keeps;
  crop-first: the same with every row read (the pyramid of only the source columns the crop needs, then
              bilinear (warpAffine) with the same geometry as the full-frame pyramid).
Measured per candidate: p10/p50/p90 of the resize alone (single calls, frames rotating, cv2 threads 1 and 2),
mean |difference| from the reference's 128x128 (grey levels), and top-1 agreement with the reference path
(LiteRT int8, 1 thread) on 120 frames. A last row adds uniform +-1 grey-level noise to the reference's own
resize: how much top-1 agreement this model keeps under differences smaller than any non-exact resize makes.

    .venv/bin/python benchmarks/frame_downscale.py [--bundle runs/benchmarks/mnv2-photos/bundle128] [--json out]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
A, L = cv2.INTER_AREA, cv2.INTER_LINEAR


def timed(fn, frames: list[np.ndarray], runs: int) -> list[float]:
    out = []
    for k in range(runs):
        a = frames[k % len(frames)]
        t0 = time.perf_counter_ns()
        fn(a)
        out.append((time.perf_counter_ns() - t0) / 1e3)
    return [round(float(v), 1) for v in np.percentile(out, [10, 50, 90])]


def main() -> int:
    from benchmarks.frame_path import video_frames

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=str(REPO / "runs/benchmarks/mnv2-photos/bundle128"))
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    os.environ["EDGECNN_CACHE"] = tempfile.mkdtemp(prefix="edgecnn-frame-downscale-")
    from edgecnn.runtime import Classifier

    frames = video_frames(6, 120)
    fast = Classifier(args.bundle, backend="litert", precision="int8", threads=1)
    exact = Classifier(args.bundle, backend="litert", precision="int8", threads=1, preprocessing="exact")
    spec = fast.input_spec
    H, W = int(spec["height"]), int(spec["width"])
    h, w = frames[0].shape[:2]
    s = max(H / h, W / w)
    nh, nw = max(H, round(h * s)), max(W, round(w * s))
    top, left = (nh - H) // 2, (nw - W) // 2
    assert spec["resize"] == "center_crop" and spec["interpolation"] == "area", spec

    def crop(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a[top : top + H, left : left + W])

    def kn(n: int):  # noqa: ANN202 - a closure factory
        return lambda a: crop(cv2.resize(cv2.resize(a, (w // n, h // n), interpolation=A), (nw, nh), interpolation=A))

    x0, x1 = int(np.floor(left * w / nw)), int(np.ceil((left + W) * w / nw))
    path = fast._fast()[0]
    # crop first: the pyramid (4x) of only the source columns the crop needs, then bilinear with the
    # full-frame pyramid's own geometry (warpAffine, dst -> src); differs from frame.py only by warpAffine's
    # 1/32-pixel weights and the border
    k = 4
    sx, sy = w / nw / k, h / nh / k
    m0 = (left + 0.5) * sx - 0.5
    p0, p1 = max(0, int(np.floor(m0))), min(w // k, int(np.ceil((left + W - 0.5) * sx - 0.5)) + 2)
    affine = np.float32([[sx, 0, m0 - p0], [0, sy, (top + 0.5) * sy - 0.5]])

    def crop_first(a: np.ndarray) -> np.ndarray:
        s = a[:, p0 * k : p1 * k]
        for _ in range(2):
            s = cv2.resize(s, (s.shape[1] // 2, s.shape[0] // 2), interpolation=A)
        return cv2.warpAffine(s, affine, (W, H), flags=L | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)

    cands = {
        "reference": lambda a: crop(cv2.resize(a, (nw, nh), interpolation=A)),
        "frame.py": lambda a: path.resize(a).copy(),
        "k2+area": kn(2), "k4+area": kn(4), "k5+area": kn(5),
        "k2+lin": lambda a: crop(cv2.resize(cv2.resize(a, (w // 2, h // 2), interpolation=A), (nw, nh), interpolation=L)),
        "refwin": lambda a: cv2.resize(a[:, x0:x1], (W, H), interpolation=A),
        "crop-first, every row": crop_first,
    }
    ref_top1 = [exact.predict(f).index for f in frames]
    ref_img = [cands["reference"](f).astype(np.int16) for f in frames]
    rows = []
    print(f"{len(frames)} frames {w}x{h} -> {nw}x{nh} crop {W}x{H}; load {os.getloadavg()}", flush=True)
    for name, fn in cands.items():
        outs = [fn(f) for f in frames]
        agree = float(np.mean([fast.predict(o).index == r for o, r in zip(outs, ref_top1)]))
        diff = float(np.mean([np.abs(o.astype(np.int16) - r).mean() for o, r in zip(outs, ref_img)]))
        us = {}
        for t in (1, 2):
            cv2.setNumThreads(t)
            us[f"cv2_threads_{t}"] = [timed(fn, frames[:20], args.runs) for _ in range(3)]  # 3 repeats
        rows.append({"candidate": name, "agreement": agree, "mean_abs_diff": diff, "resize_us_p10_p50_p90": us})
        print(f"{name:20s} agreement {agree:.3f}  mean|diff| {diff:.3f}  resize us (p10,p50,p90) x3: "
              f"t1 {us['cv2_threads_1']}  t2 {us['cv2_threads_2']}", flush=True)
    rng = np.random.default_rng(0)
    noisy = [np.clip(r + rng.integers(-1, 2, r.shape), 0, 255).astype(np.uint8) for r in ref_img]
    agree = float(np.mean([fast.predict(o).index == r for o, r in zip(noisy, ref_top1)]))
    probs = [np.sort(exact.predict(f).probs)[::-1] for f in frames]
    margins = np.array([p[0] - p[1] for p in probs])
    rows.append({"candidate": "reference + uniform noise in [-1, 1]", "agreement": agree,
                 "frames_top2_margin_below_0.05": int((margins < 0.05).sum()), "frames": len(frames)})
    print(f"reference + noise in [-1,1]: agreement {agree:.3f}; frames with top-1 minus top-2 < 0.05: "
          f"{int((margins < 0.05).sum())} of {len(frames)}; load {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    fast.close()
    exact.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
