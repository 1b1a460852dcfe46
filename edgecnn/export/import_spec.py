"""How an imported model's input is fed, read from the file where the file says it (numpy only).

An integer input's quantization states the float range the model was calibrated on: int8 with
scale 1.0 / zero point -128 represents 0..255 (raw pixels, int8 = pixel - 128, the TFLite Micro camera
convention), uint8 with scale 1/255 / zero point 0 represents 0..1, int8 with scale 1/128 / zero point 0
represents -1..1. `from_quant` turns a range that matches one of the known pixel ranges into the
manifest's `scale`/`mean`/`std`; `contradiction` says when the user's (or a preset's) normalization
would feed a range the quantization cannot represent. Named conventions (`PRESETS`): Teachable
Machine and the Keras applications' `preprocess_input` modes ('tf': -1..1, 'caffe': BGR minus the
ImageNet mean, no scaling, 'torch': ImageNet mean/std on 0..1, and the models that take raw 0..255
pixels because their preprocessing is a layer inside them).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

# The known pixel ranges: name -> (float range, manifest scale, mean, std) for pixels 0..255.
PIXEL_RANGES: dict[str, tuple[tuple[float, float], float, float, float]] = {
    "0..255": ((0.0, 255.0), 1.0, 0.0, 1.0),
    "0..1": ((0.0, 1.0), 1.0 / 255.0, 0.0, 1.0),
    "-1..1": ((-1.0, 1.0), 1.0 / 255.0, 0.5, 0.5),
    "-128..127": ((-128.0, 127.0), 1.0, 128.0, 1.0),
}

_IMAGENET_MEAN, _IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
# Keras applications' preprocess_input modes (keras/src/applications/imagenet_utils.py), per channel in the
# order the model takes them ('caffe' is BGR).
_MODES = {
    "tf": {"color": "RGB", "scale": 1.0 / 255.0, "mean": [0.5] * 3, "std": [0.5] * 3},
    "caffe": {"color": "BGR", "scale": 1.0, "mean": [103.939, 116.779, 123.68], "std": [1.0] * 3},
    "torch": {"color": "RGB", "scale": 1.0 / 255.0, "mean": _IMAGENET_MEAN, "std": _IMAGENET_STD},
    "raw": {"color": "RGB", "scale": 1.0, "mean": [0.0] * 3, "std": [1.0] * 3},
}
# preset -> (mode, what uses it)
PRESETS: dict[str, tuple[str, str]] = {
    "teachable-machine": ("tf", "Teachable Machine image models (RGB, center crop, -1..1)"),
    "keras-mobilenet": ("tf", "keras.applications MobileNet, MobileNetV2 (-1..1)"),
    "keras-inception": ("tf", "keras.applications InceptionV3, InceptionResNetV2 (-1..1)"),
    "keras-xception": ("tf", "keras.applications Xception (-1..1)"),
    "keras-nasnet": ("tf", "keras.applications NASNetMobile/Large (-1..1)"),
    "keras-resnet-v2": ("tf", "keras.applications ResNet50V2/101V2/152V2 (-1..1)"),
    "keras-resnet": ("caffe", "keras.applications ResNet50/101/152 (BGR, ImageNet mean subtracted, 0..255)"),
    "keras-vgg": ("caffe", "keras.applications VGG16/VGG19 (BGR, ImageNet mean subtracted, 0..255)"),
    "keras-densenet": ("torch", "keras.applications DenseNet (RGB 0..1, ImageNet mean/std)"),
    "keras-mobilenet-v3": ("raw", "keras.applications MobileNetV3 (raw 0..255: preprocessing is inside the model)"),
    "keras-efficientnet": ("raw", "keras.applications EfficientNet/V2 (raw 0..255: preprocessing inside)"),
    "keras-convnext": ("raw", "keras.applications ConvNeXt (raw 0..255: preprocessing inside)"),
}


def preset_spec(name: str, channels: int) -> dict:
    """{color, scale, mean, std, resize} of a named preset for a model with `channels` input channels."""
    from ..errors import EdgeCNNError

    if name not in PRESETS:
        raise EdgeCNNError(f"unknown --preset '{name}'; known: {', '.join(PRESETS)}")
    mode = PRESETS[name][0]
    spec = {k: (list(v) if isinstance(v, list) else v) for k, v in _MODES[mode].items()}
    if channels == 1:
        if mode in ("caffe", "torch"):
            raise EdgeCNNError(f"--preset {name} is for 3-channel colour models; this model takes 1 channel")
        spec.update(color="GRAY", mean=spec["mean"][:1], std=spec["std"][:1])
    spec["resize"] = "center_crop" if name == "teachable-machine" else "stretch"
    return spec


def quant_range(dtype: str, quant: dict) -> tuple[float, float]:
    """The float range an int8/uint8 tensor with this quantization represents."""
    info = np.iinfo(np.dtype(dtype))
    s, z = float(quant["scale"]), int(quant["zero_point"])
    return s * (info.min - z), s * (info.max - z)


def known_range(lo: float, hi: float, step: float) -> str | None:
    """The PIXEL_RANGES name this quantized range is (within 2 quantization steps or 2% of its width)."""
    for name, ((clo, chi), *_rest) in PIXEL_RANGES.items():
        tol = max(2.0 * step, 0.02 * (chi - clo))
        if abs(lo - clo) <= tol and abs(hi - chi) <= tol:
            return name
    return None


def from_quant(dtype: str, quant: dict) -> tuple[str, dict] | None:
    """(range name, {scale, mean, std} for one channel) when the input quantization is a known pixel range."""
    lo, hi = quant_range(dtype, quant)
    name = known_range(lo, hi, float(quant["scale"]))
    if name is None:
        return None
    _, scale, mean, std = PIXEL_RANGES[name]
    return name, {"scale": scale, "mean": mean, "std": std}


def fed_ranges(scale: float, mean: Sequence[float], std: Sequence[float]) -> list[tuple[float, float]]:
    """Per channel, the float range that pixels 0..255 become: ((0 or 255) * scale - mean) / std."""
    return [((0.0 - m) / s, (255.0 * scale - m) / s) for m, s in zip(mean, std)]


def contradiction(dtype: str, quant: dict, scale: float, mean: Sequence[float], std: Sequence[float]) -> str | None:
    """Why this normalization contradicts the input quantization (None when it fits).

    It contradicts when the pixels would be clipped (more than 10% of the quantized range outside it) or
    would use less than half of it (the model was calibrated on a different range)."""
    lo, hi = quant_range(dtype, quant)
    width = hi - lo
    tol = max(2.0 * float(quant["scale"]), 0.1 * width)
    for flo, fhi in fed_ranges(scale, mean, std):
        if flo < lo - tol or fhi > hi + tol or (fhi - flo) < 0.5 * width:
            return f"feeds pixels as {_rng(flo, fhi)}, but the input quantization ({dtype} scale " \
                   f"{float(quant['scale']):.6g}, zero point {int(quant['zero_point'])}) represents {_rng(lo, hi)}"
    return None


def _rng(lo: float, hi: float) -> str:
    return f"[{lo:.4g}, {hi:.4g}]"


def describe_range(dtype: str, quant: dict) -> str:
    lo, hi = quant_range(dtype, quant)
    return _rng(lo, hi)


def load_features_data(path: str, shape: Sequence[int], n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(float32 inputs (N, *shape), int64 labels) of a features model from an .npz holding arrays `x` and `y`."""
    from ..errors import EdgeCNNError

    p = str(path)
    if not p.endswith(".npz"):
        raise EdgeCNNError(f"--data for a features model is an .npz file with arrays x (N, {', '.join(map(str, shape))}) "
                           f"and y (N labels), got {p!r}")
    try:
        with np.load(p, allow_pickle=False) as z:
            if "x" not in z or "y" not in z:
                raise EdgeCNNError(f"{p}: needs arrays 'x' and 'y', has {', '.join(z.files) or 'none'}")
            x, y = np.asarray(z["x"]), np.asarray(z["y"])
    except (OSError, ValueError) as e:
        raise EdgeCNNError(f"{p}: not a readable .npz file ({e})") from None
    if tuple(x.shape[1:]) != tuple(shape) or len(x) != len(y) or y.ndim != 1:
        raise EdgeCNNError(f"{p}: x has shape {x.shape} and y {y.shape}; the model takes (N, "
                           f"{', '.join(map(str, shape))}) with N labels")
    if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise EdgeCNNError(f"{p}: x must hold finite numbers")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and (y.min() < 0 or y.max() >= n_classes)):
        raise EdgeCNNError(f"{p}: y must hold class indices 0..{n_classes - 1}")
    return x.astype(np.float32), y.astype(np.int64)
