"""`edgecnn prune`, `edgecnn qat`, `edgecnn compress` (argument definitions; handlers import torch lazily)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli_vocab import hidden_alias

DATA_HELP = "dataset to fine-tune and evaluate on (default: the checkpoint's own)"


def _ratio(text: str) -> float:
    # Checked again (with one clear line) by PruneSettings.check for callers of the Python API.
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got '{text}'") from None


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help=DATA_HELP)
    p.add_argument("--data-root", help="folder holding the dataset files")
    p.add_argument("--lr", type=float, help="fine-tune learning rate (default: a third of the training run's)")
    p.add_argument("--train-limit", type=int, help="fine-tune on a seeded random subset of N training images")
    p.add_argument("--eval-limit", type=int, help="evaluate on a seeded random subset of N test images")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads for the latency report (default 1)")
    p.add_argument("--no-report", dest="report", action="store_false", help="skip the before/after report")


def _prune_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ratio", type=_ratio, required=True,
                   help="fraction of channels to remove from each layer, 0 < R < 1 (or of all weights, --unstructured)")
    p.add_argument("--global", dest="global_", action="store_true",
                   help="rank channels across all layers instead of within each layer")
    p.add_argument("--round-to", type=int, help="keep channel counts multiples of N (e.g. 8, SIMD-friendly)")
    p.add_argument("--iterative", type=int, default=1, help="prune/fine-tune rounds (default 1)")
    p.add_argument("--ignore", type=_names, default=[], metavar="NAME,...",
                   help="layers kept whole (qualified names); the output layer always is")
    p.add_argument("--method", choices=("l1", "l2", "taylor"), default="l1", help="channel importance (default l1)")
    p.add_argument("--unstructured", action="store_true",
                   help="magnitude-prune individual weights instead: smaller zipped file, NOT faster dense inference")


def register(sub: argparse._SubParsersAction) -> None:
    """Add prune, qat and compress."""
    p = sub.add_parser("prune", help="structured channel pruning + fine-tuning, with a measured latency report",
                       description="Remove whole channels with torch-pruning (dependency-aware), fine-tune, and "
                                   "write pruned.pt (an ordinary checkpoint) + compress_report.{json,png}.")
    p.add_argument("checkpoint", metavar="CKPT")
    _prune_args(p)
    p.add_argument("--finetune-epochs", type=int, default=3, help="fine-tune epochs after each round (default 3)")
    p.add_argument("--out", help="output folder (default: runs/<checkpoint's run>-pruned)")
    _common(p)
    p.set_defaults(func=_prune)

    p = sub.add_parser("qat", help="quantization-aware training (torchao pt2e) of a checkpoint",
                       description="Fine-tune with simulated int8 quantization and write qat.pt, which "
                                   "`edgecnn export --int8` turns into int8 ONNX (QDQ) and int8 TFLite.")
    p.add_argument("checkpoint", metavar="CKPT")
    hidden_alias(p, p.add_argument("--qat-epochs", dest="epochs", type=int, default=3, help="QAT epochs (default 3)"),
                 "--epochs")
    p.add_argument("--out", help="output folder (default: runs/<checkpoint's run>-qat)")
    _common(p)
    p.set_defaults(func=_qat)

    p = sub.add_parser("compress", help="prune then QAT, checking an accuracy budget",
                       description="Structured pruning + fine-tuning, then QAT; fails (exit 2) if the int8 "
                                   "model loses more than --target-drop points of test top-1.")
    p.add_argument("checkpoint", metavar="CKPT")
    _prune_args(p)
    p.add_argument("--finetune-epochs", type=int, default=3, help="fine-tune epochs after pruning (default 3)")
    p.add_argument("--qat-epochs", type=int, default=3, help="QAT epochs after pruning (default 3; 0 = prune only)")
    p.add_argument("--target-drop", type=float, default=1.0,
                   help="largest allowed test top-1 drop in points vs the input checkpoint (default 1.0)")
    p.add_argument("--out", help="output folder (default: runs/<checkpoint's run>-compressed)")
    _common(p)
    p.set_defaults(func=_compress)


def _settings(args: argparse.Namespace):
    from .prune import PruneSettings

    return PruneSettings(ratio=args.ratio, global_=args.global_, round_to=args.round_to, iterative=args.iterative,
                         ignore=args.ignore, method=args.method)


def _default_out(checkpoint: str, suffix: str) -> str:
    """runs/<the checkpoint's run folder>-<suffix>: runs/lenet5-digits/best.pt -> runs/lenet5-digits-pruned."""
    return str(Path("runs") / f"{Path(checkpoint).resolve().parent.name}-{suffix}")


def _prune(args: argparse.Namespace) -> int:
    import torch

    args.out = args.out or _default_out(args.checkpoint, "pruned")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, args.threads))
    common = dict(data=args.data, data_root=args.data_root, lr=args.lr, train_limit=args.train_limit,
                  eval_limit=args.eval_limit, threads=args.threads, report=args.report)
    try:
        if args.unstructured:
            from .unstructured import unstructured_checkpoint

            unstructured_checkpoint(args.checkpoint, args.ratio, finetune_epochs=args.finetune_epochs,
                                    out=args.out, ignore=args.ignore, **common)
        else:
            from .prune import prune_checkpoint

            prune_checkpoint(args.checkpoint, _settings(args), finetune_epochs=args.finetune_epochs, out=args.out,
                             **common)
    finally:
        torch.set_num_threads(previous_threads)  # in-process callers (tests, notebooks) keep their setting
    return 0


def _qat(args: argparse.Namespace) -> int:
    from .qat import qat_checkpoint

    args.out = args.out or _default_out(args.checkpoint, "qat")
    qat_checkpoint(args.checkpoint, epochs=args.epochs, out=args.out, data=args.data, data_root=args.data_root,
                   lr=args.lr, train_limit=args.train_limit, eval_limit=args.eval_limit)
    return 0


def _compress(args: argparse.Namespace) -> int:
    from .pipeline import compress_checkpoint

    args.out = args.out or _default_out(args.checkpoint, "compressed")
    compress_checkpoint(args.checkpoint, _settings(args), unstructured=args.unstructured,
                        finetune_epochs=args.finetune_epochs, qat_epochs=args.qat_epochs,
                        target_drop=args.target_drop, out=args.out, data=args.data, data_root=args.data_root,
                        lr=args.lr, train_limit=args.train_limit, eval_limit=args.eval_limit, threads=args.threads)
    return 0
