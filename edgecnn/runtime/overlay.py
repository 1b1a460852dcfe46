"""Draw results on a frame: top-k labels with confidence bars, FPS, per-stage milliseconds, the ROI."""

from __future__ import annotations

import unicodedata
from typing import Sequence

import cv2
import numpy as np

MIN_WIDTH = 480  # small frames (32x32 digits) are enlarged so the text stays readable
STAGES = ("capture", "preprocess", "inference", "postprocess", "render")
SHORT = {"capture": "cap", "preprocess": "pre", "inference": "inf", "postprocess": "post", "render": "draw"}


def drawable(text: str) -> str:
    """What cv2.putText can draw: its Hershey fonts have printable ASCII only (other code points have
    crashed it). Accents are dropped (NFKD: 'café' -> 'cafe'); anything else becomes '?'."""
    plain = unicodedata.normalize("NFKD", str(text))
    return "".join(ch if " " <= ch <= "~" else "?" for ch in plain if not unicodedata.combining(ch))


def as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def draw_overlay(image: np.ndarray, top: Sequence[tuple[str, float]], fps: float | None = None,
                 stage_ms: dict[str, float] | None = None,
                 roi: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """A BGR copy of `image` (enlarged if small) with the results drawn on it."""
    img = as_bgr(image)
    scale_up = 1.0
    if img.shape[1] < MIN_WIDTH:
        scale_up = MIN_WIDTH / img.shape[1]
        img = cv2.resize(img, (MIN_WIDTH, max(1, round(img.shape[0] * scale_up))), interpolation=cv2.INTER_NEAREST)
    else:
        img = img.copy()
    h, w = img.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    size = max(0.45, min(w, h) / 700)  # font scaled to the frame: 0.69 at 480 px, 1.5 at 1080 px
    thick = max(1, round(size * 1.6))
    line = int(30 * size)
    pad = max(4, line // 4)

    if roi is not None:
        x, y, rw, rh = (round(v * scale_up) for v in roi)
        cv2.rectangle(img, (x, y), (x + rw, y + rh), (0, 255, 255), thick)

    def width(s: str, scale: float = size) -> int:
        return cv2.getTextSize(s, font, scale, thick)[0][0]

    def panel(x0: int, y0: int, x1: int, y1: int) -> None:
        """Darken a box to 3/8 so white text reads on any picture, bright or busy (integer ops: cheap)."""
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 > x0 and y1 > y0:
            box = img[y0:y1, x0:x1]
            np.right_shift(box, 1, out=box)
            np.subtract(box, box >> 2, out=box)

    def text(s: str, org: tuple[int, int], color=(255, 255, 255), scale: float = size) -> None:
        # Always on a dark panel, so no outline (an outline drawn thicker would also be wider: Hershey
        # glyphs' advance grows with thickness).
        cv2.putText(img, drawable(s), org, font, scale, color, thick, cv2.LINE_AA)

    if top:
        # One row per label: "label" | bar | "97.3%". Text sits on the dark panel, never on a bar.
        labels = [drawable(str(label)) for label, _ in top]
        label_w = max(width(s) for s in labels)
        pct_w = width("100.0%")
        bar_w = max(line * 2, w // 6)
        x0, y0 = pad, pad
        x_bar = x0 + pad + label_w + pad
        x_pct = x_bar + bar_w + pad
        panel(x0, y0, x_pct + pct_w + pad, y0 + 2 * pad + line * len(top))
        for i, ((_, prob), label) in enumerate(zip(top, labels)):
            base = y0 + pad + line * (i + 1) - line // 4  # text baseline of row i
            text(label, (x0 + pad, base))
            by0, by1 = base - line // 2, base
            cv2.rectangle(img, (x_bar, by0), (x_bar + bar_w, by1), (70, 70, 70), -1)
            fill = int(round(bar_w * min(max(float(prob), 0.0), 1.0)))
            if fill:
                color = (60, 190, 60) if i == 0 else (200, 150, 90)  # top-1 green, others blue-grey (BGR)
                cv2.rectangle(img, (x_bar, by0), (x_bar + fill, by1), color, -1)
            text(f"{100 * prob:.1f}%", (x_pct, base))
    status = []
    if fps is not None:
        status.append(f"{fps:.1f} FPS")
    if stage_ms:
        status.append(" ".join(f"{SHORT[k]} {stage_ms[k]:.1f}" for k in STAGES if k in stage_ms) + " ms")
    if status:
        s = "  ".join(status)
        scale = min(size, size * (w - 3 * pad) / max(1, width(s)))  # the whole line fits the frame
        panel(0, h - line - pad, width(s, scale) + 3 * pad, h)
        text(s, (2 * pad, h - pad - 2), (0, 255, 255), scale)
    return img
