"""Portable checkpoints of any nn.Module: the model is stored as data, not as the user's code.

    edgecnn.save_checkpoint(model, "mynet.pt", input_size=(1, 28, 28), classes=names, mean=[0.286],
                            std=[0.353], dataset="fashion-mnist")
    edgecnn eval mynet.pt; edgecnn export mynet.pt --int8 --calib fashion-mnist; edgecnn verify ...

The module is traced with `torch.export` (eval mode, dynamic batch) and the serialized
ExportedProgram (`torch.export.save` to bytes) is stored inside an ordinary `edgecnn.checkpoint/1`
dict, which still loads with `torch.load(weights_only=True)`: the program is a graph of ATen ops
plus tensors, rebuilt by `torch.export.load`, never unpickled Python objects. So `edgecnn eval |
verify | export | benchmark` work without the Python code that defined the model. Training,
pruning and QAT need the live module: `edgecnn.prune_model` / `edgecnn.qat_model` from Python.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .. import __version__
from ..errors import EdgeCNNError
from .checkpoint import FORMAT, load_checkpoint
from .checkpoint import save_checkpoint as _write
from .program import export_program, input_spec, module_from_program

KIND = "exported_program"

__all__ = ["save_checkpoint", "load_checkpoint", "export_program", "module_from_program"]


def save_checkpoint(model: nn.Module, path: str | os.PathLike, *, input_size: Sequence[int], classes: Sequence[str],
                    mean: Sequence[float], std: Sequence[float], color: str | None = None, resize: str = "stretch",
                    dataset: str | None = None, metrics: dict | None = None) -> Path:
    """Write a portable checkpoint of any classification module (atomically); returns the path.

    `dataset` names the data the model was trained on (e.g. "fashion-mnist", "folder:PATH"): `edgecnn
    export` and `edgecnn eval` verify on its test split by default.
    """
    if not isinstance(model, nn.Module):
        raise EdgeCNNError(f"save_checkpoint takes a torch.nn.Module, got {type(model).__name__}")
    classes = [str(c) for c in classes]
    spec = input_spec(input_size, mean, std, color, resize)
    was_training = model.training
    try:
        program = export_program(model, spec, len(classes))
    finally:
        model.train(was_training)
    buf = io.BytesIO()
    torch.export.save(program, buf)
    from datetime import datetime, timezone

    ckpt = {
        "format": FORMAT,
        "model": {"name": type(model).__name__, "num_classes": len(classes), "in_channels": spec["channels"],
                  "options": {}, "kind": KIND, "module": f"{type(model).__module__}.{type(model).__qualname__}"},
        "structure": None,
        "state_dict": {},  # the weights live in the program
        "program": buf.getvalue(),
        "classes": classes,
        "input": spec,
        "dataset": dataset or "",
        "metrics": dict(metrics or {}),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "edgecnn_version": __version__,
    }
    _write(ckpt, path)
    return Path(path)
