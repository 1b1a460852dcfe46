"""timm models as `timm:NAME` (optional extra `edgecnn[timm]`), registered through edgecnn's registry.

The architecture comes from the installed timm package and works offline. Pretrained weights are
downloaded by timm from the Hugging Face hub; offline that fails with one clear error (or use weights
already in the hub cache). timm's pretrained config supplies the input size, mean/std and classifier.
"""

from __future__ import annotations

from torch import nn

from ..errors import EdgeCNNError


def _timm():
    try:
        import timm
    except ImportError:
        raise EdgeCNNError("timm models need the timm package: pip install 'edgecnn[timm]'") from None
    return timm


def build_timm(arch: str, num_classes: int = 10, in_channels: int = 3, pretrained: bool = False) -> nn.Module:
    timm = _timm()
    try:
        return timm.create_model(arch, pretrained=pretrained, num_classes=num_classes, in_chans=in_channels)
    except (OSError, RuntimeError, ValueError) as e:  # offline hub, missing weights
        if pretrained:
            raise EdgeCNNError(f"cannot load pretrained timm weights for '{arch}' (offline? {type(e).__name__}: "
                               f"{str(e).splitlines()[0][:160]}); train without --pretrained or put them in the "
                               "Hugging Face hub cache") from None
        raise EdgeCNNError(f"timm cannot build '{arch}': {str(e).splitlines()[0][:160]}") from None


def timm_config(arch: str) -> dict | None:
    """register_model arguments for `timm:ARCH`, or None if timm has no such architecture."""
    timm = _timm()
    if not arch or not timm.is_model(arch):
        return None
    cfg = timm.models.get_pretrained_cfg(arch)
    size = int(cfg.input_size[-1]) if cfg and cfg.input_size else 224
    classifier = (cfg.classifier if cfg and isinstance(cfg.classifier, str) else "") or ""

    def build(num_classes: int = 10, in_channels: int = 3, pretrained: bool = False) -> nn.Module:
        return build_timm(arch, num_classes, in_channels, pretrained)

    build.__name__ = arch
    return {"builder": build, "description": f"{arch} (timm {timm.__version__})", "input_size": size,
            "options": ("pretrained",), "source": "timm", "mean": tuple(cfg.mean) if cfg else None,
            "std": tuple(cfg.std) if cfg else None, "classifier": classifier,
            "min_input_size": int(cfg.min_input_size[-1]) if cfg and cfg.min_input_size else 1}
