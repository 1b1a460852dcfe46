"""The one thread rule, for host (torch) and device (inference backends). No torch import here.

    N = usable_cores()      # physical cores this process may run on (CPU affinity, cgroup-free count)

Device side (inference): a backend always gets an explicit thread count. `Classifier` with the
default backend/precision MEASURES 1, N/2 and N threads (`edgecnn.runtime.tune`) and keeps the fastest;
when backend and precision are both given and threads is not, it uses `runtime_threads()` = N.
Backends' own defaults differ (onnxruntime: physical cores, LiteRT: its build's default), which is
why none is left to them.

Host side (torch: train, prune, QAT, eval): `host_threads()` = max(1, N // 2), set once when an
edgecnn host API starts its work (`apply_host_threads`), unless the user chose: OMP_NUM_THREADS /
MKL_NUM_THREADS in the environment, or torch.set_num_threads called with another value before.
Why half: measured on a shared 2-core machine, 2 intra-op threads made LeNet-5 training steps
10-25x slower than 1 while another process was busy (OpenMP threads spin-wait on a descheduled
sibling), and pruning's fine-tuning in `edgecnn demo` took 45 s an epoch instead of 1.5 s.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

T = TypeVar("T")

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _cpuinfo_physical(text: str) -> int | None:
    """Distinct (physical id, core id) pairs in /proc/cpuinfo; None when the file does not list them."""
    cores: set[tuple[str, str]] = set()
    phys = core = None
    for line in text.splitlines() + [""]:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            phys = value.strip()
        elif key == "core id":
            core = value.strip()
        elif not line.strip():
            if core is not None:
                cores.add((phys or "0", core))
            phys = core = None
    return len(cores) or None


def physical_cores() -> int:
    """Physical cores of this machine (hyper-threads not counted); os.cpu_count() where unknown."""
    try:
        n = _cpuinfo_physical(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        n = None
    return n or os.cpu_count() or 1


def usable_cores() -> int:
    """Physical cores this process may use: the physical count, capped by the CPU affinity mask."""
    logical = os.cpu_count() or 1
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = logical
    phys = physical_cores()
    # With SMT, a mask of k logical CPUs holds about k * phys / logical physical cores.
    return max(1, min(phys, round(allowed * phys / logical) if allowed < logical else phys))


def runtime_threads() -> int:
    """Inference threads when the caller names backend and precision but not threads: all usable cores."""
    return usable_cores()


def candidate_threads() -> list[int]:
    """Thread counts the automatic choice measures: 1, N/2 and N (deduplicated, ascending)."""
    n = usable_cores()
    return sorted({1, max(1, (n + 1) // 2), n})


def sweep_threads() -> list[int]:
    """`edgecnn tune`'s default sweep: powers of two up to N, and N."""
    n, out, t = usable_cores(), [], 1
    while t < n:
        out.append(t)
        t *= 2
    return [*out, n]


def host_threads() -> int:
    """torch intra-op threads for edgecnn's host work: half the usable physical cores, at least 1."""
    return max(1, usable_cores() // 2)


def user_chose_threads(torch: Any) -> bool:
    """The environment or an earlier torch.set_num_threads chose torch's thread count.

    torch's own default is the physical (or logical) core count; any other value was set by someone.
    """
    if any(os.environ.get(v) for v in THREAD_ENV_VARS):
        return True
    return torch.get_num_threads() not in (physical_cores(), os.cpu_count() or 1)


@contextlib.contextmanager
def apply_host_threads(threads: int | None = None) -> Iterator[int]:
    """Set torch's intra-op threads for one host API call, restoring the caller's count afterwards.

    `threads` given: exactly that. Else `host_threads()`, unless the user chose (see `user_chose_threads`).
    """
    import torch

    previous = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            from .errors import EdgeCNNError

            raise EdgeCNNError(f"threads must be at least 1, got {threads}")
        want = threads
    elif user_chose_threads(torch):
        want = previous
    else:
        want = host_threads()
    if want != previous:
        torch.set_num_threads(want)
    try:
        yield want
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def with_host_threads(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorator for host API entry points (prune, QAT, compress): the whole call under `apply_host_threads()`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        with apply_host_threads():
            return fn(*args, **kwargs)

    return wrapper
