"""Transfer learning from a weights file on disk (`edgecnn train NAME --weights PATH`).

Accepted files (read with `torch.load(weights_only=True)`: data, never code):
- a plain state_dict, e.g. torchvision's `mobilenet_v2-7ebf99e0.pth` downloaded elsewhere;
- an edgecnn checkpoint (`best.pt`/`last.pt`) of the same architecture;
- a dict holding the state_dict under "state_dict", "model_state_dict" or "model" (common own
  checkpoints); DataParallel/DDP "module." prefixes are removed.

Every tensor but the classifier must match the model by name and shape; the first one that does
not is named in one error line. The classifier (the last Linear layer) is kept when its shape fits
the new classes and replaced (freshly initialised) otherwise. A 3-channel stem loaded into a
1-channel model is summed over its input channels (grey input sees R = G = B).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import EdgeCNNError
from .checkpoint import FORMAT, _load_failure

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_CLASSES = 1000


@dataclass
class TransferInfo:
    path: Path
    kind: str  # "edgecnn" (an edgecnn checkpoint) or "state_dict"
    loaded: int  # tensors copied into the model
    head: str  # the classifier's module name, e.g. "classifier.3" or "fc"
    head_replaced: bool
    source_classes: int | None  # the file's classifier outputs
    imagenet: bool  # a 1000-class file: ImageNet weights, so ImageNet normalization
    source_input: dict | None = None  # the edgecnn checkpoint's input block (size, mean/std)
    notes: list[str] = field(default_factory=list)


def classifier_name(model: nn.Module) -> str:
    """Name of the model's last nn.Linear (its classifier head)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise EdgeCNNError("the model has no Linear classifier layer to replace")
    return names[-1]


def read_weights(path: str | os.PathLike, model_name: str) -> tuple[dict[str, torch.Tensor], dict | None]:
    """(state_dict, the edgecnn checkpoint dict or None) from a weights file; one clear error otherwise."""
    p = Path(path)
    if not p.is_file():
        raise EdgeCNNError(f"weights file not found: {p}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # random bytes make the unpickler raise anything
        raise EdgeCNNError(f"{p}: not a readable weights file ({_load_failure(e)})") from None
    ckpt = None
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        ckpt = obj
        src = (obj.get("model") or {}).get("name")
        if src != model_name:
            raise EdgeCNNError(f"{p}: is an edgecnn '{src}' checkpoint, not '{model_name}' (other architecture)")
        if obj.get("structure"):
            raise EdgeCNNError(f"{p}: is a pruned checkpoint (its layers are not {model_name}'s); "
                               "fine-tune it with `edgecnn prune --finetune-epochs` instead")
        obj = obj["state_dict"]
    elif isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise EdgeCNNError(f"{p}: holds no state_dict (a dict of tensor names to tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}, ckpt


def _shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(d) for d in t.shape) + "]"


def input_defaults(state: dict[str, torch.Tensor], ckpt: dict | None, channels: int) -> dict:
    """What the fine-tuning input should be for these weights: {"size", "mean", "std", "why"} (None = keep).

    ImageNet weights (a 1000-class plain state_dict, torchvision's files) expect 224 px and ImageNet
    normalization; an edgecnn checkpoint its own input block (when the channel count is the same).
    """
    if ckpt is not None:
        inp = ckpt["input"]
        same = int(inp.get("channels", 0)) == channels
        return {"size": int(inp["height"]), "mean": tuple(inp["mean"]) if same else None,
                "std": tuple(inp["std"]) if same else None, "why": "the source checkpoint's input"}
    last = [v for v in state.values() if v.ndim == 2]
    if last and last[-1].shape[0] == IMAGENET_CLASSES:
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else \
            ((sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,))
        return {"size": 224, "mean": tuple(mean), "std": tuple(std), "why": "ImageNet weights"}
    return {"size": None, "mean": None, "std": None, "why": ""}


def load_transfer_weights(model: nn.Module, path: str | os.PathLike, model_name: str,
                          preloaded: tuple[dict[str, torch.Tensor], dict | None] | None = None,
                          classes: list[str] | None = None) -> TransferInfo:
    """Copy a weights file into `model` (in place) for fine-tuning; see the module docstring.

    `preloaded` is `read_weights(path, model_name)`'s result when the caller already has it.
    `classes`: the new class names; an edgecnn checkpoint's classifier is kept only for the same names.
    """
    state, ckpt = preloaded or read_weights(path, model_name)
    p = Path(path)
    target = model.state_dict()
    head = classifier_name(model)
    head_keys = {f"{head}.weight", f"{head}.bias"}
    first_conv = next((k for k, v in target.items() if v.ndim == 4), None)
    notes: list[str] = []
    new: dict[str, torch.Tensor] = {}
    for key, want in target.items():
        if key in head_keys:
            continue
        if key not in state:
            if key.endswith("num_batches_tracked"):  # older torchvision files predate this buffer
                continue
            missing = [k for k in target if k not in state and k not in head_keys
                       and not k.endswith("num_batches_tracked")]
            k0 = next(iter(state))
            raise EdgeCNNError(f"{p}: does not fit model '{model_name}': it lacks tensor '{key}' {_shape(want)} "
                               f"({len(missing)} of the model's tensors missing; the file's first is '{k0}' "
                               f"{_shape(state[k0])}: other architecture?)")
        got = state[key]
        if got.shape != want.shape:
            if key == first_conv and got.ndim == 4 and got.shape[1] == 3 and want.shape[1] == 1 \
                    and got.shape[0] == want.shape[0] and got.shape[2:] == want.shape[2:]:
                got = got.sum(dim=1, keepdim=True)
                notes.append(f"RGB stem '{key}' summed to 1 channel")
            else:
                raise EdgeCNNError(f"{p}: does not fit model '{model_name}': first mismatching tensor '{key}': "
                                   f"file {_shape(got)} vs model {_shape(want)}")
        new[key] = got.to(want.dtype)
    extra = [k for k in state if k not in target and k not in head_keys]
    if extra:
        raise EdgeCNNError(f"{p}: does not fit model '{model_name}': the file has tensor '{extra[0]}' "
                           f"{_shape(state[extra[0]])} that the model lacks ({len(extra)} such; other architecture?)")
    w_key = f"{head}.weight"
    file_head = state.get(w_key)
    if file_head is None:
        raise EdgeCNNError(f"{p}: does not fit model '{model_name}': it lacks the classifier tensor '{w_key}'")
    model_head = target[w_key]
    if file_head.ndim != 2 or file_head.shape[1] != model_head.shape[1]:
        raise EdgeCNNError(f"{p}: does not fit model '{model_name}': first mismatching tensor '{w_key}': "
                           f"file {_shape(file_head)} vs model {_shape(model_head)} (features differ)")
    replaced = file_head.shape[0] != model_head.shape[0]
    if ckpt is not None and classes is not None and list(ckpt["classes"]) != list(classes):
        replaced = True  # same count, other classes (Fashion-MNIST -> digits): a fresh classifier
    if not replaced:
        for k in head_keys:
            if k in state:
                new[k] = state[k]
    model.load_state_dict(new, strict=False)
    return TransferInfo(path=p, kind="edgecnn" if ckpt else "state_dict", loaded=len(new), head=head,
                        head_replaced=replaced, source_classes=int(file_head.shape[0]),
                        imagenet=ckpt is None and int(file_head.shape[0]) == IMAGENET_CLASSES,
                        source_input=dict(ckpt["input"]) if ckpt else None, notes=notes)


def set_backbone_trainable(model: nn.Module, trainable: bool) -> int:
    """Freeze (or unfreeze) every parameter but the classifier's; returns how many tensors changed."""
    head = classifier_name(model) + "."
    n = 0
    for name, param in model.named_parameters():
        if not name.startswith(head) and param.requires_grad != trainable:
            param.requires_grad_(trainable)
            n += 1
    return n
