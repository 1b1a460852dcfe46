"""Pruning and QAT of a live nn.Module (the user's own), from Python.

    pruned = edgecnn.prune_model(model, 0.5, data="fashion-mnist", input_size=(1, 28, 28),
                                 mean=[0.286], std=[0.353], finetune_epochs=2)
    qat = edgecnn.qat_model(pruned, data="fashion-mnist", input_size=(1, 28, 28), mean=[0.286], std=[0.353])

Both reuse edgecnn.compress (torch-pruning channel pruning, torchao pt2e QAT) and the training loop
(`edgecnn.train.trainer.fit`); they need the live module because they change or retrain it.
`data` is a dataset name or (uint8 images, labels) arrays, as for `export_model`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..errors import EdgeCNNError
from ..utils import first_line

# Fine-tuning a user's module: Adam at lr/3 (see compress.common.finetune_hyperparameters).
_USER_TRAIN_ARGS = {"optimizer": "adam", "lr": 1e-3, "batch_size": 64, "weight_decay": 1e-4}


def _context(model: nn.Module, data: Any, input_size: Sequence[int], mean: Sequence[float],
             std: Sequence[float], classes: Sequence[str] | None, color: str | None, resize: str):
    """(dataset, a checkpoint-shaped dict the compress helpers read) for a live module."""
    from ..export.module import as_dataset
    from ..train.program import input_spec

    spec = input_spec(input_size, mean, std, color, resize)
    with torch.no_grad():
        n_out = model.eval()(torch.zeros(1, spec["channels"], spec["height"], spec["width"])).shape[1]
    names = [str(c) for c in classes] if classes is not None else [str(i) for i in range(n_out)]
    ds = None
    if data is not None:
        ds, _ = as_dataset(data, "train", names, spec["channels"], what="data", need_labels=True)
        if len(ds.classes) != n_out:
            raise EdgeCNNError(f"data has {len(ds.classes)} classes, the model outputs {n_out}")
    ckpt = {"input": spec, "model": {"name": type(model).__name__}, "train_args": dict(_USER_TRAIN_ARGS),
            "classes": names}
    return ds, ckpt


def prune_model(model: nn.Module, ratio: float, data: Any = None, *, input_size: Sequence[int],
                mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,), classes: Sequence[str] | None = None,
                color: str | None = None, resize: str = "stretch", finetune_epochs: int = 0, method: str = "l1",
                iterative: int = 1, round_to: int | None = None, ignore: Sequence[str] = (),
                lr: float | None = None, train_limit: int | None = None,
                log: Callable[[str], None] = print) -> nn.Module:
    """Structured channel pruning (torch-pruning) of a copy of `model`; the output layer is kept whole.

    With `data` and `finetune_epochs`, each round is fine-tuned on its training split (taylor
    importance also needs `data`). Returns the pruned module (eval mode); `model` is not changed.
    """
    from .common import example_input, finetune
    from .prune import PruneSettings, _taylor_batches
    from .prune import prune_model as prune_rounds

    settings = PruneSettings(ratio=ratio, method=method, iterative=iterative, round_to=round_to, ignore=list(ignore))
    settings.check()
    if (finetune_epochs or method == "taylor") and data is None:
        raise EdgeCNNError("fine-tuning and taylor importance need data= (a dataset name or (images, labels))")
    ds, ckpt = _context(model, data, input_size, mean, std, classes, color, resize)
    example = example_input(ckpt)

    def finetune_round(m: nn.Module, k: int) -> None:
        if finetune_epochs:
            finetune(m, ds, ckpt, finetune_epochs, lr=lr, train_limit=train_limit, progress=False)

    taylor = _taylor_batches(ds, ckpt["input"]) if method == "taylor" else None
    try:
        return prune_rounds(model, example, settings, finetune_round=finetune_round, taylor_batches=taylor, log=log)
    except EdgeCNNError:
        raise
    except Exception as e:  # torch-pruning cannot trace the dependency graph of some modules
        raise EdgeCNNError(f"torch-pruning cannot prune this module: {type(e).__name__}: {first_line(e)}") from None


def qat_model(model: nn.Module, data: Any, *, input_size: Sequence[int], mean: Sequence[float] = (0.0,),
              std: Sequence[float] = (1.0,), classes: Sequence[str] | None = None, color: str | None = None,
              resize: str = "stretch", epochs: int = 2, lr: float | None = None, train_limit: int | None = None,
              convert: bool = True) -> nn.Module:
    """Quantization-aware fine-tuning (torchao pt2e, the scheme of `edgecnn qat`) of a live module.

    Returns the int8 graph (`convert=True`, torchao's quantized reference graph: measure its accuracy
    in torch) or the fake-quantized prepared graph (`convert=False`).
    """
    from .qat import convert as convert_graph
    from .qat import qat_train

    ds, ckpt = _context(model, data, input_size, mean, std, classes, color, resize)
    prepared, _ = qat_train(model, ds, ckpt, epochs, lr=lr, train_limit=train_limit, progress=False)
    return convert_graph(prepared) if convert else prepared
