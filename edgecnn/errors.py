"""One exception type for every error a user can fix; the CLI prints it as one line."""

from __future__ import annotations

import sys
from typing import Callable, NoReturn


class EdgeCNNError(Exception):
    """A problem with the user's input or environment, reported as a single clear line."""


def run_script(main: Callable[[], int | None]) -> NoReturn:
    """Run a script's `main()` and exit: an EdgeCNNError becomes one line on stderr and exit status 2."""
    try:
        rc = main()
    except EdgeCNNError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(int(rc or 0))
