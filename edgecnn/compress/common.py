"""What pruning and QAT share: the checkpoint's data, fine-tuning through the trainer, accuracy."""

from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..data import Dataset, load_dataset
from ..errors import EdgeCNNError
from ..train.checkpoint import make_checkpoint


def checkpoint_dataset(ckpt: dict, data: str | None, data_root: str | None) -> Dataset:
    """The dataset to fine-tune and evaluate on: `data`, else the one the checkpoint was trained on."""
    if ckpt.get("program") is not None:  # a portable checkpoint holds a traced graph, not a trainable module
        raise EdgeCNNError("a portable checkpoint (edgecnn.save_checkpoint) stores a traced program, which "
                           "cannot be pruned or retrained; use edgecnn.prune_model / edgecnn.qat_model on the "
                           "live module from Python")
    name = data or ckpt.get("dataset")
    if not name:
        raise EdgeCNNError("checkpoint does not name its dataset; pass --data")
    ds = load_dataset(name, data_root, input_spec=ckpt.get("input"))
    if len(ds.classes) != ckpt["model"]["num_classes"]:
        raise EdgeCNNError(f"dataset '{name}' has {len(ds.classes)} classes but the checkpoint's model has "
                           f"{ckpt['model']['num_classes']}")
    return ds


def example_input(ckpt: dict, batch: int = 2) -> torch.Tensor:
    """A real-shaped (N, C, H, W) input for tracing, from the checkpoint's input spec."""
    spec = ckpt["input"]
    from ..preprocess import model_input_shape

    return torch.randn(batch, *model_input_shape(spec))


def finetune_hyperparameters(ckpt: dict, lr: float | None = None) -> dict[str, Any]:
    """The training run's optimizer at a third of its peak rate: fine-tuning repairs, it does not retrain."""
    from ..train.trainer import default_hyperparameters

    hp = default_hyperparameters(ckpt["model"]["name"])
    args = ckpt.get("train_args") or {}
    for key in ("optimizer", "batch_size", "weight_decay"):
        if args.get(key) is not None:
            hp[key] = args[key]
    hp["lr"] = lr if lr is not None else float(args.get("lr") or hp["lr"]) / 3
    return hp


def finetune(model: nn.Module, ds: Dataset, ckpt: dict, epochs: int, *, lr: float | None = None,
             train_limit: int | None = None, seed: int = 0, progress: bool = True,
             set_train_mode: Callable[[nn.Module, bool], Any] | None = None) -> list[dict]:
    """Fine-tune `model` in place with the project's training loop (`edgecnn.train.trainer.fit`).

    torch threads: `edgecnn.threads.apply_host_threads` (half the usable cores unless the caller chose),
    as the trainer and the CLI do: with torch's default on a busy 2-core machine an epoch took 30x longer.
    """
    from ..threads import apply_host_threads
    from ..train.trainer import fit

    hp = finetune_hyperparameters(ckpt, lr)
    with apply_host_threads():
        return fit(model, ds, ckpt["input"], epochs=epochs, lr=hp["lr"], optimizer=hp["optimizer"],
                   batch_size=hp["batch_size"], weight_decay=hp["weight_decay"], seed=seed, device="cpu",
                   train_limit=train_limit, progress=progress, set_train_mode=set_train_mode)


def test_accuracy(model: nn.Module, ds: Dataset, spec: dict, limit: int | None = None) -> float:
    """Top-1 on the test split, inputs preprocessed exactly as on the device."""
    from ..train.evaluate import evaluate

    split = "test" if "test" in ds.splits else "val"
    return float(evaluate(model, ds, split, spec, limit=limit)["top1"])


def test_arrays(ds: Dataset, spec: dict, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    from ..data import preprocessed

    split = "test" if "test" in ds.splits else "val"
    return preprocessed(ds, split, spec, limit)


def derived_checkpoint(model: nn.Module, source: dict, **extra: Any) -> dict:
    """A new checkpoint for `model` that keeps the source's identity (model, classes, input, data)."""
    m = source["model"]
    ckpt = make_checkpoint(model, name=m["name"], num_classes=m["num_classes"], in_channels=m["in_channels"],
                           options=m.get("options", {}), classes=source["classes"], input_spec=source["input"],
                           dataset=source.get("dataset"), train_args=copy.deepcopy(source.get("train_args")))
    ckpt.update(extra)
    return ckpt
