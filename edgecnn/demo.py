"""`edgecnn demo`: the whole pipeline on the embedded default (placeholder until it lands)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the demo subcommand."""
