"""Unstructured magnitude pruning (torch.nn.utils.prune): zero the smallest weights across the network.

Labelled honestly: the tensors keep their shapes, so dense runtimes (onnxruntime, TFLite, TensorRT)
do the same work and latency does not improve. What shrinks is the COMPRESSED size (runs of zeros
deflate well), which matters for over-the-air updates and downloads. The report shows both.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from torch import nn
from torch.nn.utils import prune as torch_prune

from ..errors import EdgeCNNError
from ..threads import with_host_threads
from .prune import PruneSettings, ignored_modules
from .report import sparsity


def prunable_weights(model: nn.Module, ignore: list[str]) -> list[tuple[nn.Module, str]]:
    """(module, "weight") of every Conv2d/Linear except ignored layers and the output layer."""
    skip = {id(m) for m in ignored_modules(model, PruneSettings(ratio=0.5, ignore=ignore))}
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and id(m) not in skip]


def apply_masks(model: nn.Module, amount: float, ignore: list[str]) -> list[tuple[nn.Module, str]]:
    """Global L1 magnitude masks over all prunable weights (masks stay on during fine-tuning)."""
    if not 0.0 < amount < 1.0:
        raise EdgeCNNError(f"--ratio must be between 0 and 1 (exclusive), got {amount}")
    params = prunable_weights(model, ignore)
    if not params:
        raise EdgeCNNError("no Conv2d/Linear weights left to prune after --ignore")
    torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=amount)
    return params


def make_permanent(params: list[tuple[nn.Module, str]]) -> None:
    """Fold the masks into the weights: plain tensors with zeros, plain state_dict keys."""
    for module, name in params:
        torch_prune.remove(module, name)


@with_host_threads
def unstructured_checkpoint(checkpoint: str | os.PathLike, ratio: float, *, finetune_epochs: int,
                            out: str | os.PathLike, ignore: list[str] | None = None, data: str | None = None,
                            data_root: str | None = None, lr: float | None = None, train_limit: int | None = None,
                            eval_limit: int | None = None, threads: int = 1, report: bool = True,
                            log: Callable[[str], None] = print) -> Path:
    """`edgecnn prune --unstructured`: mask, fine-tune with masks, write sparse.pt and the report."""
    import copy

    from ..train.checkpoint import model_from_checkpoint, read_checkpoint, save_checkpoint
    from ..utils import staged_directory
    from .common import checkpoint_dataset, derived_checkpoint, finetune, test_accuracy

    if not 0.0 < ratio < 1.0:
        raise EdgeCNNError(f"--ratio must be between 0 and 1 (exclusive), got {ratio}")
    src = read_checkpoint(checkpoint)
    if src.get("qat"):
        raise EdgeCNNError(f"{checkpoint}: is a QAT checkpoint; prune the float checkpoint, then run QAT")
    model = model_from_checkpoint(src)
    ds = checkpoint_dataset(src, data, data_root)
    sparse = copy.deepcopy(model)
    params = apply_masks(sparse, ratio, ignore or [])
    if finetune_epochs:
        log(f"fine-tuning {finetune_epochs} epoch(s) with the masks fixed")
        finetune(sparse, ds, src, finetune_epochs, lr=lr, train_limit=train_limit)
    make_permanent(params)
    sparse.eval()
    measured = sparsity(sparse)
    acc = test_accuracy(sparse, ds, src["input"], eval_limit)
    ckpt = derived_checkpoint(sparse, src, structure=src.get("structure"), metrics={"test_acc": acc},
                              compress={"step": "unstructured", "ratio": ratio, "weight_sparsity": measured,
                                        "finetune_epochs": finetune_epochs, "source": str(checkpoint)})
    out = Path(out)
    with staged_directory(out) as stage:
        save_checkpoint(ckpt, stage / "sparse.pt")
        if report:
            from .report import compare_models, write_report

            rows = compare_models({"original": (model, src), "sparse": (sparse, ckpt)}, ds, threads=threads,
                                  eval_limit=eval_limit, log=log)
            write_report(stage, rows, title=f"{src['model']['name']}: unstructured magnitude pruning {ratio:.0%} "
                                            "(smaller zipped size; dense latency unchanged by design)")
    log(f"wrote {out / 'sparse.pt'}: {measured:.1%} of conv/linear weights are zero (test top-1 {acc:.4f})")
    return out / "sparse.pt"
