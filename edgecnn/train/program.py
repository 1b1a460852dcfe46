"""A model as data: `torch.export` programs (shared by portable checkpoints and export_model).

`export_program` traces a module for a dynamic batch (one clear error when it cannot be traced);
`module_from_program` turns serialized program bytes back into a runnable module. Imports only
torch and the bundle's input rules, so `train.checkpoint` can use it without an import circle.
"""

from __future__ import annotations

import io
from typing import Sequence

import torch
from torch import nn

from ..errors import EdgeCNNError
from ..utils import first_line

MAX_BATCH = 4096


def input_spec(input_size: Sequence[int], mean: Sequence[float], std: Sequence[float], color: str | None,
               resize: str) -> dict:
    """The manifest `input` block, checked like the bundle reader checks it."""
    from ..bundle import validate_input

    if len(input_size) != 3:
        raise EdgeCNNError(f"input_size must be (C, H, W), got {tuple(input_size)}")
    c, h, w = (int(v) for v in input_size)
    color = color or ("GRAY" if c == 1 else "RGB")
    spec = {"height": h, "width": w, "channels": c, "color": color, "resize": resize, "interpolation": "area",
            "scale": 1.0 / 255.0, "mean": [float(m) for m in mean], "std": [float(s) for s in std]}
    return validate_input(spec, "export_model")  # the input rules live in one place: the bundle reader's


def export_program(model: nn.Module, spec: dict, num_classes: int) -> torch.export.ExportedProgram:
    """Trace `model` (eval mode) with torch.export for a dynamic batch; it must return (N, num_classes).

    ONNX and TFLite conversion both start from torch.export, so a module that fails here cannot be
    exported either: one clear error, before anything is written.
    """
    model.eval()
    from ..preprocess import model_input_shape

    x = torch.zeros(2, *model_input_shape(spec))
    try:
        with torch.no_grad():
            y = model(x)
    except Exception as e:
        raise EdgeCNNError(f"the model does not run on a {tuple(x.shape)} input: {type(e).__name__}: "
                           f"{first_line(e)}") from None
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
                           f"{type(e).__name__}: {first_line(e)}") from None


def module_from_program(data: bytes) -> nn.Module:
    """The runnable module of a serialized ExportedProgram (eval semantics are baked into the graph)."""
    try:
        program = torch.export.load(io.BytesIO(data))
    except Exception as e:
        raise EdgeCNNError(f"the checkpoint's exported program does not load: {first_line(e)}") from None
    module = program.module()
    # ExportedProgram.module() forbids .train()/.eval(); the graph was exported in eval mode (BatchNorm
    # uses running stats, dropout is gone), so the flags are inert: restore nn.Module's methods.
    for attr in ("train", "eval"):
        module.__dict__.pop(attr, None)
    return module
