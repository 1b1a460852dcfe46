"""Hardening (issue 14): reproducible training in a shared test process, bad bundles, bad predict inputs,
verify without a checkpoint, artifact path confinement, the umask."""

from __future__ import annotations

import torch

from edgecnn.cli import main


def run_cli(*args) -> int:
    return main([str(a) for a in args])


# -- item 12: what ran before a test must not change its training ------------------------------------------

def test_train_seed_fixes_the_initial_weights_whatever_ran_before(tmp_path):
    """torch seeds its global RNG randomly per process and earlier tests consume it: the initial weights
    came from there, so the session's digits_ckpt (and every accuracy measured on it) changed run to run."""
    states = []
    for i, prior in enumerate((1, 2)):
        torch.manual_seed(prior)  # a different process history
        torch.rand(prior * 10)
        out = tmp_path / f"run{i}"
        assert run_cli("train", "lenet5", "--epochs", "1", "--train-limit", "128", "--seed", "5", "--out", out) == 0
        states.append(torch.load(out / "last.pt", weights_only=True)["state_dict"])
    for k, v in states[0].items():
        assert torch.equal(v, states[1][k]), k


def test_prune_cli_restores_the_thread_count(digits_ckpt, tmp_path):
    """`edgecnn prune` sets torch's threads for its measurements; in-process callers keep theirs."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert run_cli("prune", digits_ckpt, "--ratio", "0.3", "--finetune-epochs", "0", "--no-report",
                       "--out", tmp_path / "p") == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
