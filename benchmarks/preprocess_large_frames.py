"""Preprocessing cost of large camera frames: colour conversion before vs after the resize.

`edgecnn.preprocess.preprocess` shrinks a 3-channel frame on uint8 first and swaps BGR -> RGB on the
small result (the channel swap and the resize commute exactly). This script times it side by side,
interleaved in one process, against the previous order (convert the whole frame, then resize; copied
below as `before`), on real frames (OpenCV's vtest.avi resized to 640x480, 1280x720 and 1920x1080),
and checks that both give bit-identical inputs for several input specs.

    .venv/bin/python benchmarks/preprocess_large_frames.py [--repeats 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgecnn.preprocess import _convert_color, preprocess, resize, to_uint8_image  # noqa: E402

VTEST = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"
SIZES = ((640, 480), (1280, 720), (1920, 1080))
IMAGENET = {"height": 224, "width": 224, "channels": 3, "color": "RGB", "resize": "stretch", "interpolation": "area",
            "scale": 1 / 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
SPECS = {
    "rgb224-stretch-area": IMAGENET,
    "rgb224-center_crop-area": {**IMAGENET, "resize": "center_crop"},
    "rgb160-stretch-linear": {**IMAGENET, "height": 160, "width": 160, "interpolation": "linear"},
    "gray32-stretch-area": {**IMAGENET, "height": 32, "width": 32, "channels": 1, "color": "GRAY",
                            "mean": [0.5], "std": [0.25]},
}


def before(image, spec: dict, color_order: str = "BGR") -> np.ndarray:
    """preprocess() as it was: colour conversion of the whole frame, then the resize."""
    arr, order = to_uint8_image(image, color_order)
    arr = _convert_color(arr, order, spec["color"])
    arr = resize(arr, spec["height"], spec["width"], spec["resize"], spec["interpolation"])
    x = arr.astype(np.float32) * np.float32(spec["scale"])
    x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
    mean = np.asarray(spec["mean"], np.float32)[:, None, None]
    std = np.asarray(spec["std"], np.float32)[:, None, None]
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def frames(n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(VTEST)
    out = []
    while len(out) < n:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    return out[::max(1, len(out) // 20)][:20]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()
    cv2.setNumThreads(1)  # as a busy device: one core for preprocessing
    base = frames(400)
    print(f"{'frame':<11}{'spec':<26}{'before ms':>10}{'after ms':>10}{'speedup':>9}  identical")
    for w, h in SIZES:
        images = [cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in base]
        for name, spec in SPECS.items():
            same = all(np.array_equal(before(im, spec), preprocess(im, spec)) for im in images)
            same = same and all(np.array_equal(before(im[:, :, ::-1].copy(), spec, "RGB"),
                                               preprocess(im[:, :, ::-1].copy(), spec, "RGB")) for im in images[:5])
            tb, ta = [], []
            for i in range(args.repeats):  # interleaved, so load changes hit both alike
                im = images[i % len(images)]
                t0 = time.perf_counter()
                before(im, spec)
                t1 = time.perf_counter()
                preprocess(im, spec)
                t2 = time.perf_counter()
                tb.append(t1 - t0)
                ta.append(t2 - t1)
            b, a = 1e3 * np.median(tb), 1e3 * np.median(ta)
            print(f"{w}x{h:<6}{name:<26}{b:>10.3f}{a:>10.3f}{b / a:>8.2f}x  {same}")
            if not same:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
