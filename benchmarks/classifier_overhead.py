"""Issue 26: the Classifier's per-call overhead on LeNet-5 (0.02 ms calls), measured side by side.

For each backend (fp32 and int8 artifacts of export/lenet5-digits, 1 thread): the bare `run_raw` on an
already-prepared input, `Classifier.infer_prepared(x)` (the same input), `Classifier.infer_preprocessed(x)`
(float32 NCHW from `preprocess`: check + prepare + call + finish) and `predict(image)` (a 28x28 digit:
frame path + call + softmax/top-k). Interleaved blocks of 200 calls, 30 rounds; p50 of single calls;
overhead = p50 minus the bare call's p50. Bar (issue 26): infer_preprocessed overhead <= 5 us.

    .venv/bin/python benchmarks/classifier_overhead.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BAR_US = 5.0


def main() -> int:
    os.environ["EDGECNN_CACHE"] = tempfile.mkdtemp(prefix="edgecnn-overhead-")
    import cv2

    from edgecnn.runtime import Classifier

    bundle = REPO / "export" / "lenet5-digits"
    sample = json.loads((bundle / "manifest.json").read_text())["samples"][0]["file"]
    image = cv2.imread(str(bundle / sample), cv2.IMREAD_UNCHANGED)
    ok, out = True, {}
    for backend, precision in (("litert", "fp32"), ("litert", "int8"), ("onnxruntime", "fp32"),
                               ("onnxruntime", "int8"), ("openvino", "fp32")):
        clf = Classifier(bundle, backend=backend, precision=precision, threads=1)
        x_nchw = clf.preprocess(image)[None]
        x = clf.backend.prepare(x_nchw)
        calls = {"bare run_raw": partial(clf.backend.run_raw, x), "infer_prepared": partial(clf.infer_prepared, x),
                 "infer_preprocessed": partial(clf.infer_preprocessed, x_nchw),
                 "predict(image)": partial(clf.predict, image)}
        samples: dict[str, list[int]] = {k: [] for k in calls}
        names = list(calls)
        for r in range(30):
            for k in names[r % 4:] + names[: r % 4]:
                fn, s = calls[k], samples[k]
                for _ in range(20):
                    fn()
                for _ in range(200):
                    t0 = time.perf_counter_ns()
                    fn()
                    s.append(time.perf_counter_ns() - t0)
        p50 = {k: float(np.median(v)) / 1e3 for k, v in samples.items()}
        over = {k: p50[k] - p50["bare run_raw"] for k in names[1:]}
        ok &= over["infer_preprocessed"] <= BAR_US
        out[f"{backend} {precision}"] = {"p50_us": p50, "overhead_us": over}
        print(f"{backend:<12} {precision}: bare {p50['bare run_raw']:6.1f} us; overhead: "
              + ", ".join(f"{k} {v:+.1f} us" for k, v in over.items()), flush=True)
        clf.close()
    print(f"infer_preprocessed overhead <= {BAR_US} us: {'PASS' if ok else 'FAIL'}; load {os.getloadavg()[0]:.1f}")
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(json.dumps(out, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
