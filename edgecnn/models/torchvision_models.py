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
from ..utils import first_line


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
                f"(offline? {type(e).__name__}: {first_line(e, 100)}); fetch the file "
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


# ---------------------------------------------------------------------------------------------
# Every other torchvision classification builder, by name (registered on first use by the registry)

# Transformers fix their patch grid at construction: they take the input size instead of small_input
# (ViT as `image_size`, MaxViT as `input_size`, whose 7x7 partitions need a side that is a multiple of 224).
_IMAGE_SIZE_ARCHS = ("vit_", "maxvit_")
_NO_SMALL_INPUT = ("vit_", "swin_", "maxvit_")
# Output layer per family (for the registry's `classifier` field).
_CLASSIFIERS = (("resnet", "fc"), ("resnext", "fc"), ("wide_resnet", "fc"), ("regnet", "fc"),
                ("shufflenet", "fc"), ("googlenet", "fc"), ("inception", "fc"), ("squeezenet", "classifier.1"),
                ("vit_", "heads.head"), ("swin_", "head"), ("maxvit", "classifier.5"), ("densenet", "classifier"),
                ("convnext", "classifier.2"), ("vgg", "classifier.6"), ("alexnet", "classifier.6"),
                ("efficientnet", "classifier.1"), ("mnasnet", "classifier.1"), ("mobilenet_v3", "classifier.3"),
                ("mobilenet_v2", "classifier.1"))
# Smallest input side the architecture accepts (torchvision asserts it, or a pooling runs out of pixels).
_MIN_SIZE = {"inception_v3": 75, "alexnet": 63, "maxvit_t": 224}


def builder_names() -> list[str]:
    """Every classification builder torchvision has (`torchvision.models.list_models`)."""
    return list(tvm.list_models(module=tvm))


def first_conv(model: nn.Module) -> tuple[nn.Module, str, nn.Conv2d] | None:
    """(parent, attribute, conv) of the first Conv2d in definition order: the stem of a torchvision model."""
    for qual, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            parent_name, _, attr = qual.rpartition(".")
            return model.get_submodule(parent_name) if parent_name else model, attr, mod
    return None


def reduce_stem_strides(model: nn.Module) -> None:
    """The CIFAR-style small-input variant for any CNN: stride 1 in the stem conv and in a stride-2
    max-pool that follows it within the stem (before the 4th conv). Blocks are left alone, so residual
    shortcuts keep matching shapes; total stride 32 becomes 8 (ResNet-like stems) or 16 (one stride-2 stem).
    """
    convs = 0
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            convs += 1
            if convs == 1:
                mod.stride = (1, 1)
        elif isinstance(mod, nn.MaxPool2d) and convs and convs < 4:
            if mod.stride in (2, (2, 2)):
                mod.stride = 1
            break


def build_generic(builder_name: str, num_classes: int = 10, in_channels: int = 3, small_input: bool = False,
                  pretrained: bool = False, image_size: int | None = None) -> nn.Module:
    """Any torchvision classification builder with a `num_classes` head and an `in_channels` stem."""
    builder = tvm.get_model_builder(builder_name)
    kwargs: dict = {} if pretrained else {"num_classes": num_classes}
    if builder_name in ("googlenet", "inception_v3"):
        # No auxiliary heads (training would return a tuple) and no ImageNet-specific input transform.
        kwargs.update(aux_logits=False, transform_input=False)
        if not pretrained:
            kwargs["init_weights"] = True
    if image_size and builder_name.startswith("vit_"):
        kwargs["image_size"] = int(image_size)
    elif image_size and builder_name.startswith("maxvit_"):
        kwargs["input_size"] = (int(image_size), int(image_size))
    try:
        m = _build(builder, builder_name, pretrained, **kwargs)
    except ValueError as e:  # torchvision's own check of the input size (MaxViT's partitions, ViT's patches)
        if not image_size:
            raise
        need = "a multiple of 224 px" if builder_name.startswith("maxvit_") else "a multiple of its patch size"
        raise EdgeCNNError(f"{builder_name} cannot be built for {image_size} px (it needs {need}): "
                           f"{first_line(e)}") from None
    if pretrained:
        _replace_head(m, builder_name, num_classes)
    if small_input:
        reduce_stem_strides(m)
    if in_channels != 3:
        found = first_conv(m)
        if found is None:
            raise EdgeCNNError(f"{builder_name}: no Conv2d stem to adapt to {in_channels} input channels")
        parent, attr, conv = found
        setattr(parent, attr, _replace_stem(conv, in_channels))
    return m


def _replace_head(m: nn.Module, builder_name: str, num_classes: int) -> None:
    """Pretrained weights come with a 1000-class head: swap in one of `num_classes` outputs."""
    qual = classifier_name(builder_name)
    old = m.get_submodule(qual)
    parent_name, _, attr = qual.rpartition(".")
    parent = m.get_submodule(parent_name) if parent_name else m
    if isinstance(old, nn.Linear):
        setattr(parent, attr, nn.Linear(old.in_features, num_classes))
    elif isinstance(old, nn.Conv2d):  # squeezenet's 1x1 conv classifier
        setattr(parent, attr, nn.Conv2d(old.in_channels, num_classes, old.kernel_size))
    else:
        raise EdgeCNNError(f"{builder_name}: cannot replace classifier '{qual}' ({type(old).__name__})")


def classifier_name(builder_name: str) -> str:
    for prefix, qual in _CLASSIFIERS:
        if builder_name.startswith(prefix):
            return qual
    return ""


def generic_config(builder_name: str) -> dict | None:
    """register_model arguments for a torchvision builder, or None if torchvision has no such name."""
    if builder_name not in builder_names():
        return None
    options = ["pretrained"]
    if not builder_name.startswith(_NO_SMALL_INPUT):
        options.append("small_input")
    if builder_name.startswith(_IMAGE_SIZE_ARCHS):
        options.append("image_size")

    def build(num_classes: int = 10, in_channels: int = 3, **opts) -> nn.Module:
        return build_generic(builder_name, num_classes, in_channels, **opts)

    build.__name__ = builder_name
    return {"builder": build, "description": f"{builder_name} (torchvision)", "input_size": 224,
            "options": tuple(options), "source": "torchvision", "mean": (0.485, 0.456, 0.406),
            "std": (0.229, 0.224, 0.225), "classifier": classifier_name(builder_name),
            "min_input_size": _MIN_SIZE.get(builder_name, 32)}
