"""One exception type for every error a user can fix; the CLI prints it as one line."""

from __future__ import annotations


class EdgeCNNError(Exception):
    """A problem with the user's input or environment, reported as a single clear line."""
