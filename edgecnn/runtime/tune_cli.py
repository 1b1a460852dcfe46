"""`edgecnn tune BUNDLE`: measure every backend x artifact x thread count here, print the table, cache the choice.

No torch here; the work is `edgecnn.runtime.tune.tune`, which returns a JSON-able report (so it can run
on a remote device and send the report back).
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser(
        "tune",
        help="measure every backend x artifact x threads here; cache the fastest within the accuracy budget",
        description="Load every artifact of the bundle in every installed backend (onnxruntime, LiteRT, OpenVINO, "
                    "TensorRT engines) at each thread count, time them round-robin on a sample image, print the "
                    "table, and cache the fastest candidate within the accuracy budget: `edgecnn run`/`classify` "
                    "and Classifier(bundle) then use it without measuring again.",
    )
    t.add_argument("bundle", help="bundle directory written by `edgecnn export`")
    t.add_argument("--threads", default=None, metavar="N[,N...]",
                   help="thread counts to try, e.g. 1,2,4 (default: 1, 2, 4, ... up to the usable cores)")
    t.add_argument("--budget-s", type=float, default=None, metavar="S",
                   help="seconds of timing, shared by all candidates (default 10; extended until every candidate has "
                        "15 calls, at most 5x; loading comes on top)")
    t.add_argument("--backend", default="auto", help="only this backend (default auto: every installed one)")
    t.add_argument("--precision", default="auto", help="only this precision (default auto: every one)")
    t.add_argument("--max-drop", type=float, default=None, metavar="PTS",
                   help="accuracy budget: points of top-1 an artifact may have lost at export (default 1)")
    t.add_argument("--report", metavar="TUNE.json", default=None, help="write the report as JSON")
    t.add_argument("--no-cache", dest="write_cache", action="store_false",
                   help="do not write the result to the tune cache")
    t.add_argument("--on", action="append", default=None, metavar="ssh://[user@]host[:port]",
                   help="tune on a board over SSH instead (repeatable): the bundle is copied there, the sweep runs "
                        "and caches its choice on the board, the report comes back (docs/profiling.md)")
    t.set_defaults(func=cmd_tune)


def _device_args(args: argparse.Namespace) -> list[str]:
    """The same sweep's arguments for the board's `edgecnn tune` ({bundle}/{report}: remote paths)."""
    out = ["tune", "{bundle}", "--report", "{report}", "--backend", args.backend, "--precision", args.precision]
    for flag, value in (("--threads", args.threads), ("--budget-s", args.budget_s), ("--max-drop", args.max_drop)):
        if value is not None:
            out += [flag, str(value)]
    return out + ([] if args.write_cache else ["--no-cache"])


def _tune_remote(args: argparse.Namespace) -> int:
    from ..remote import SSHTarget, remote_record, report_path_for, run_device_command
    from ..utils import atomic_write_json
    from .tune import format_table

    targets = list(dict.fromkeys(args.on))
    for url in targets:
        t = SSHTarget.parse(url)
        result = run_device_command(t, _device_args(args), args.bundle)
        report = {**result["report"], "remote": remote_record(result)}
        print(f"== {t.label}")
        print(format_table(report))
        print(f"choice on {t.label}: {report.get('why')}")
        if args.report:
            path = args.report if len(targets) == 1 else report_path_for(args.report, t.label)
            atomic_write_json(path, report)
            print(f"report: {path}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from ..errors import EdgeCNNError
    from ..profile.profiler import parse_threads
    from ..utils import atomic_write_json
    from .backends import INT8_MAX_DROP_POINTS
    from .tune import SWEEP_BUDGET_S, format_table, tune

    if args.on:
        return _tune_remote(args)
    threads = None if args.threads is None else parse_threads(args.threads)
    if args.max_drop is not None and args.max_drop < 0:
        raise EdgeCNNError(f"--max-drop must be >= 0, got {args.max_drop:g}")
    report = tune(args.bundle, backend=args.backend, precision=args.precision, threads=threads,
                  budget_s=SWEEP_BUDGET_S if args.budget_s is None else args.budget_s,
                  max_drop=INT8_MAX_DROP_POINTS if args.max_drop is None else args.max_drop,
                  write=args.write_cache, log_fn=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
    print(format_table(report))
    for left in report["left_out"]:
        print(f"left out: {left['candidate']}: {left['reason']}")
    for note in report["notes"]:
        print(f"note: {note}")
    print(f"choice: {report['why']}")
    if report["cache"]:
        print(f"cached: {report['cache']} (edgecnn run/classify and Classifier(bundle) use it)")
    if args.report:
        atomic_write_json(args.report, report)
        print(f"report: {args.report}")
    if report["choice"] is None:
        raise EdgeCNNError(f"{args.bundle}: no candidate could run here")
    return 0
