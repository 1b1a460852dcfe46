"""Is `edgecnn profile` honest? Its p50 vs a bare engine loop (onnxruntime `InferenceSession.run`, OpenVINO
`CompiledModel` infer request), side by side.

Both sides time single calls with perf_counter_ns on the same real input, same threads, in interleaved
blocks (profiler block, bare block, profiler block, ...) so machine noise hits both alike. The profiler side
is the real code path: `profile_configuration` (open_backend + warm-up + timed `run_raw`). The bar: the
profiler's p50 within 5% of the bare loop's p50, judged on the median over blocks of the paired per-block
p50 ratio (each profiler block against the bare block run right after it), which cancels slow drifts in
machine load; the pooled p50s of all samples are printed too.

    .venv/bin/python benchmarks/profile_honesty.py [--bundle DIR] [--threads 1] [--blocks 10] [--runs 300]

The OpenVINO reference is compiled as the backend compiles it (static batch 1, LATENCY hint, one stream, f32
inference precision, the same threads) and called as lean as OpenVINO allows: the input tensor set once,
then `InferRequest.infer()` alone per timed call (no input wrapping, no output copy).

Without --bundle it trains LeNet-5 on the embedded digits for 3 epochs and exports it (ONNX fp32 + int8),
cached under runs/benchmarks/. Numbers taken on a shared machine are noisy; the ratio is what counts.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgecnn.bundle import Bundle  # noqa: E402
from edgecnn.profile.environment import environment_record, environment_summary  # noqa: E402
from edgecnn.profile.profiler import bundle_inputs, profile_configuration  # noqa: E402
from edgecnn.profile.report import text_table  # noqa: E402
from edgecnn.profile.stats import format_ms  # noqa: E402

BAR = 0.05
CACHE = REPO / "runs" / "benchmarks"


def default_bundle() -> Path:
    from edgecnn.cli import main

    bundle = CACHE / "lenet5-digits-bundle"
    if (bundle / "manifest.json").is_file():
        return bundle
    ckpt = CACHE / "lenet5-digits" / "best.pt"
    if not ckpt.is_file():
        assert main(["train", "lenet5", "--data", "digits", "--epochs", "3", "--out", str(ckpt.parent),
                     "--seed", "0", "--overwrite"]) == 0
    assert main(["export", str(ckpt), "--formats", "onnx", "--int8", "--calib", "digits", "--out", str(bundle),
                 "--force"]) == 0
    return bundle


def bare_session(path: Path, threads: int):
    """An InferenceSession with the options the runtime backend uses: the reference, with nothing around it."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def bare_openvino(path: Path, threads: int, x: np.ndarray):
    """A CompiledModel's infer request with the backend's compile options; `call()` = InferRequest.infer()."""
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape([int(d) for d in x.shape])
    compiled = core.compile_model(model, "CPU", {hints.performance_mode: hints.PerformanceMode.LATENCY,
                                                 props.num_streams: 1, hints.inference_precision: ov.Type.f32,
                                                 props.inference_num_threads: threads})
    request = compiled.create_infer_request()
    request.set_input_tensor(ov.Tensor(x))
    return request.infer


def bare_onnxruntime(path: Path, threads: int, x: np.ndarray):
    sess = bare_session(path, threads)
    feed = {sess.get_inputs()[0].name: x}
    return lambda: sess.run(None, feed)


def bare_block(call, runs: int) -> np.ndarray:
    clock = time.perf_counter_ns
    out = np.empty(runs, dtype=np.float64)
    for i in range(runs):
        t0 = clock()
        call()
        out[i] = clock() - t0
    return out / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, help="bundle with ONNX artifacts (default: LeNet-5 digits, built once)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--blocks", type=int, default=20, help="interleaved blocks per side")
    ap.add_argument("--runs", type=int, default=200, help="timed runs per block")
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--engines", default="onnxruntime,openvino", help="comma list (installed ones are used)")
    args = ap.parse_args()

    bundle = Bundle.load(args.bundle or default_bundle())
    x_nchw, source = bundle_inputs(bundle, 1)
    env = environment_record()
    print(f"machine: {environment_summary(env)}")
    print(f"input: {source}; threads {args.threads}; {args.blocks} interleaved blocks x {args.runs} runs per side")
    if (os.cpu_count() or 1) <= 2:
        print("note: a shared 2-core machine; absolute numbers are noisy, the side-by-side ratio is the result")
    from edgecnn.runtime.backends import available_backends

    engines = [b for b in args.engines.split(",") if available_backends().get(b)]
    rows, ok = [], True
    for art in bundle.find("onnx"):
        x = x_nchw.astype(np.float32)
        for engine in engines:
            make = bare_openvino if engine == "openvino" else bare_onnxruntime
            call = make(art.path, args.threads, x)
            bare_block(call, args.warmup)
            prof_samples, bare_samples, ratios = [], [], []
            for _ in range(args.blocks):
                r = profile_configuration(art, engine, args.threads, x_nchw, runs=args.runs, warmup=args.warmup,
                                          progress=False)
                p = np.asarray(r["samples_ms"])
                b = bare_block(call, args.runs)
                prof_samples.append(p)
                bare_samples.append(b)
                ratios.append(np.median(p) / np.median(b))
            p50_prof = float(np.median(np.concatenate(prof_samples)))
            p50_bare = float(np.median(np.concatenate(bare_samples)))
            paired = float(np.median(ratios))
            within = abs(paired - 1) <= BAR
            ok &= within
            rows.append([art.info["file"], engine, format_ms(p50_prof), format_ms(p50_bare),
                         f"{p50_prof / p50_bare:.3f}", f"{paired:.3f} [{min(ratios):.3f}-{max(ratios):.3f}]",
                         "yes" if within else "NO"])
    print()
    print(text_table(["artifact", "engine", "profiler p50 ms", "bare run p50 ms", "pooled ratio",
                      "paired ratio: median [range]", f"paired within {100 * BAR:.0f}%"], rows))
    print(f"\nload average after: {environment_record()['load_average']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
