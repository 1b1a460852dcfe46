"""Checks on matplotlib figures (not PNG pixels) shared by the report-plot tests: ratio bars, accuracy axes,
configuration labels."""

from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

import pytest

# "t1", "tNone", "tdefault", "t-default", "2t", "b1": the spellings that "1 thread" / "batch 1" replace
TERSE = re.compile(r"(?<![\w%])(t\d+|tNone|tdefault|t-default|\d+t|b\d+)(?![\w%])")


def figure_texts(fig: Any) -> list[str]:
    """Every text a reader sees: titles, axis labels, tick labels, legend entries, annotations."""
    out = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        out += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
        out += [t.get_text() for t in ax.texts]
        if ax.get_legend() is not None:
            out += [t.get_text() for t in ax.get_legend().get_texts()]
    return [t for t in out if t]


def assert_config_labels(texts: Iterable[str], *expected: str) -> None:
    texts = list(texts)
    for text in texts:
        assert not TERSE.search(text), f"terse configuration label in {text!r}"
    for want in expected:
        assert any(want in t for t in texts), f"{want!r} not in {texts}"


def _vertical_lines(ax: Any) -> list[float]:
    return [float(line.get_xdata()[0]) for line in ax.get_lines()
            if len(set(map(float, line.get_xdata()))) == 1 and len(line.get_xdata()) == 2]


def _horizontal_lines(ax: Any) -> list[float]:
    return [float(line.get_ydata()[0]) for line in ax.get_lines()
            if len(set(map(float, line.get_ydata()))) == 1 and len(line.get_ydata()) == 2]


def assert_ratio_axis(ax: Any, ratios: Sequence[float]) -> None:
    """Bars of exactly these ratios on a linear axis from 0 (past the longest bar), a line at 1.0, values written."""
    assert ax.get_xscale() == "linear"
    lo, hi = ax.get_xlim()
    assert lo == 0 and hi > max(max(ratios), 1.0)
    widths = sorted(p.get_width() for p in ax.patches)
    assert widths == pytest.approx(sorted(ratios))
    assert all(p.get_x() == 0 for p in ax.patches)  # every bar starts at 0
    assert 1.0 in _vertical_lines(ax)
    written = [t.get_text() for t in ax.texts]
    for r in ratios:
        assert f"{r:.2f}x" in written


def assert_accuracy_axis(ax: Any, points: Sequence[float], lines: Sequence[float] = (), *,
                         scale: float = 100.0) -> None:
    """Linear y axis inside [0, scale] holding every point and line, neither 0-100 for close points nor so
    zoomed that a tenth of a point fills it."""
    assert ax.get_yscale() == "linear"
    lo, hi = ax.get_ylim()
    assert 0 <= lo < hi <= scale
    for v in list(points) + list(lines):
        assert lo <= v <= hi, (v, lo, hi)
    for v in lines:
        assert any(v == pytest.approx(h) for h in _horizontal_lines(ax)), (v, _horizontal_lines(ax))
    every = list(points) + list(lines)
    spread = max(every) - min(every)
    assert hi - lo >= 0.02 * scale  # 0.1 pt is not drawn as a cliff
    assert hi - lo <= max(3 * spread, 0.05 * scale), (lo, hi, spread)  # close points are not lost in 0-100


def axis_titled(fig: Any, prefix: str) -> Any:
    """The one axes of `fig` whose title starts with `prefix`."""
    found = [ax for ax in fig.axes if ax.get_title().startswith(prefix)]
    assert len(found) == 1, [ax.get_title() for ax in fig.axes]
    return found[0]
