"""`edgecnn optimize` (argument definitions; the handler imports torch lazily)."""

from __future__ import annotations

import argparse


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a comma list of numbers, got '{text}'") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a comma list of integers, got '{text}'") from None


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "optimize",
        help="search prune ratio x precision x format x backend x threads for the fastest bundle within an "
             "accuracy budget, measured on the target",
        description="Prune (structured, fine-tuned), quantize (fp16, int8 PTQ; QAT when PTQ is over budget), export "
                    "and verify each candidate, time every artifact x backend x thread count on the target (this "
                    "machine or a board over SSH), and keep the fastest within --max-drop points of the input's "
                    "test accuracy. Every trial is kept in OUT/trials.jsonl: a rerun (after Ctrl-C, a crash or a "
                    "spent --budget-min) continues where it stopped.")
    p.add_argument("checkpoint", metavar="CKPT", help="a float checkpoint from `edgecnn train`")
    p.add_argument("--data", required=True, help="the checkpoint's dataset (accuracy on its test split)")
    p.add_argument("--data-root", help="folder holding the dataset files")
    p.add_argument("--max-drop", type=float, default=1.0, metavar="PTS",
                   help="largest test top-1 loss allowed, in points vs the input checkpoint (default 1.0)")
    p.add_argument("--target", default="this", metavar="this|ssh://user@host[:port]",
                   help="where latency is measured (default: this machine)")
    p.add_argument("--budget-min", type=float, metavar="M",
                   help="stop starting new steps after M minutes (what was measured is reported; rerun to continue)")
    p.add_argument("--out", metavar="DIR",
                   help="search folder: trials, report, plot, chosen bundle (default: runs/<checkpoint's run>-optimize)")
    s = p.add_argument_group("search space")
    s.add_argument("--ratios", type=_floats, default=None, metavar="R,...",
                   help="structured prune ratios to try, 0 = unpruned (default 0,0.25,0.5,0.75)")
    s.add_argument("--finetune-epochs", type=int, default=3, metavar="N", help="fine-tuning after pruning (default 3)")
    s.add_argument("--qat-epochs", type=int, default=2, metavar="N",
                   help="QAT epochs where int8 PTQ is over budget (0 = never; default 2)")
    s.add_argument("--round-to", type=int, metavar="N", help="keep pruned channel counts multiples of N (e.g. 8)")
    s.add_argument("--formats", type=_names, default=None, metavar="F,...", help="onnx, tflite (default both)")
    s.add_argument("--precisions", type=_names, default=None, metavar="P,...", help="fp32, fp16, int8 (default all)")
    s.add_argument("--backends", type=_names, default=None, metavar="B,...",
                   help="backends to time (default: every one installed on the target)")
    s.add_argument("--threads", type=_ints, default=None, metavar="N,...",
                   help="thread counts (default 1, 2, 4, ... up to the target's cores)")
    m = p.add_argument_group("measurement")
    m.add_argument("--runs", type=int, default=200, metavar="N", help="timed runs per trial (default 200)")
    m.add_argument("--warmup", type=int, default=20, metavar="W", help="warm-up runs per trial (default 20)")
    m.add_argument("--eval-limit", dest="test_limit", type=int, metavar="N",
                   help="accuracy on a seeded subset of N test images")
    m.add_argument("--calib-size", type=int, default=200, metavar="N", help="int8 calibration images (default 200)")
    m.add_argument("--lr", type=float, help="fine-tune learning rate (default: a third of the training run's)")
    m.add_argument("--train-limit", type=int, metavar="N", help="fine-tune on a seeded subset of N training images")
    m.add_argument("--train-threads", type=int, metavar="N", help="torch threads for fine-tuning (default: torch's, i.e. OMP_NUM_THREADS or all cores)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=_optimize)


def _optimize(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from .report import finish
    from .search import SearchRun, SearchSpace, run_search

    space = SearchSpace(finetune_epochs=args.finetune_epochs, qat_epochs=args.qat_epochs, round_to=args.round_to,
                        backends=args.backends, threads=args.threads)
    for name in ("ratios", "formats", "precisions"):
        if getattr(args, name) is not None:
            setattr(space, name, getattr(args, name))
    if not args.out:  # the vocabulary's --out rule: a default next to the other runs
        args.out = str(Path("runs") / f"{Path(args.checkpoint).resolve().parent.name}-optimize")
    run = SearchRun(checkpoint=Path(args.checkpoint), data=args.data, out=Path(args.out), max_drop=args.max_drop,
                    target=args.target, budget_min=args.budget_min, data_root=args.data_root,
                    test_limit=args.test_limit, calib_size=args.calib_size, runs=args.runs, warmup=args.warmup,
                    lr=args.lr, train_limit=args.train_limit, train_threads=args.train_threads)
    try:
        state = run_search(run, space, log=lambda m: print(m, flush=True), progress=args.progress)
    except KeyboardInterrupt:
        print(f"edgecnn: interrupted; every finished trial is kept in {Path(args.out) / 'trials.jsonl'}: run the "
              "same command again to continue", file=sys.stderr)
        return 130
    finish(state)
    return 0
