"""Name -> builder registry, so `edgecnn train NAME` works for every architecture."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..errors import EdgeCNNError
from . import lenet5, simplecnn, torchvision_models


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    description: str
    default_input_size: int  # square input side the model is designed for
    # extra constructor args it accepts (width_mult, small_input, pretrained; input_size: a classifier
    # sized for the input side)
    options: tuple[str, ...] = ()


_TV_OPTS = ("width_mult", "small_input", "pretrained")

MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec("lenet5", lenet5.lenet5, "LeNet-5 (1998), 32x32 input", 32, ("input_size",)),
        ModelSpec("simplecnn", simplecnn.simplecnn, "3-conv CNN of the PyTorch CIFAR-10 tutorial", 32,
                  ("input_size",)),
        ModelSpec("mobilenet_v2", torchvision_models.mobilenet_v2, "MobileNetV2 (torchvision)", 224, _TV_OPTS),
        ModelSpec(
            "mobilenet_v3_small", torchvision_models.mobilenet_v3_small, "MobileNetV3-small (torchvision)", 224, _TV_OPTS
        ),
        ModelSpec("resnet18", torchvision_models.resnet18, "ResNet-18 (torchvision)", 224, _TV_OPTS),
    )
}


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise EdgeCNNError(f"unknown model '{name}'; choose one of: {', '.join(MODELS)}")
    return MODELS[name]


def build_model(name: str, num_classes: int, in_channels: int, **options) -> nn.Module:
    """Build a registered model. Unsupported options (e.g. width_mult for lenet5) are an error."""
    spec = get_spec(name)
    opts = {k: v for k, v in options.items() if v is not None}
    unknown = [k for k, v in opts.items() if k not in spec.options and v not in (False, 1.0)]
    if unknown:
        raise EdgeCNNError(f"model '{name}' does not take option(s): {', '.join(unknown)}")
    opts = {k: v for k, v in opts.items() if k in spec.options}
    return spec.builder(num_classes=num_classes, in_channels=in_channels, **opts)


def input_size_for(name: str, small_input: bool = False, img_size: int | None = None) -> int:
    """The square input side a model is trained and exported at."""
    if img_size:
        return img_size
    spec = get_spec(name)
    return 32 if small_input else spec.default_input_size


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass (conv and linear layers), measured with hooks."""
    import torch

    total = 0

    def conv_hook(m: nn.Conv2d, inp, out):
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += out.numel() // out.shape[0] * k

    def linear_hook(m: nn.Linear, inp, out):
        nonlocal total
        total += out.numel() // out.shape[0] * m.in_features

    hooks = []
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            hooks.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            hooks.append(mod.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return total
