"""Pruned checkpoints stay data: the per-layer shapes are recorded, and the model is rebuilt from them.

A pruned network differs from its registry architecture only in the sizes of its Conv2d,
BatchNorm2d and Linear layers (torch-pruning removes channels; it never adds or reorders layers).
So the checkpoint keeps `structure = {"kind": "pruned", "layers": {qualified name: shape record}}`,
and `rebuild_pruned` builds the registry model, then swaps in layers of the recorded shapes (the checkpoint reader calls
it for `structure.kind == "pruned"`; this module imports nothing of `train`, so there is no circle). The
state_dict then loads with `torch.load(weights_only=True)`: no pickled modules, no code.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import EdgeCNNError

KIND = "pruned"


def layer_record(module: nn.Module) -> dict[str, Any] | None:
    """The constructor arguments that fix a layer's parameter shapes (None for other layer types)."""
    if isinstance(module, nn.Conv2d):
        return {
            "type": "Conv2d",
            "in_channels": module.in_channels,
            "out_channels": module.out_channels,
            "kernel_size": list(module.kernel_size),
            "stride": list(module.stride),
            "padding": list(module.padding) if not isinstance(module.padding, str) else module.padding,
            "dilation": list(module.dilation),
            "groups": module.groups,
            "bias": module.bias is not None,
            "padding_mode": module.padding_mode,
        }
    if isinstance(module, nn.BatchNorm2d):
        return {
            "type": "BatchNorm2d",
            "num_features": module.num_features,
            "eps": module.eps,
            "momentum": module.momentum,
            "affine": module.affine,
            "track_running_stats": module.track_running_stats,
        }
    if isinstance(module, nn.Linear):
        return {"type": "Linear", "in_features": module.in_features, "out_features": module.out_features,
                "bias": module.bias is not None}
    return None


def record_structure(model: nn.Module, **info: Any) -> dict:
    """`ckpt["structure"]` for a pruned model: every Conv2d/BatchNorm2d/Linear shape, plus `info`."""
    layers = {}
    for name, module in model.named_modules():
        rec = layer_record(module)
        if rec is not None:
            layers[name] = rec
    return {"kind": KIND, "layers": layers, **info}


def _build_layer(rec: dict) -> nn.Module:
    kind = rec.get("type")
    if kind == "Conv2d":
        padding = rec["padding"] if isinstance(rec["padding"], str) else tuple(rec["padding"])
        return nn.Conv2d(rec["in_channels"], rec["out_channels"], tuple(rec["kernel_size"]),
                         stride=tuple(rec["stride"]), padding=padding, dilation=tuple(rec["dilation"]),
                         groups=rec["groups"], bias=rec["bias"], padding_mode=rec["padding_mode"])
    if kind == "BatchNorm2d":
        return nn.BatchNorm2d(rec["num_features"], eps=rec["eps"], momentum=rec["momentum"],
                              affine=rec["affine"], track_running_stats=rec["track_running_stats"])
    if kind == "Linear":
        return nn.Linear(rec["in_features"], rec["out_features"], bias=rec["bias"])
    raise EdgeCNNError(f"pruned structure names an unknown layer type '{kind}'")


def rebuild_pruned(model: nn.Module, ckpt: dict) -> nn.Module:
    """STRUCTURE_LOADERS["pruned"]: give the registry `model` the layer shapes recorded in `ckpt`."""
    layers = (ckpt.get("structure") or {}).get("layers")
    if not isinstance(layers, dict):
        raise EdgeCNNError("pruned checkpoint has no 'structure.layers' record")
    modules = dict(model.named_modules())
    for name, rec in layers.items():
        old = modules.get(name)
        if old is None or type(old).__name__ != rec.get("type"):
            raise EdgeCNNError(f"pruned structure names layer '{name}' ({rec.get('type')}) that model "
                               f"'{ckpt['model']['name']}' does not have")
        parent_name, _, attr = name.rpartition(".")
        parent = modules[parent_name] if parent_name else model
        new = _build_layer(rec)
        new.train(old.training)
        setattr(parent, attr, new)
    return model

