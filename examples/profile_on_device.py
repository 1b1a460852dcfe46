"""Profile a bundle's artifacts on the device, with the Python API and no torch.

Shows `edgecnn.profile.profiler.profile_bundle` (warm-up, then latency percentiles, FPS and memory
per artifact/backend/thread count), the console table, and the JSON + Markdown reports that
`edgecnn profile --compare` and the Pareto plots read.

Run on the device:
    python examples/profile_on_device.py --bundle export/lenet5-digits --runs 300 --out profile.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgecnn.errors import run_script


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default="export/lenet5-digits", help="bundle folder (default: export/lenet5-digits)")
    p.add_argument("--backend", default="auto", help="auto (every installed backend), onnxruntime, litert, ...")
    p.add_argument("--precision", default="all", help="all, fp32, fp16 or int8")
    p.add_argument("--threads", default=None, help="thread counts to try, e.g. 1,2,4 (default: the backend's)")
    p.add_argument("--runs", type=int, default=200, help="timed runs per configuration (default 200)")
    p.add_argument("--out", default="profile.json", help="report path (a .md next to it too)")
    p.add_argument("--fast", action="store_true", help="20 runs, 1 thread (a smoke run, used by the tests)")
    args = p.parse_args(argv)
    if args.fast:
        args.runs, args.threads = 20, args.threads or "1"

    from edgecnn.profile.profiler import profile_bundle
    from edgecnn.profile.report import console_summary, write_markdown, write_report

    report = profile_bundle(args.bundle, backend=args.backend, precision=args.precision, threads=args.threads,
                            runs=args.runs, progress=not args.fast)
    print(console_summary(report))
    out = write_report(args.out, report)
    md = write_markdown(Path(args.out).with_suffix(".md"), report)
    best = min(report["results"], key=lambda r: r["latency_ms"]["p50"])
    print(f"fastest: {best['artifact']} on {best['backend']}: p50 {best['latency_ms']['p50']:.3f} ms "
          f"({1000 / best['latency_ms']['p50']:.0f} FPS)")
    print(f"report: {out} and {md}")
    return 0


if __name__ == "__main__":
    run_script(main)
