"""The search's progress bar: trials done of planned, the current step, time left (tqdm).

On a terminal: one bar on stderr, log lines printed above it. Piped or redirected (not a TTY): no bar at
all (tqdm's disable=None), so logs and CI output carry no carriage-return debris.
"""

from __future__ import annotations

import sys
from typing import Any, Callable


class SearchProgress:
    def __init__(self, total: int, clock: Any, enabled: bool = True):
        self.clock = clock
        self._bar = None
        if enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=max(1, total), unit="trial", desc="optimize", file=sys.stderr,
                                 disable=None, dynamic_ncols=True, mininterval=0.5,
                                 bar_format="{desc}: {n_fmt}/{total_fmt} trials |{bar}| {elapsed}<{remaining} {postfix}")
            except ImportError:
                self._bar = None
            if self._bar is not None and self._bar.disable:
                self._bar = None

    def wrap(self, log: Callable[[str], None]) -> Callable[[str], None]:
        if self._bar is None:
            return log
        from tqdm import tqdm

        return lambda msg: tqdm.write(str(msg), file=sys.stdout)

    def _postfix(self, text: str) -> None:
        left = self.clock.left()
        budget = "" if left is None else f" | budget {max(0.0, left) / 60:.1f} min left"
        self._bar.set_postfix_str(text + budget, refresh=True)

    def stage(self, text: str) -> None:
        if self._bar is not None:
            self._postfix(text)

    def update(self, n: int) -> None:
        if self._bar is not None and n:
            if self._bar.n + n > self._bar.total:
                self._bar.total = self._bar.n + n
            self._bar.update(n)

    def add_total(self, n: int) -> None:
        if self._bar is not None:
            self._bar.total += n
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
