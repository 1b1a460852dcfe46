"""The model registry, in the style of timm's `register_model` + pretrained config.

Every model edgecnn can build is a `ModelSpec`: a builder `fn(num_classes=, in_channels=, **options)`
plus its config (default input size, the normalization and color its weights expect, the name of its
classifier layer). There is one way in, `register_model`, used for

- the built-in architectures (`lenet5`, `simplecnn`, the three curated torchvision ones),
- every other torchvision classification builder by its name (`efficientnet_b0`, ...), and
- timm models as `timm:NAME` (the `edgecnn[timm]` extra),

which are resolved and registered on first use (`get_spec`), so listing or building one model never
imports the others. A user registers their own builder the same way:

    @register_model(input_size=28, color="GRAY", in_channels=1, classifier="fc")
    def mynet(num_classes=10, in_channels=1): ...

`build_model(name, num_classes, in_channels, **options)` and `MODELS` (the explicitly registered
specs) keep their meaning for existing callers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, overload

from torch import nn

from ..errors import EdgeCNNError
from . import lenet5, series_cnn, simplecnn, torchvision_models

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SOURCES = ("edgecnn", "torchvision", "timm", "user")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    description: str
    default_input_size: int  # square input side the model is designed for
    # extra constructor args it accepts (width_mult, small_input, pretrained; input_size: a classifier
    # sized for the input side)
    options: tuple[str, ...] = ()
    source: str = "edgecnn"  # edgecnn | torchvision | timm | user
    # The normalization its pretrained weights expect (None: train with the dataset's own mean/std).
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    color: str = "RGB"  # the color its first layer is designed for: RGB or GRAY
    in_channels: int = 3
    classifier: str = ""  # qualified name of the output layer ("" = unknown)
    min_input_size: int = 1  # smallest side it runs at (measured or from the architecture)
    tags: tuple[str, ...] = field(default=())
    kind: str = "image"  # the input it takes: "image" (N, C, H, W) or "series" (N, C, 1, T; edgecnn/series.py)


# Explicitly registered specs (built-ins and the user's). Resolved torchvision/timm specs are
# cached in _RESOLVED so that `MODELS` lists what was registered, as before.
MODELS: dict[str, ModelSpec] = {}
_RESOLVED: dict[str, ModelSpec] = {}


@overload
def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]: ...
@overload
def register_model(fn: None = None, **config) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]: ...


def register_model(fn: Callable[..., nn.Module] | None = None, *, name: str | None = None, description: str = "",
                   input_size: int = 224, options: tuple[str, ...] = (), source: str = "user",
                   mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                   color: str | None = None, in_channels: int = 3, classifier: str = "",
                   min_input_size: int = 1, replace: bool = False, kind: str = "image", _into: dict | None = None):
    """Register a model builder (decorator, with or without arguments); returns the builder unchanged.

    The builder is called as `fn(num_classes=N, in_channels=C, **options)`; `options` names the extra
    keyword arguments it accepts (anything else given to `build_model` is an error).
    """

    def add(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or f.__name__
        if source not in SOURCES:
            raise EdgeCNNError(f"register_model: unknown source '{source}'; choose one of {', '.join(SOURCES)}")
        registry = MODELS if _into is None else _into
        if key in MODELS and not replace and registry is MODELS:
            raise EdgeCNNError(f"model '{key}' is already registered (pass replace=True to override it)")
        doc = (f.__doc__ or "").strip().splitlines()
        registry[key] = ModelSpec(
            name=key, builder=f, description=description or (doc[0] if doc else key),
            default_input_size=int(input_size), options=tuple(options), source=source,
            mean=tuple(mean) if mean else None, std=tuple(std) if std else None,
            color=color or ("GRAY" if in_channels == 1 else "RGB"), in_channels=in_channels,
            classifier=classifier, min_input_size=min_input_size, kind=kind,
        )
        return f

    return add(fn) if fn is not None else add


_TV_OPTS = ("width_mult", "small_input", "pretrained")
_TV = {"source": "torchvision", "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "options": _TV_OPTS}

register_model(lenet5.lenet5, description="LeNet-5 (1998), 32x32 input", input_size=32, source="edgecnn",
               in_channels=1, classifier="classifier.5", options=("input_size",))
register_model(simplecnn.simplecnn, description="3-conv CNN of the PyTorch CIFAR-10 tutorial", input_size=32,
               source="edgecnn", classifier="classifier.4", options=("input_size",))
register_model(series_cnn.cnn1d, description="small 1-D CNN for sensor windows (conv/BN/ReLU x3, global pool)",
               input_size=1, source="edgecnn", in_channels=6, classifier="classifier.2", options=("width",),
               kind="series")
register_model(series_cnn.dscnn, description="depthwise-separable 1-D CNN (KWS DS-CNN) for audio/sensors",
               input_size=1, source="edgecnn", in_channels=10, classifier="classifier.2", options=("width",),
               kind="series")
register_model(torchvision_models.mobilenet_v2, description="MobileNetV2 (torchvision)", classifier="classifier.1",
               **_TV)
register_model(torchvision_models.mobilenet_v3_small, description="MobileNetV3-small (torchvision)",
               classifier="classifier.3", **_TV)
register_model(torchvision_models.resnet18, description="ResNet-18 (torchvision)", classifier="fc", **_TV)


def _resolve(name: str) -> ModelSpec | None:
    """A torchvision builder name (bare or `torchvision:NAME`) or `timm:NAME`, registered on first use."""
    if name in _RESOLVED:
        return _RESOLVED[name]
    if name.startswith("timm:"):
        from .timm_models import timm_config

        cfg = timm_config(name[len("timm:"):])
    else:
        from .torchvision_models import generic_config

        cfg = generic_config(name.removeprefix("torchvision:"))
    if cfg is None:
        return None
    builder = cfg.pop("builder")
    register_model(builder, name=name, _into=_RESOLVED, **cfg)
    return _RESOLVED[name]


def get_spec(name: str) -> ModelSpec:
    spec = MODELS.get(name) or _resolve(name)
    if spec is None:
        raise EdgeCNNError(f"unknown model '{name}'; choose one of: {', '.join(MODELS)}, any torchvision "
                           "classification builder (edgecnn models --all) or timm:NAME")
    return spec


def list_models(all: bool = False) -> list[str]:
    """Registered names; with `all`, also every torchvision classification builder (not timm's ~1,000)."""
    names = list(MODELS)
    if all:
        from .torchvision_models import builder_names

        names += [n for n in builder_names() if n not in MODELS]
    return names


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
