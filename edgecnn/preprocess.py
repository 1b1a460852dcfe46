"""Image preprocessing shared by training-time evaluation (host) and the runtime (device).

One function, driven by the manifest's `input` block, so that what the device feeds the
model is exactly what the model was evaluated on. numpy + OpenCV only; never torch.

Input images are uint8 arrays (HxW greyscale, HxWx3, HxWx4) or anything `load_image` reads.
`color_order` says how a 3-channel array is ordered: "BGR" (OpenCV frames, the default) or "RGB".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import EdgeCNNError

try:  # OpenCV is part of every device extra; keep the import error readable if it is missing.
    import cv2
except ImportError:  # pragma: no cover - exercised only on broken installs
    cv2 = None


def _cv2() -> Any:
    if cv2 is None:
        raise EdgeCNNError("OpenCV is not installed: pip install opencv-python-headless")
    return cv2


def load_image(path: str, color_order: str = "BGR") -> np.ndarray:
    """Read an image file as uint8 (BGR or greyscale as stored)."""
    img = _cv2().imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise EdgeCNNError(f"cannot read image: {path}")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    return img


def to_uint8_image(image: Any, color_order: str = "BGR") -> tuple[np.ndarray, str]:
    """Accept a numpy array, a PIL image or a file path; return (uint8 array, its color order)."""
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        return load_image(str(image)), "BGR"
    if not isinstance(image, np.ndarray) and hasattr(image, "convert") and hasattr(image, "mode"):
        # PIL image: its channel order is RGB.
        mode = image.mode
        arr = np.asarray(image.convert("L" if mode in ("L", "1", "I", "F", "I;16") else "RGB"))
        return arr, "RGB"
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise EdgeCNNError(
            f"image must be HxW, HxWx3 or HxWx4, got shape {tuple(arr.shape)}"
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise EdgeCNNError(f"image is empty: shape {tuple(arr.shape)}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer):
            arr = np.clip(arr, 0, 255).astype(np.uint8)
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


def preprocess(image: Any, spec: dict, color_order: str = "BGR") -> np.ndarray:
    """Turn one image into the model's float32 CHW input, following a manifest `input` block."""
    arr, order = to_uint8_image(image, color_order)
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


def preprocess_batch(images: list, spec: dict, color_order: str = "BGR") -> np.ndarray:
    """Preprocess several images into one float32 NCHW batch."""
    if len(images) == 0:
        raise EdgeCNNError("empty batch")
    return np.stack([preprocess(im, spec, color_order) for im in images])


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
