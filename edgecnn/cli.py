"""The `edgecnn` command. Each pipeline area registers its own subcommands.

Area modules only define arguments at import time; their handlers import heavy libraries
(torch, onnx, ...) lazily, so `edgecnn run` and `edgecnn profile` start without torch.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from typing import Sequence

from . import __version__
from .errors import EdgeCNNError

DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO)

# Order = the pipeline, which is also the order of `edgecnn --help`.
COMMAND_MODULES = (
    "edgecnn.train.cli",  # train, eval, models
    "edgecnn.compress.cli",  # prune, qat, compress
    "edgecnn.export.cli",  # export, verify, build-engine
    "edgecnn.runtime.cli",  # run, classify
    "edgecnn.profile.cli",  # profile, report, benchmark
    "edgecnn.devices.cli",  # info
    "edgecnn.deploy.cli",  # service, bundle
    "edgecnn.optimize.cli",  # optimize
    "edgecnn.demo",  # demo
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgecnn",
        description="Train, compress, export and run CNNs on edge devices.",
    )
    parser.add_argument("--version", action="version", version=f"edgecnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        # A label or path this terminal cannot encode (LANG=C, an ASCII pipe) prints escaped, never raises.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
        return int(rc or 0)
    except EdgeCNNError as e:
        print(f"edgecnn: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgecnn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # a bug, not user error: still one line unless asked for more
        if os.environ.get("EDGECNN_DEBUG"):
            raise
        if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
            # A full disk, a quota, a read-only filesystem: the user's to fix; say where.
            where = f": {e.filename}" if e.filename else ""
            print(f"edgecnn: error: {e.strerror or os.strerror(e.errno)}{where}", file=sys.stderr)
            return 2
        print(
            f"edgecnn: internal error: {type(e).__name__}: {e} (set EDGECNN_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
