"""`edgecnn profile`, `edgecnn report`, `edgecnn benchmark`. Heavy imports happen in the handlers."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli_vocab import hidden_alias


def register(sub: argparse._SubParsersAction) -> None:
    """Add this area's subcommands; handlers import heavy libraries lazily."""
    p = sub.add_parser(
        "profile",
        help="measure a bundle's latency: cold start, p50/p90/p99, throughput, memory, per-op",
        description="Profile a bundle's model files: load time and first inference, then latency percentiles "
        "of the bare model call (input prepared beforehand) after a warm-up, per backend x precision x "
        "threads, with the device's state recorded next to the numbers.",
    )
    p.add_argument("bundle", help="bundle directory (from `edgecnn export`), or a bare .onnx / .tflite file")
    p.add_argument("--backend", default=None,
                   help="auto | onnxruntime | litert | tensorrt | openvino (default auto: every artifact on every "
                        "installed backend that reads its format)")
    p.add_argument("--precision", default=None,
                   help="all | fp32 | fp16 | int8 | bf16 (default all; bf16: OpenVINO's hint on the fp32 ONNX)")
    p.add_argument("--threads", default=None, metavar="N[,N...]",
                   help="comma list of thread counts, e.g. 1,2,4 (default: the backend's default)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--runs", type=int, default=None, metavar="N", help="timed runs per configuration (default 200)")
    g.add_argument("--duration", type=float, default=None, metavar="S", help="time each configuration for S seconds")
    p.add_argument("--warmup", type=int, default=20, metavar="W", help="untimed warm-up runs (default 20)")
    p.add_argument("--batch", type=int, default=1, metavar="B", help="images per inference (default 1)")
    p.add_argument("--per-op", action="store_true", help="per-operator breakdown where the backend has a profiler")
    p.add_argument("--report", metavar="FILE.json", help="write the report (schema edgecnn.profile/1)")
    p.add_argument("--markdown", metavar="FILE.md", help="write the report as Markdown")
    p.add_argument("--plots", metavar="DIR", help="write PNG plots (latency histogram/CDF, per-op bars)")
    p.add_argument("--device", metavar="PROFILE",
                   help="device profile (e.g. rpi5): its backend/precision/threads where not given")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--on", action="append", metavar="ssh://user@host[:port]",
                   help="profile on a board over SSH (repeat for several; 'this' = here): the bundle is copied "
                        "there, the report comes back, several are merged into one table")
    p.set_defaults(func=_profile)

    r = sub.add_parser(
        "report",
        help="merge profile reports from several devices/configurations into one comparison",
        description="Read reports written by `edgecnn profile --report` (validated), print one comparison "
        "table, and optionally write it as Markdown and a p50/p90 bar plot.",
    )
    r.add_argument("reports", nargs="+", metavar="REPORT.json")
    r.add_argument("--out", metavar="FILE.md", help="write the comparison as Markdown")
    r.add_argument("--plot", metavar="FILE.png", help="write a p50/p90 comparison plot")
    r.set_defaults(func=_report)

    b = sub.add_parser(
        "benchmark",
        help="export a checkpoint to every format x precision here, then size, accuracy and latency per row",
        description="Export CKPT to every format and precision available here (plus a PyTorch eager fp32 "
        "baseline), measure test top-1 and latency for each, and write one table and an accuracy-vs-latency "
        "Pareto plot. Backends that are not installed are listed, not hidden.",
    )
    b.add_argument("checkpoint", metavar="CKPT", help="checkpoint from `edgecnn train` / `edgecnn prune`")
    b.add_argument("--data", required=True, help="dataset for test accuracy and int8 calibration (e.g. digits)")
    b.add_argument("--data-root", help="folder holding the dataset files")
    b.add_argument("--formats", default="onnx,tflite", help="comma list of onnx, tflite (default: both)")
    b.add_argument("--no-int8", dest="int8", action="store_false", help="skip int8 artifacts")
    b.add_argument("--out", metavar="DIR", help="output folder for bundle/, benchmark.json, benchmark.md and "
                                                "pareto.png (default: benchmark/<model>-<dataset>)")
    b.add_argument("--threads", type=int, default=None, metavar="N", help="threads for every row (default: all cores)")
    b.add_argument("--runs", type=int, default=100, metavar="N", help="timed runs per row (default 100)")
    b.add_argument("--warmup", type=int, default=10, metavar="W", help="warm-up runs per row (default 10)")
    hidden_alias(b, b.add_argument("--eval-limit", dest="test_limit", type=int, default=None, metavar="N",
                                   help="measure accuracy on a seeded subset of N test images (default: the whole "
                                        "test split)"), "--test-limit")
    b.add_argument("--calib-size", type=int, default=200, metavar="N", help="int8 calibration images (default 200)")
    b.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    b.set_defaults(func=_benchmark)


def _profile(args: argparse.Namespace) -> int:
    from ..errors import EdgeCNNError
    from .plots import profile_plots
    from .report import console_summary, write_markdown, write_report

    if args.device:
        from ..devices.profiles import apply_profile, load_profile

        applied = apply_profile(args, load_profile(args.device))
        if applied:
            print(f"device profile {args.device}: " + ", ".join(f"{k} {v}" for k, v in applied.items()))
    if args.runs is not None and args.runs < 1:
        raise EdgeCNNError(f"--runs must be at least 1, got {args.runs} (zero runs measure nothing)")
    if args.on:
        from ..remote import profile_on_targets

        return profile_on_targets(args)
    bare = Path(args.bundle).suffix.lower() in (".onnx", ".tflite") and not Path(args.bundle).is_dir()
    if bare:  # a file made anywhere: profiled in a throw-away bundle around it (edgecnn.profile.bare)
        from .bare import bare_bundle, random_input

        with bare_bundle(args.bundle) as tmp:
            report = _profile_run(args, tmp, random_input(tmp, args.batch))
        report["bundle"].update(path=str(Path(args.bundle).resolve()), bare_file=True)
    else:
        report = _profile_run(args, args.bundle)
    print()
    print(console_summary(report))
    if not bare:
        from ..bundle import Bundle
        from ..runtime.tune import cached_choice

        choice = cached_choice(Bundle.load(args.bundle))
        print(choice)
        if "cached)" in choice:  # a tune is cached: what a start with it costs, measured in a fresh process
            from .coldstart import cold_start, format_cold_start

            print(format_cold_start(cold_start(args.bundle)))
    if args.report:
        print(f"report: {write_report(args.report, report)}")
    if args.markdown:
        print(f"markdown: {write_markdown(args.markdown, report)}")
    if args.plots:
        for path in profile_plots(report, Path(args.plots)):
            print(f"plot: {path}")
    return 0


def _profile_run(args: argparse.Namespace, bundle, raw_input=None) -> dict:
    from .profiler import DEFAULT_RUNS, profile_bundle

    return profile_bundle(
        bundle,
        backend=args.backend or "auto",
        precision=args.precision or "all",
        threads=args.threads,
        runs=args.runs if args.runs is not None else DEFAULT_RUNS,
        duration=args.duration,
        warmup=args.warmup,
        batch=args.batch,
        per_op=args.per_op,
        device_profile=args.device,
        progress=args.progress,
        raw_input=raw_input,
    )


def _report(args: argparse.Namespace) -> int:
    from .plots import reports_plot
    from .report import COMPARE_HEADER, compare_markdown, compare_rows, read_report, text_table

    reports = [read_report(p) for p in args.reports]
    print(text_table(COMPARE_HEADER, compare_rows(reports)))
    if args.out:
        from ..utils import atomic_write_text

        atomic_write_text(args.out, compare_markdown(reports, args.reports))
        print(f"markdown: {args.out}")
    if args.plot:
        print(f"plot: {reports_plot(reports, args.plot)}")
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from .benchmark import run_benchmark

    run_benchmark(
        args.checkpoint,
        data=args.data,
        data_root=args.data_root,
        formats=args.formats,
        int8=args.int8,
        out=args.out,
        threads=args.threads,
        runs=args.runs,
        warmup=args.warmup,
        test_limit=args.test_limit,
        calib_size=args.calib_size,
        progress=args.progress,
    )
    return 0
