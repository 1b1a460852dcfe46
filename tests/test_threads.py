"""The one thread rule (edgecnn/threads.py): host torch work and device backends, API as CLI."""

from __future__ import annotations

import os

import pytest
import torch

from edgecnn import threads as th
from edgecnn.errors import EdgeCNNError


def test_core_counts_and_candidates_follow_the_rule():
    n = th.usable_cores()
    assert 1 <= n <= (os.cpu_count() or 1) and n <= th.physical_cores()
    assert th.candidate_threads() == sorted({1, max(1, (n + 1) // 2), n})
    sweep = th.sweep_threads()
    assert sweep[0] == 1 and sweep[-1] == n and sweep == sorted(set(sweep))
    assert th.host_threads() == max(1, n // 2) and th.runtime_threads() == n


def test_cpuinfo_physical_counts_cores_not_hyperthreads():
    # two sockets x two cores x two hyper-threads: 8 logical CPUs, 4 physical cores
    blocks = [f"processor\t: {i}\nphysical id\t: {i // 4}\ncore id\t\t: {(i // 2) % 2}\n" for i in range(8)]
    assert th._cpuinfo_physical("\n".join(blocks)) == 4
    assert th._cpuinfo_physical("processor\t: 0\nmodel name\t: ARMv8\n") is None  # no topology: unknown


def test_apply_host_threads_sets_and_restores(monkeypatch):
    for var in th.THREAD_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(th.physical_cores())  # torch's own default: nobody chose
        with th.apply_host_threads() as n:
            assert n == th.host_threads() == torch.get_num_threads()
        assert torch.get_num_threads() == th.physical_cores()
        with th.apply_host_threads(threads=1):
            assert torch.get_num_threads() == 1
        with pytest.raises(EdgeCNNError, match="threads must be at least 1"):
            with th.apply_host_threads(threads=0):
                pass
    finally:
        torch.set_num_threads(before)


def test_a_users_choice_is_left_alone(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        torch.set_num_threads(th.physical_cores())
        with th.apply_host_threads():
            assert torch.get_num_threads() == th.physical_cores()
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
        odd = th.physical_cores() + 3  # neither the physical nor the logical count: set by someone
        torch.set_num_threads(odd)
        with th.apply_host_threads():
            assert torch.get_num_threads() == odd
    finally:
        torch.set_num_threads(before)


def test_prune_api_runs_under_the_host_rule(digits_ckpt, tmp_path, monkeypatch):
    """The Python API applies the rule as the CLI does (the demo's pruning ran 30x slower without it)."""
    from edgecnn.compress import common
    from edgecnn.compress.prune import PruneSettings, prune_checkpoint

    for var in th.THREAD_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    seen = []
    real = common.finetune

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(common, "finetune", spy)  # prune_checkpoint imports it at call time
    before = torch.get_num_threads()
    torch.set_num_threads(th.physical_cores())
    try:
        prune_checkpoint(digits_ckpt, PruneSettings(ratio=0.2), finetune_epochs=1, out=tmp_path / "p",
                         data="digits", eval_limit=200, report=False, log=lambda m: None)
        assert seen and all(n == th.host_threads() for n in seen)
        assert torch.get_num_threads() == th.physical_cores()  # the caller's count is back
    finally:
        torch.set_num_threads(before)
