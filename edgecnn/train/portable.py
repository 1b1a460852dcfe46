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

KIND = "exported_program"
MAX_BATCH = 4096

__all__ = ["save_checkpoint", "load_checkpoint", "export_program", "module_from_program"]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


def export_program(model: nn.Module, spec: dict, num_classes: int) -> torch.export.ExportedProgram:
    """Trace `model` (eval mode) with torch.export for a dynamic batch; it must return (N, num_classes).

    ONNX and TFLite conversion both start from torch.export, so a module that fails here cannot be
    exported either: one clear error, before anything is written.
    """
    model.eval()
    x = torch.zeros(2, spec["channels"], spec["height"], spec["width"])
    try:
        with torch.no_grad():
            y = model(x)
    except Exception as e:
        raise EdgeCNNError(f"the model does not run on a {tuple(x.shape)} input: {type(e).__name__}: "
                           f"{_first_line(e)}") from None
    if not isinstance(y, torch.Tensor) or y.ndim != 2:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else ""
        raise EdgeCNNError(f"the model must return one (N, classes) tensor of logits, got {type(y).__name__}{shape}")
    if y.shape[1] != num_classes:
        raise EdgeCNNError(f"the model outputs {y.shape[1]} classes but `classes` names {num_classes}")
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    try:
        return torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    except Exception as e:
        raise EdgeCNNError(f"the model does not trace with torch.export (needed to export or store it as data): "
                           f"{type(e).__name__}: {_first_line(e)}") from None


def module_from_program(data: bytes) -> nn.Module:
    """The runnable module of a serialized ExportedProgram (eval semantics are baked into the graph)."""
    try:
        program = torch.export.load(io.BytesIO(data))
    except Exception as e:
        raise EdgeCNNError(f"the checkpoint's exported program does not load: {_first_line(e)}") from None
    module = program.module()
    # ExportedProgram.module() forbids .train()/.eval(); the graph was exported in eval mode (BatchNorm
    # uses running stats, dropout is gone), so the flags are inert: restore nn.Module's methods.
    for attr in ("train", "eval"):
        module.__dict__.pop(attr, None)
    return module


def save_checkpoint(model: nn.Module, path: str | os.PathLike, *, input_size: Sequence[int], classes: Sequence[str],
                    mean: Sequence[float], std: Sequence[float], color: str | None = None, resize: str = "stretch",
                    dataset: str | None = None, metrics: dict | None = None) -> Path:
    """Write a portable checkpoint of any classification module (atomically); returns the path.

    `dataset` names the data the model was trained on (e.g. "fashion-mnist", "folder:PATH"): `edgecnn
    export` and `edgecnn eval` verify on its test split by default.
    """
    from ..export.module import input_spec

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
