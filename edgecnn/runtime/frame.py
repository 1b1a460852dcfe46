"""The fast frame path: a uint8 camera frame -> the artifact's own input (dtype + layout), in few passes.

    path = FramePath(input_spec, layout="NHWC", dtype=np.int8, quant={"scale": 0.02, "zero_point": -14})
    x = path(frame)            # (1, H, W, C) int8, ready for `backend.run_raw(x)`
    path(frame, out=buf)       # the same, written into a preallocated (1, ...) buffer

What it does per frame, numpy + OpenCV only (never torch):
1. resize on uint8 in the frame's own channel order, following a plan made once per frame size:
   - a large frame shrunk with "area" interpolation goes through a pyramid of exact 2x box halvings
     (OpenCV's 2x2 area kernel; one side alone: bilinear at exactly 2x, the mean of each pair) while a
     side stays at least twice the target, then ONE bilinear step with the geometry of OpenCV's
     INTER_LINEAR resize, sampled only where the centre crop keeps it: a plain resize of a window of the
     last level where its grid lies within WINDOW_TOLERANCE source pixels of that geometry, else `cv2.remap`;
   - crop first: only the source rectangle under the kept pixels is read (an aligned slice: its
     halvings are the same pixels as the whole frame's);
   - with two or more vertical halvings the first one reads every other row (a 2-tap vertical box, half
     the bytes of a frame that is not in cache); the bilinear step moves by the half row this shifts;
   Every other case (a shrink by less than 2 on both sides, upscaling, "linear", a frame already at the
   target size) is the reference's own resize, call for call.
2. colour order, normalization, int8/uint8 quantization and layout in ONE pass over the small image:
   a 256-entry lookup table per output channel holds, for every uint8 value, exactly what the reference
   path computes for it ((v * scale - mean) / std in float32, then `edgecnn.preprocess.quantize`, as
   `Backend.prepare` does). NHWC artifacts: one `cv2.LUT` over the 3 channels (after a
   channel swap on the small image); NCHW: one `cv2.LUT` per plane, read from the frame's own order.
   `FramePath.pixels` (for an engine that normalizes inside, `Backend.frame_input`) has identity tables:
   a copy of the resized pixels instead.

So the fast path equals the reference (`edgecnn.preprocess.preprocess` + `Backend.prepare`) bit for bit
whenever the resize is the same (tests/test_frame.py), and differs only by the pyramid when a large frame
is shrunk; the distance and the top-1 agreement measured on real video frames are in docs/runtime.md
(benchmarks/frame_path.py, benchmarks/frame_downscale.py). The exact reference path stays what `verify`
and `Classifier(preprocessing="exact")` use. Not thread-safe (it keeps its intermediate buffers): one
FramePath per thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import EdgeCNNError
from ..preprocess import LAYOUTS, _cv2, quantize, to_uint8_image

_COLOR_ORDERS = ("BGR", "RGB")
WINDOW_TOLERANCE = 0.25  # source pixels: how far the final resize's grid may sit from the reference's
_CHANNELS = (1, 3, 4)


def _span(coords: np.ndarray, size: int) -> tuple[int, int]:
    """The level pixels [first, last + 1) that bilinear sampling at `coords` reads (clamped at the edges)."""
    first = int(np.clip(np.floor(coords[0]), 0, size - 1))
    return first, int(np.clip(np.floor(coords[-1]) + 2, first + 1, size))


def _window(coords: np.ndarray, size: int) -> tuple[float, slice]:
    """The window [c0, c0 + n) of a level `size` pixels long whose plain INTER_LINEAR resize to len(coords)
    pixels samples closest to `coords` (a resize samples c0 + (d + 0.5) * n / len - 0.5), and that largest
    distance in level pixels."""
    m = len(coords)
    d = np.arange(m) + 0.5
    best = (np.inf, slice(0, size))
    mid = (coords[-1] - coords[0]) * m / max(m - 1, 1)  # the window length that matches the scale
    for n in range(max(1, int(mid) - 1), int(mid) + 3):
        at = d * (n / m) - 0.5
        c0 = round(float(np.mean(coords - at)))
        for c in (c0 - 1, c0, c0 + 1):
            if 0 <= c and c + n <= size:
                err = float(np.abs(coords - (at + c)).max())
                if err < best[0]:
                    best = (err, slice(c, c + n))
    return best


@dataclass
class _Plan:
    """One frame size's way to the target: the source rectangle read, 2x steps on it, the final sampling."""

    rows: slice
    cols: slice
    whole: tuple[int, int, int] | None = None  # (width, height, interpolation): the reference's resize, then crop
    steps: list[tuple[int, int, int]] = field(default_factory=list)  # (width, height, interpolation) per 2x step
    crop: tuple[slice, slice] | None = None  # the last level is the resized frame: crop it
    maps: tuple[np.ndarray, np.ndarray] | None = None  # cv2.remap tables of the final bilinear step
    window: tuple[slice, slice] | None = None  # or the last level's window a plain resize samples closely enough


def channel_tables(spec: dict, dtype: Any, quant: dict | None) -> np.ndarray:
    """(C, 256) lookup tables: input value v of channel c -> the artifact's input value, as the reference computes it."""
    dtype = np.dtype(dtype)
    v = np.arange(256, dtype=np.uint8).astype(np.float32) * np.float32(spec["scale"])
    mean = np.asarray(spec["mean"], np.float32)
    std = np.asarray(spec["std"], np.float32)
    x = (v[None, :] - mean[:, None]) / std[:, None]  # float32, the reference's arithmetic
    if quant is None:
        return np.ascontiguousarray(x, dtype=dtype)
    return quantize(x, quant, dtype)  # = Backend.prepare


class FramePath:
    """One frame -> the artifact input (see the module docstring). Built once per (spec, artifact)."""

    def __init__(self, spec: dict, layout: str = "NCHW", dtype: Any = np.float32, quant: dict | None = None):
        if layout not in ("NCHW", "NHWC"):
            raise EdgeCNNError(f"layout must be NCHW or NHWC, got {layout!r}")
        self.dtype = np.dtype(dtype)
        if self.dtype.kind in "iu" and quant is None:
            raise EdgeCNNError(f"an {self.dtype} input needs quant params (scale, zero_point)")
        self.spec, self.layout, self.quant = spec, layout, quant if self.dtype.kind in "iu" else None
        self.height, self.width = int(spec["height"]), int(spec["width"])
        self.channels = int(spec["channels"])
        self.color = spec["color"]
        self.policy, self.interpolation = spec["resize"], spec["interpolation"]
        tables = channel_tables(spec, self.dtype, self.quant)
        if len(tables) != self.channels:
            raise EdgeCNNError(f"input block: {len(tables)} mean/std values for {self.channels} channels")
        self._planes = [np.ascontiguousarray(t.reshape(1, 256)) for t in tables]  # NCHW: one per plane
        self._lut3 = np.ascontiguousarray(tables.T.reshape(1, 256, -1))  # NHWC: one multi-channel table
        self.shape = ((1, self.channels, self.height, self.width) if layout == "NCHW"
                      else (1, self.height, self.width, self.channels))
        self._buffers: dict[tuple, np.ndarray] = {}
        self._plans: dict[tuple[int, int], _Plan] = {}
        self._cv2 = _cv2()
        # tables that give back every value (`pixels`): a copy instead of a lookup (cv2.LUT: ~0.4 ns a byte)
        self._identity = self.dtype == np.uint8 and layout == "NHWC" and bool(
            (self._lut3 == np.arange(256, dtype=np.uint8)[None, :, None]).all())

    @classmethod
    def for_backend(cls, spec: dict, backend: Any) -> FramePath:
        """The frame path into `backend`'s artifact (its layout, input dtype and quant params)."""
        return cls(spec, backend.layout, backend.input_dtype, backend.input_quant)

    @classmethod
    def pixels(cls, spec: dict) -> FramePath:
        """The model's input image itself, for an engine that normalizes inside (`Backend.frame_input`):
        uint8 (1, H, W, C), BGR for 3 channels, resized as the reference does, values untouched."""
        c = spec["channels"]
        raw = {**spec, "color": "BGR" if c == 3 else "GRAY", "scale": 1.0, "mean": [0.0] * c, "std": [1.0] * c}
        return cls(raw, "NHWC", np.uint8, {"scale": 1.0, "zero_point": 0})  # identity tables

    # -- pieces ----------------------------------------------------------------------------------
    def _buffer(self, shape: tuple, dtype: Any = np.uint8, key: str = "") -> np.ndarray:
        k = (key, shape, np.dtype(dtype).str)
        buf = self._buffers.get(k)
        if buf is None:
            buf = self._buffers[k] = np.empty(shape, dtype)
        return buf

    def _resized(self, arr: np.ndarray, width: int, height: int, interp: int, key: str = "") -> np.ndarray:
        shape = (height, width) + arr.shape[2:]
        dst = self._buffer(shape, key=key)
        return self._cv2.resize(arr, (width, height), dst=dst, interpolation=interp)

    def _plan(self, h: int, w: int) -> _Plan:
        """How a frame of h x w reaches the target (the reference's geometry); made once per frame size."""
        c = self._cv2
        H, W = self.height, self.width
        area = self.interpolation == "area"
        if self.policy == "center_crop":
            s = max(H / h, W / w)
            nh, nw = max(H, round(h * s)), max(W, round(w * s))
            top, left = (nh - H) // 2, (nw - W) // 2
            shrinking = area and s < 1
        else:
            nh, nw, top, left = H, W, 0, 0
            shrinking = area and h >= H and w >= W
        if (h, w) == (nh, nw):
            return _Plan(rows=slice(top, top + H), cols=slice(left, left + W))
        if not shrinking or (w < 2 * nw and h < 2 * nh):
            # No side halves: the reference's own resize of the whole frame, bit for bit, then its crop.
            return _Plan(whole=(nw, nh, c.INTER_AREA if shrinking else c.INTER_LINEAR), rows=slice(top, top + H),
                         cols=slice(left, left + W))
        # The pyramid: 2x halvings (each side while it stays >= twice the target), level pixel q covering
        # source pixels [q * 2**k, (q + 1) * 2**k); an odd last row/column is left out.
        halvings, lw, lh, kx, ky = [], w, h, 0, 0
        while lw >= 2 * nw or lh >= 2 * nh:
            fx, fy = lw >= 2 * nw, lh >= 2 * nh
            lw, lh, kx, ky = lw // 2 if fx else lw, lh // 2 if fy else lh, kx + fx, ky + fy
            halvings.append((fx, fy))
        # The bilinear step from the last level to nw x nh, sampled only where the crop keeps it: the
        # source coordinates OpenCV's INTER_LINEAR resize uses, ((d + 0.5) * scale - 0.5).
        xs = (np.arange(left, left + W, dtype=np.float64) + 0.5) * (lw / nw) - 0.5
        ys = (np.arange(top, top + H, dtype=np.float64) + 0.5) * (lh / nh) - 0.5
        q0, q1 = _span(xs, lw)
        r0, r1 = _span(ys, lh)
        # Only the source rectangle under those level pixels is read (crop first): the halvings of an
        # aligned slice are the same pixels as the whole frame's.
        rows, sw, sh = slice(r0 << ky, r1 << ky), (q1 - q0) << kx, (r1 - r0) << ky
        # Two or more vertical halvings before a bilinear step: the first reads every other row only (rows
        # 1, 3 of each 4: a 2-tap vertical box instead of 4 rows, half the bytes of a frame that is not in
        # cache), and the bilinear step is moved by the half row that shifts (benchmarks/frame_downscale.py).
        skip = len(halvings) >= 2 and halvings[0][1] and halvings[1][1] and (lw, lh) != (nw, nh)
        if skip:
            rows, sh = slice(rows.start + 1, rows.stop, 2), sh // 2
            ys = ys - 0.5 / (1 << ky)
        steps = []
        for k, (fx, fy) in enumerate(halvings):
            fy = fy and not (skip and k == 1)  # that halving was the every-other-row read
            if fx or fy:
                sw, sh = sw // 2 if fx else sw, sh // 2 if fy else sh
                steps.append((sw, sh, c.INTER_AREA if fx and fy else c.INTER_LINEAR))
        plan = _Plan(rows=rows, cols=slice(q0 << kx, q1 << kx), steps=steps)
        if (lw, lh) == (nw, nh):
            plan.crop = (slice(top - r0, top - r0 + H), slice(left - q0, left - q0 + W))
        else:
            # A plain bilinear resize of a window of the level costs 0.6x a remap (no tables to read) but
            # samples on its own grid: it is used when that grid is within WINDOW_TOLERANCE source pixels of
            # the reference's coordinates on both axes (the window's integer bounds and length are chosen).
            ex, wx = _window(xs - q0, (q1 - q0))
            ey, wy = _window(ys - r0, (r1 - r0))
            if max(ex * (1 << kx), ey * (1 << ky)) <= WINDOW_TOLERANCE:
                plan.window = (wy, wx)
                return plan
            mx = np.broadcast_to((xs - q0).astype(np.float32), (H, W))
            my = np.broadcast_to((ys - r0).astype(np.float32)[:, None], (H, W))
            plan.maps = c.convertMaps(np.ascontiguousarray(mx), np.ascontiguousarray(my), c.CV_16SC2)
        return plan

    def resize(self, arr: np.ndarray) -> np.ndarray:
        """uint8 HxW[xC] -> the target size, following the input block's policy (the reference's geometry)."""
        h, w = arr.shape[:2]
        plan = self._plans.get((h, w))
        if plan is None:
            plan = self._plans[(h, w)] = self._plan(h, w)
        if plan.whole is not None:
            nw, nh, interp = plan.whole
            return self._resized(arr, nw, nh, interp)[plan.rows, plan.cols]
        arr = arr[plan.rows, plan.cols]
        for k, (sw, sh, interp) in enumerate(plan.steps):
            arr = self._resized(arr, sw, sh, interp, key=f"step{k}")
        if plan.crop is not None:
            return arr[plan.crop]
        if plan.window is not None:
            return self._resized(arr[plan.window], self.width, self.height, self._cv2.INTER_LINEAR, key="final")
        if plan.maps is None:
            return arr
        c = self._cv2
        dst = self._buffer((self.height, self.width) + arr.shape[2:], key="final")
        return c.remap(arr, plan.maps[0], plan.maps[1], c.INTER_LINEAR, dst=dst, borderMode=c.BORDER_REPLICATE)

    def _source_channels(self, small: np.ndarray, order: str) -> np.ndarray:
        """The small image's channels in the model's colour order (uint8, HxW for one channel)."""
        c = self._cv2
        if self.channels == 1:
            if small.ndim == 2:
                return small
            if small.shape[2] == 4:
                return c.cvtColor(small, c.COLOR_BGRA2GRAY if order == "BGR" else c.COLOR_RGBA2GRAY)
            return c.cvtColor(small, c.COLOR_BGR2GRAY if order == "BGR" else c.COLOR_RGB2GRAY)
        if small.ndim == 2:
            return c.cvtColor(small, c.COLOR_GRAY2BGR)  # the same value in every channel
        four = small.shape[2] == 4
        if self.color == order:  # the model's order already (BGR models, RGB frames for RGB models)
            return c.cvtColor(small, c.COLOR_BGRA2BGR) if four else small
        return c.cvtColor(small, c.COLOR_BGRA2RGB if four else c.COLOR_BGR2RGB)  # swap (drop alpha)

    def _write(self, small: np.ndarray, order: str, out: np.ndarray) -> None:
        c = self._cv2
        if self.layout == "NCHW" and self.channels == 3:
            # A 3-channel frame's planes are read in its own order (no colour-swap pass); other frames
            # (grey, BGRA) become the model's colour order first.
            own = small.ndim == 3 and small.shape[2] == 3
            planes = c.split(small if own else self._source_channels(small, order))
            if own and self.color != order:
                planes = planes[::-1]
            for k, plane in enumerate(planes):
                c.LUT(plane, self._planes[k], dst=out[0, k])
            return
        img = self._source_channels(small, order)
        if self._identity:
            np.copyto(out[0], img.reshape(out.shape[1:]))
            return
        if self.channels == 1:
            c.LUT(img, self._planes[0], dst=out.reshape(self.height, self.width))
        else:
            c.LUT(np.ascontiguousarray(img), self._lut3, dst=out[0])

    # -- the call --------------------------------------------------------------------------------
    def __call__(self, image: Any, color_order: str = "BGR", layout: str = "auto",
                 out: np.ndarray | None = None) -> np.ndarray:
        """One image -> (1, ...) array in the artifact's layout and dtype (into `out` when given)."""
        arr = image
        if not (type(arr) is np.ndarray and arr.dtype == np.uint8 and arr.size
                and (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4)
                                       and (layout == "HWC" or arr.shape[0] not in _CHANNELS)))
                and color_order in _COLOR_ORDERS and layout in LAYOUTS):
            # Anything but a plain uint8 HxW / HxWx3 / HxWx4 frame: the reference's one conversion rule.
            arr, color_order = to_uint8_image(image, color_order, layout)
        if out is None:
            out = np.empty(self.shape, self.dtype)
        elif out.shape != self.shape or out.dtype != self.dtype or not out.flags.c_contiguous:
            raise EdgeCNNError(f"out must be a C-contiguous {self.dtype} array of shape {self.shape}, "
                               f"got {out.dtype} {out.shape}")
        self._write(self.resize(arr), color_order, out)
        return out
