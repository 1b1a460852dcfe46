"""One vocabulary across the `edgecnn` commands (docs/cli.md): one flag name per concept.

`VOCABULARY` maps each concept to its canonical flag and the other spellings it had; a test walks every
subcommand's parser and fails when a visible flag is one of those other spellings. The old spellings
still parse for one release, as hidden aliases (`hidden_alias`) that print a one-line note.
No torch, no host imports: the device-side CLIs use it too.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

# concept -> (canonical flag, [old or rival spellings])
VOCABULARY: dict[str, tuple[str, list[str]]] = {
    "size of the evaluation/verification subset (test images)": (
        "--eval-limit", ["--limit", "--verify-samples", "--samples", "--test-limit", "--test-samples"]),
    "size of the training subset": ("--train-limit", ["--train-samples"]),
    "torch device for training/evaluation (cpu, cuda)": ("--torch-device", ["--torch_device"]),
    "device profile (edgecnn info --profiles)": ("--device", ["--profile-name", "--device-profile"]),
    "QAT epochs": ("--qat-epochs", ["--qat"]),
    "fine-tuning epochs after pruning": ("--finetune-epochs", ["--ft-epochs"]),
    "int8 calibration images": ("--calib-size", ["--calib-samples", "--calibration-size"]),
    "output folder or file": ("--out", ["--output", "--out-dir", "--outdir", "-o"]),
    "CPU threads": ("--threads", ["--num-threads", "--nthreads"]),
    "timed runs": ("--runs", ["--iterations", "--iters"]),
    "warm-up runs": ("--warmup", ["--warm-up", "--warmup-runs"]),
    "labels reported per image": ("--top-k", ["--topk", "--top"]),
    "stop after N frames": ("--max-frames", ["--frames", "--num-frames"]),
}

# Flags that read like a rival spelling but mean something else in their command.
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("qat", "--epochs"): "hidden alias of --qat-epochs (old spelling)",
}


class _OldSpelling(argparse.Action):
    """Stores like the canonical flag and notes the new name once on stderr."""

    def __init__(self, option_strings: list[str], dest: str, canonical: str = "", store: Any = None,
                 **kwargs: Any):
        self.canonical, self.store = canonical, store
        if store is not None:
            kwargs["nargs"] = 0
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"edgecnn: note: {option_string} is now {self.canonical} (the old name goes in the next release)",
              file=sys.stderr)
        setattr(namespace, self.dest, self.store if self.store is not None else values)


def hidden_alias(parser: argparse.ArgumentParser, canonical: argparse.Action, *old: str) -> None:
    """Let `old` spellings set what `canonical` (the action add_argument returned) sets, unlisted in --help."""
    store = None
    if isinstance(canonical, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        store = canonical.const
    extra = {} if store is not None else {"type": canonical.type, "nargs": canonical.nargs, "const": canonical.const}
    parser.add_argument(*old, dest=canonical.dest, action=_OldSpelling, canonical=canonical.option_strings[0],
                        store=store, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **extra)
