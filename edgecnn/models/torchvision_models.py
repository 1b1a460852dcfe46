"""torchvision architectures (MobileNetV2, MobileNetV3-small, ResNet-18) for edge classification.

`small_input=True` adapts them to 28-32 px images by removing early strides (total stride 8
instead of 32), the usual CIFAR-style variant; otherwise they behave as at 224 px.
`in_channels=1` replaces the stem with a 1-channel conv (pretrained RGB kernels are summed).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torchvision import models as tvm

from ..errors import EdgeCNNError


def _replace_stem(conv: nn.Conv2d, in_channels: int, stride: int | None = None,
                  kernel_size: int | None = None, padding: int | None = None) -> nn.Conv2d:
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=kernel_size or conv.kernel_size,
        stride=stride or conv.stride,
        padding=conv.padding if padding is None else padding,
        bias=conv.bias is not None,
    )
    if kernel_size is None and new.weight.shape[2:] == conv.weight.shape[2:]:
        with torch.no_grad():
            w = conv.weight
            if in_channels != w.shape[1]:
                # Grey input sees R=G=B, so the summed RGB kernel gives the same response.
                w = w.sum(dim=1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels
            new.weight.copy_(w)
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
    return new


def _weights(builder_name: str, pretrained: bool):
    if not pretrained:
        return None
    return tvm.get_model_weights(builder_name).DEFAULT


def _build(builder: Callable, builder_name: str, pretrained: bool, **kwargs) -> nn.Module:
    weights = _weights(builder_name, pretrained)
    try:
        return builder(weights=weights, **kwargs)
    except (OSError, RuntimeError) as e:  # URLError is an OSError
        if pretrained:
            url = getattr(weights, "url", "")
            raise EdgeCNNError(
                f"--pretrained downloads torchvision's {builder_name} ImageNet weights ({url}) and that failed "
                f"(offline? {type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}); fetch the file "
                "elsewhere and pass --weights FILE, or train without --pretrained"
            ) from None
        raise


def mobilenet_v2(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0,
                 small_input: bool = False, pretrained: bool = False) -> nn.Module:
    kwargs: dict = {}
    if pretrained and width_mult != 1.0:
        raise EdgeCNNError("pretrained MobileNetV2 weights exist only for --width-mult 1.0")
    if not pretrained:
        kwargs = {"num_classes": num_classes, "width_mult": width_mult}
        if small_input:
            # CIFAR-style: stride 1 in the stem and the first 24-channel stage.
            kwargs["inverted_residual_setting"] = [
                [1, 16, 1, 1], [6, 24, 2, 1], [6, 32, 3, 2], [6, 64, 4, 2],
                [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1],
            ]
    m = _build(tvm.mobilenet_v2, "mobilenet_v2", pretrained, **kwargs)
    if pretrained:
        if small_input:
            m.features[2].conv[1][0].stride = (1, 1)  # first stride-2 depthwise conv
        m.classifier[-1] = nn.Linear(m.classifier[-1].in_features, num_classes)
    stem = m.features[0][0]
    if in_channels != 3 or small_input:
        m.features[0][0] = _replace_stem(stem, in_channels, stride=1 if small_input else None)
    return m


def mobilenet_v3_small(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0,
                       small_input: bool = False, pretrained: bool = False) -> nn.Module:
    if pretrained and width_mult != 1.0:
        raise EdgeCNNError("pretrained MobileNetV3-small weights exist only for --width-mult 1.0")
    kwargs = {} if pretrained else {"num_classes": num_classes, "width_mult": width_mult}
    m = _build(tvm.mobilenet_v3_small, "mobilenet_v3_small", pretrained, **kwargs)
    if pretrained:
        m.classifier[-1] = nn.Linear(m.classifier[-1].in_features, num_classes)
    if small_input:
        m.features[1].block[0][0].stride = (1, 1)  # first depthwise conv (stride 2 at 224 px)
    if in_channels != 3 or small_input:
        m.features[0][0] = _replace_stem(m.features[0][0], in_channels, stride=1 if small_input else None)
    return m


def resnet18(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0,
             small_input: bool = False, pretrained: bool = False) -> nn.Module:
    if width_mult != 1.0:
        raise EdgeCNNError("resnet18 does not support --width-mult")
    kwargs = {} if pretrained else {"num_classes": num_classes}
    m = _build(tvm.resnet18, "resnet18", pretrained, **kwargs)
    if pretrained:
        m.fc = nn.Linear(m.fc.in_features, num_classes)
    if small_input:
        m.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        m.maxpool = nn.Identity()
    elif in_channels != 3:
        m.conv1 = _replace_stem(m.conv1, in_channels)
    return m
