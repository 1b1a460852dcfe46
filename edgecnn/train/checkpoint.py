"""Checkpoints are data, never code: a dict of tensors and plain values, loadable with
`torch.load(weights_only=True)`, holding everything needed to rebuild the model.

    {"format": "edgecnn.checkpoint/1",
     "model": {"name": "lenet5", "num_classes": 10, "in_channels": 1, "options": {...}},
     "structure": None | {...}   # set by pruning: per-layer shapes to rebuild a pruned net
     "state_dict": {...},
     "classes": [...], "input": {manifest `input` block: height, width, channels, color, ...},
     "dataset": "digits", "epoch": 12, "metrics": {"val_acc": .., "test_acc": ..},
     "train_args": {...}, "created": "...", "edgecnn_version": "...",
     "resume": {optimizer, scheduler, rng states}   # last.pt only
    }
"""

from __future__ import annotations

import io
import os
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .. import __version__
from ..errors import EdgeCNNError
from ..models import build_model
from ..utils import atomic_write_bytes, first_line

FORMAT = "edgecnn.checkpoint/1"

# Hook for the compress area: rebuild a model whose layer shapes differ from the registry's
# (pruned). Called as fn(model, ckpt) -> model when ckpt["structure"] is set.
STRUCTURE_LOADERS: dict[str, Callable[[nn.Module, dict], nn.Module]] = {}


def make_checkpoint(model: nn.Module, *, name: str, num_classes: int, in_channels: int, options: dict,
                    classes: list[str], input_spec: dict, dataset: str, **extra: Any) -> dict:
    """Assemble a checkpoint dict (state_dict moved to CPU)."""
    sd = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    ckpt = {
        "format": FORMAT,
        "model": {"name": name, "num_classes": num_classes, "in_channels": in_channels, "options": dict(options)},
        "structure": None,
        "state_dict": sd,
        "classes": list(classes),
        "input": dict(input_spec),
        "dataset": dataset,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "edgecnn_version": __version__,
    }
    ckpt.update(extra)
    return ckpt


def save_checkpoint(ckpt: dict, path: str | os.PathLike) -> None:
    """Write atomically: an interrupted save never leaves a truncated checkpoint."""
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    atomic_write_bytes(path, buf.getvalue())


def _load_failure(e: Exception) -> str:
    """The useful part of torch.load's (multi-paragraph) error, as a short clause."""
    text = str(e)
    if "Unsupported global" in text:  # a pickle that would construct arbitrary objects: never loaded
        name = text.split("Unsupported global:", 1)[1].split()[1] if "Unsupported global: GLOBAL" in text else "?"
        return f"foreign: it pickles the Python object {name}, and edgecnn loads only tensors and plain data"
    if "Unsupported operand" in text or "invalid load key" in text:
        return "corrupt, or not a PyTorch file at all"
    if "central directory" in text or "PytorchStreamReader" in text or "Errno 22" in text:
        return "truncated or corrupt archive"
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    return f"corrupt, truncated or foreign: {first[:120]}"


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load and validate a checkpoint dict; one clear EdgeCNNError for anything else."""
    p = Path(path)
    if not p.exists():
        raise EdgeCNNError(f"checkpoint not found: {p}")
    if p.is_dir():
        raise EdgeCNNError(f"{p}: is a directory, expected a checkpoint file (.pt)")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # random bytes make the unpickler raise anything (IndexError, KeyError, ...)
        raise EdgeCNNError(f"{p}: not a readable edgecnn checkpoint ({_load_failure(e)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise EdgeCNNError(f"{p}: not an edgecnn checkpoint (no '{FORMAT}' format tag)")
    for key in ("model", "state_dict", "classes", "input"):
        if key not in ckpt:
            raise EdgeCNNError(f"{p}: checkpoint lacks '{key}'")
    return ckpt


def model_from_checkpoint(ckpt: dict) -> nn.Module:
    """Rebuild the nn.Module described by a checkpoint dict and load its weights (eval mode)."""
    m = ckpt["model"]
    if ckpt.get("program") is not None:  # portable checkpoint of any module (edgecnn.train.portable)
        from .program import module_from_program

        return module_from_program(ckpt["program"])
    model = build_model(m["name"], m["num_classes"], m["in_channels"], **m.get("options", {}))
    structure = ckpt.get("structure")
    if structure:
        kind = structure.get("kind", "")
        if kind == "pruned" and kind not in STRUCTURE_LOADERS:
            from ..compress.structure import rebuild_pruned  # structure imports nothing of train: no circle

            STRUCTURE_LOADERS[kind] = rebuild_pruned
        if kind not in STRUCTURE_LOADERS:
            raise EdgeCNNError(f"checkpoint has structure kind '{kind}' that this edgecnn cannot rebuild")
        model = STRUCTURE_LOADERS[kind](model, ckpt)
    state = OrderedDict(ckpt["state_dict"])
    # The checkpoint keeps plain tensors; modules that version their state (torchvision's MNASNet
    # refuses a state without a version) get the metadata of the model just built by this code.
    state._metadata = getattr(model.state_dict(), "_metadata", None)  # type: ignore[attr-defined]
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise EdgeCNNError(f"checkpoint weights do not fit model '{m['name']}': {first_line(e, 300)}") from None
    return model.eval()


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """(model in eval mode, checkpoint dict) from a checkpoint file."""
    ckpt = read_checkpoint(path)
    return model_from_checkpoint(ckpt), ckpt
