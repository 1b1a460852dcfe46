"""Make a real test video from held-out images: the camera stand-in of the demo and the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import EdgeCNNError
from ..utils import atomic_write_json
from .datasets import Dataset


def write_digit_video(ds: Dataset, path: str | Path, *, split: str = "test", count: int = 60,
                      frames_per_image: int = 3, size: int = 160, fps: int = 15, seed: int = 0) -> dict:
    """Write `count` held-out images of `ds` as a video (each shown `frames_per_image` frames, upscaled to
    `size` px, on a slightly noisy border so frames look like a camera's) and a JSON sidecar with the
    true label of every frame. Returns the sidecar dict."""
    import cv2

    images, labels = ds.split(split)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(labels), size=min(count, len(labels)), replace=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    if not writer.isOpened():
        raise EdgeCNNError(f"OpenCV cannot write video {path} (no mp4v encoder?)")
    truth = []
    try:
        for i in idx:
            img = images[i]
            frame = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
            if frame.ndim == 2:
                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
            else:
                frame = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
            for _ in range(frames_per_image):
                writer.write(frame)
                truth.append(ds.classes[int(labels[i])])
    finally:
        writer.release()
    tmp.replace(path)
    sidecar = {"video": path.name, "dataset": ds.name, "split": split, "fps": fps, "labels": truth}
    atomic_write_json(path.with_suffix(".labels.json"), sidecar)
    return sidecar
