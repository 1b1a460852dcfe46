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
    size = max(0.4, min(1.0, w / 1000))
    thick = 1 if size < 0.7 else 2
    line = int(28 * size / 0.6)

    if roi is not None:
        x, y, rw, rh = (round(v * scale_up) for v in roi)
        cv2.rectangle(img, (x, y), (x + rw, y + rh), (0, 255, 255), thick)

    def text(s: str, org: tuple[int, int], color=(255, 255, 255)) -> None:
        s = drawable(s)
        cv2.putText(img, s, org, font, size, (0, 0, 0), thick + 2, cv2.LINE_AA)  # outline: readable anywhere
        cv2.putText(img, s, org, font, size, color, thick, cv2.LINE_AA)

    bar_w = w // 5
    for i, (label, prob) in enumerate(top):
        y = line * (i + 1)
        x0 = 8
        cv2.rectangle(img, (x0, y - line // 2), (x0 + int(bar_w * prob), y + 2), (0, 160, 0) if i == 0 else (90, 90, 90), -1)
        text(f"{label}  {100 * prob:.1f}%", (x0 + 4, y), (255, 255, 255) if i else (0, 255, 0))
    status = []
    if fps is not None:
        status.append(f"{fps:.1f} FPS")
    if stage_ms:
        status.append(" ".join(f"{SHORT[k]} {stage_ms[k]:.1f}" for k in STAGES if k in stage_ms) + " ms")
    if status:
        text("  ".join(status), (8, h - 10), (0, 255, 255))
    return img
