"""Image preprocessing shared by training-time evaluation (host) and the runtime (device).

One function, driven by the manifest's `input` block, so that what the device feeds the
model is exactly what the model was evaluated on. numpy + OpenCV only; never torch.

Input images (`to_uint8_image` states the rules):
- numpy arrays HxW (grey), HxWx3, HxWx4, or CxHxW (C in 1, 3, 4); `layout="auto"` reads a 3-D array
  as HWC when only its last dimension is a channel count, as CHW when only its first is, and refuses
  a shape where both are (e.g. 3x32x3) unless `layout="HWC"` or `"CHW"` says which;
- uint8 as is; uint16 scaled to 0-255 (>> 8); other integers must lie in 0..255;
- floats: NaN/inf are refused; values in [0, 1] are scaled x255; values in [0, 255] (some above 1)
  are read as 0-255; anything outside [0, 255] is refused (convert it yourself, then pass uint8);
- PIL images, file paths, and encoded image bytes (PNG, JPEG, ... anything OpenCV decodes).
`color_order` says how a 3-channel array is ordered: "BGR" (OpenCV frames, the default) or "RGB".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import EdgeCNNError
from .series import is_series, model_shape, preprocess_series

try:  # OpenCV is part of every device extra; keep the import error readable if it is missing.
    import cv2
except ImportError:  # pragma: no cover - exercised only on broken installs
    cv2 = None


def _cv2() -> Any:
    if cv2 is None:
        raise EdgeCNNError("OpenCV is not installed: pip install opencv-python-headless")
    return cv2


def _shown(path: Any) -> str:
    text = str(path)
    return text if len(text) <= 200 else text[:200] + "..."


def load_image(path: str, color_order: str = "BGR") -> np.ndarray:
    """Read an image file as uint8 (BGR or greyscale as stored)."""
    img = _cv2().imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise EdgeCNNError(f"cannot read image: {_shown(path)}")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    return img


def decode_image(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Encoded image bytes (PNG, JPEG, BMP, WebP, ...) -> uint8 array (BGR or greyscale as stored)."""
    buf = np.frombuffer(bytes(data), np.uint8)
    img = _cv2().imdecode(buf, cv2.IMREAD_UNCHANGED) if len(buf) else None
    if img is None:
        raise EdgeCNNError(f"{len(buf)} bytes given as an image are not an image file OpenCV can decode "
                           "(PNG, JPEG, BMP, ...); pass a path, an array or encoded image bytes")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    return img


LAYOUTS = ("auto", "HWC", "CHW")
_CHANNELS = (1, 3, 4)


def _to_hwc(arr: np.ndarray, layout: str) -> np.ndarray:
    """A 3-D array in HWC order, following `layout` (see the module docstring for "auto")."""
    first, last = arr.shape[0] in _CHANNELS, arr.shape[2] in _CHANNELS
    if layout == "auto":
        if first and last:
            raise EdgeCNNError(f"image shape {tuple(arr.shape)} is ambiguous (HxWxC or CxHxW?); "
                               "pass layout='HWC' or layout='CHW'")
        layout = "CHW" if first else "HWC"
    if layout == "CHW":
        if not first:
            raise EdgeCNNError(f"a CxHxW image needs 1, 3 or 4 channels first, got shape {tuple(arr.shape)}")
        return arr.transpose(1, 2, 0)
    return arr


def _float_to_uint8(arr: np.ndarray) -> np.ndarray:
    if not np.isfinite(arr).all():
        raise EdgeCNNError("image has NaN or infinite pixel values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0 or hi > 255:
        raise EdgeCNNError(f"float image values must lie in [0, 1] or [0, 255], got {lo:g}..{hi:g}; "
                           "normalize it or pass uint8")
    if hi <= 1.0:  # the [0, 1] convention (skimage, torchvision, cv2 float images)
        arr = arr * 255.0
    return np.rint(arr).astype(np.uint8)


def to_uint8_image(image: Any, color_order: str = "BGR", layout: str = "auto") -> tuple[np.ndarray, str]:
    """Accept a numpy array, a PIL image, a file path or encoded image bytes; return (uint8 HxW[xC], order)."""
    if layout not in LAYOUTS:
        raise EdgeCNNError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image(image), "BGR"
    if isinstance(image, str) or hasattr(image, "__fspath__"):
        return load_image(str(image)), "BGR"
    if not isinstance(image, np.ndarray) and hasattr(image, "convert") and hasattr(image, "mode"):
        # PIL image: its channel order is RGB.
        mode = image.mode
        arr = np.asarray(image.convert("L" if mode in ("L", "1", "I", "F", "I;16") else "RGB"))
        return arr, "RGB"
    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = _to_hwc(arr, layout)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise EdgeCNNError(
            f"image must be HxW, HxWx3 or HxWx4 (or CxHxW), got shape {tuple(arr.shape)}"
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise EdgeCNNError(f"image is empty: shape {tuple(arr.shape)}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            arr = _float_to_uint8(arr)
        elif arr.dtype == np.uint16:
            arr = (arr >> 8).astype(np.uint8)  # 16-bit images, as load_image reads them
        elif np.issubdtype(arr.dtype, np.integer):
            lo, hi = int(arr.min()), int(arr.max())
            if lo < 0 or hi > 255:
                raise EdgeCNNError(f"{arr.dtype} image values must lie in 0..255, got {lo}..{hi}")
            arr = arr.astype(np.uint8)
        else:
            raise EdgeCNNError(f"unsupported image dtype {arr.dtype}")
    if color_order not in ("BGR", "RGB"):
        raise EdgeCNNError(f"color_order must be BGR or RGB, got {color_order!r}")
    return arr, color_order


def _convert_color(arr: np.ndarray, order: str, target: str) -> np.ndarray:
    c = _cv2()
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = c.cvtColor(arr, c.COLOR_BGRA2BGR if order == "BGR" else c.COLOR_RGBA2RGB)
    if target == "GRAY":
        if arr.ndim == 2:
            return arr
        return c.cvtColor(arr, c.COLOR_BGR2GRAY if order == "BGR" else c.COLOR_RGB2GRAY)
    if target == "BGR":  # imported models trained on OpenCV frames
        if arr.ndim == 2:
            return c.cvtColor(arr, c.COLOR_GRAY2BGR)
        return c.cvtColor(arr, c.COLOR_RGB2BGR) if order == "RGB" else arr
    # target RGB
    if arr.ndim == 2:
        return c.cvtColor(arr, c.COLOR_GRAY2RGB)
    return c.cvtColor(arr, c.COLOR_BGR2RGB) if order == "BGR" else arr


def resize(arr: np.ndarray, height: int, width: int, policy: str, interpolation: str) -> np.ndarray:
    c = _cv2()
    if policy == "center_crop":
        h, w = arr.shape[:2]
        s = max(height / h, width / w)
        nh, nw = max(height, round(h * s)), max(width, round(w * s))
        interp = c.INTER_AREA if (interpolation == "area" and s < 1) else c.INTER_LINEAR
        arr = c.resize(arr, (nw, nh), interpolation=interp)
        top, left = (nh - height) // 2, (nw - width) // 2
        return arr[top : top + height, left : left + width]
    if arr.shape[0] == height and arr.shape[1] == width:
        return arr
    shrinking = arr.shape[0] >= height and arr.shape[1] >= width
    interp = c.INTER_AREA if (interpolation == "area" and shrinking) else c.INTER_LINEAR
    return c.resize(arr, (width, height), interpolation=interp)


def preprocess(image: Any, spec: dict, color_order: str = "BGR", layout: str = "auto") -> np.ndarray:
    """Turn one image into the model's float32 CHW input, following a manifest `input` block."""
    if spec.get("kind") == "features":
        raise EdgeCNNError(f"this model takes features of shape {spec['shape']}, not images: preprocess_features")
    if is_series(spec):
        raise EdgeCNNError(f"this bundle classifies series windows ({spec['length']} samples x {spec['channels']} "
                           "channels), not images: use predict_series(window) / a csv:, wav: or serial: source")
    arr, order = to_uint8_image(image, color_order, layout)
    if spec["color"] == "RGB" and arr.ndim == 3 and arr.shape[2] == 3:
        # A large camera frame is shrunk first, on uint8, and its channels swapped after: resizing
        # treats channels independently, so this equals swap-then-resize bit for bit, at a fraction of
        # the cost (benchmarks/preprocess_large_frames.py).
        arr = resize(arr, spec["height"], spec["width"], spec["resize"], spec["interpolation"])
        arr = _convert_color(arr, order, "RGB")
    else:
        arr = _convert_color(arr, order, spec["color"])
        arr = resize(arr, spec["height"], spec["width"], spec["resize"], spec["interpolation"])
    x = arr.astype(np.float32) * np.float32(spec["scale"])
    if x.ndim == 2:
        x = x[None]
    else:
        x = x.transpose(2, 0, 1)
    mean = np.asarray(spec["mean"], np.float32)[:, None, None]
    std = np.asarray(spec["std"], np.float32)[:, None, None]
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def preprocess_features(x: Any, spec: dict) -> np.ndarray:
    """A features input (manifest `input.kind` "features") -> float32 batch (N, *shape).

    One sample in the model's shape, or a batch of them; numbers only, finite. The values are fed as
    they are: they are in the model's float domain (integer model inputs are quantized by the backend
    with the file's own scale and zero point)."""
    shape = tuple(int(v) for v in spec["shape"])
    arr = np.asarray(x)
    if not (np.issubdtype(arr.dtype, np.number) and not np.issubdtype(arr.dtype, np.complexfloating)):
        raise EdgeCNNError(f"features must be numbers, got dtype {arr.dtype}")
    if arr.shape == shape:
        arr = arr[None]
    if arr.ndim != len(shape) + 1 or tuple(arr.shape[1:]) != shape or len(arr) == 0:
        raise EdgeCNNError(f"features must have shape {list(shape)} (one sample) or [N, {', '.join(map(str, shape))}], "
                           f"got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise EdgeCNNError("features contain NaN or infinite values")
    return np.ascontiguousarray(arr, dtype=np.float32)


def input_kind(spec: dict) -> str:
    """A manifest input block's kind; bundles made before kinds existed are images."""
    return str(spec.get("kind", "image"))


def load_sample(path: str, spec: dict) -> Any:
    """A bundle's sample file: an image (PNG), or for a series bundle a CSV window (samples x channels)."""
    if is_series(spec):
        try:
            return np.loadtxt(str(path), delimiter=",", ndmin=2)
        except (OSError, ValueError) as e:
            raise EdgeCNNError(f"cannot read the series sample {_shown(path)} ({e})") from None
    return load_image(str(path))


def preprocess_item(item: Any, spec: dict, color_order: str = "BGR") -> np.ndarray:
    """One dataset item -> float32 model input: `preprocess` for images, `preprocess_series` for series."""
    if is_series(spec):
        return preprocess_series(item, spec)
    return preprocess(item, spec, color_order)


def model_input_shape(spec: dict) -> tuple[int, ...]:
    """The model's per-sample float32 input (C, H, W) for any manifest `input` block (image or series);
    a features block's own shape."""
    if spec.get("kind") == "features":
        return tuple(int(v) for v in spec["shape"])
    if is_series(spec):
        return model_shape(spec)
    return int(spec["channels"]), int(spec["height"]), int(spec["width"])


def describe_input(spec: dict) -> str:
    """One line for reports: what the model takes and how it is normalized."""
    if spec.get("kind") == "features":
        return f"features of shape {list(spec['shape'])} (fed from arrays as they are, no image preprocessing)"
    if is_series(spec):
        c, _, t = model_shape(spec)
        rate = f" at {spec['sample_rate']:g} Hz" if spec.get("sample_rate") else ""
        fe = spec.get("frontend")
        head = (f"series window of {spec['length']} samples x {spec['channels']} channel(s){rate}"
                + (f", {fe['type']} front end -> {c} features x {t} frames" if fe else ""))
        return (f"{head}; model input [N, {c}, 1, {t}] (layout NC1T); mean {spec['mean']}, std {spec['std']}")
    return (f"{spec['channels']}x{spec['height']}x{spec['width']} {spec['color']}, resize {spec['resize']} "
            f"({spec['interpolation']}), x*{spec['scale']:.6g}, mean {spec['mean']}, std {spec['std']}")


def preprocess_batch(images: list, spec: dict, color_order: str = "BGR") -> np.ndarray:
    """Preprocess several images into one float32 NCHW batch."""
    if len(images) == 0:
        raise EdgeCNNError("empty batch")
    return np.stack([preprocess(im, spec, color_order) for im in images])


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def quantizer(quant: dict, dtype: Any) -> Callable[[np.ndarray], np.ndarray]:
    """float32 model input -> int8/uint8: round(x / scale) half to even, plus zero_point, saturated (ONNX's
    QuantizeLinear), with x / scale taken as x times the reciprocal, as TFLite's optimized kernels do.

    OpenCV's saturating conversion does it in one pass instead of four numpy ones (most of a small model's
    per-call overhead). It rounds after adding the zero point, which only equals rounding first when the
    zero point is even (a tie moves by an even number and stays on the even side); an odd zero point takes
    a second pass over the rounded int16 values. `Backend.prepare` and the frame path's lookup tables both
    use this, so the two agree bit for bit."""
    dtype = np.dtype(dtype)
    cv = _cv2()
    add, depth = cv.addWeighted, cv.CV_8S if dtype == np.int8 else cv.CV_8U
    alpha, zero = 1.0 / float(quant["scale"]), int(quant["zero_point"])

    def quantize(x: np.ndarray) -> np.ndarray:
        if x.dtype != np.float32 or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, np.float32)
        if x.size == 0:
            return np.empty(x.shape, dtype)
        if zero % 2 == 0:
            q = add(x, alpha, x, 0.0, zero, dtype=depth)  # OpenCV keeps an n-D array's shape; checked anyway
        else:  # int16 saturates far outside the 8-bit range, so adding the zero point after it is exact
            r = add(x, alpha, x, 0.0, 0.0, dtype=cv.CV_16S)
            q = add(r, 1.0, r, 0.0, zero, dtype=depth)
        return q if q.shape == x.shape else q.reshape(x.shape)

    return quantize


def quantize(x: np.ndarray, quant: dict, dtype: Any) -> np.ndarray:
    """`quantizer(quant, dtype)(x)`, for a one-off conversion."""
    return quantizer(quant, dtype)(x)
