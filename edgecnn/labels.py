"""How configurations are named in plots, tables and messages: "1 thread", "default threads", "batch 8".

One place, so a legend, a tick label and a table row never spell the same configuration differently
(no "t1", "tNone" or "b1"). No imports: the device side uses it too.
"""

from __future__ import annotations

from typing import Iterable


def threads_label(threads: int | None) -> str:
    """'1 thread', '4 threads'; None (the backend's own default) is 'default threads'."""
    if threads is None:
        return "default threads"
    return f"{threads} thread" if threads == 1 else f"{threads} threads"


def batch_label(batch: int) -> str:
    return f"batch {batch}"


def show_batch(batches: Iterable[int | None]) -> bool:
    """Whether labels need the batch: only when some configuration is not batch 1."""
    return any(b not in (None, 1) for b in batches)


def config_label(*parts: str, threads: int | None, batch: int | None = None) -> str:
    """'model.onnx onnxruntime (1 thread)'; '(2 threads, batch 8)' when a batch is given."""
    run = threads_label(threads) + (f", {batch_label(batch)}" if batch is not None else "")
    text = " ".join(p for p in parts if p)
    return f"{text} ({run})" if text else run
