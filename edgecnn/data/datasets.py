"""Named datasets as uint8 image arrays + labels, with deterministic seeded splits.

This module is numpy-only; torch Datasets/augmentation live in `edgecnn.data.torchdata`.
Names: digits (embedded, offline default), mnist, fashion-mnist, cifar10, folder:PATH.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import EdgeCNNError
from ..preprocess import preprocess

ASSETS = Path(__file__).parent / "assets"
SPLITS = ("train", "val", "test")


@dataclass
class Dataset:
    """A dataset in memory: per split, a sequence of uint8 images (HxW or HxWx3 RGB) and int64 labels."""

    name: str
    classes: list[str]
    channels: int  # 1 (GRAY) or 3 (RGB)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    natural: bool  # natural images: horizontal flip is a valid augmentation (not for digits/clothes text)
    splits: dict[str, tuple[Sequence[np.ndarray], np.ndarray]] = field(repr=False)

    def split(self, name: str) -> tuple[Sequence[np.ndarray], np.ndarray]:
        if name not in self.splits:
            raise EdgeCNNError(f"dataset '{self.name}' has no split '{name}' (has: {', '.join(self.splits)})")
        return self.splits[name]

    @property
    def color(self) -> str:
        return "GRAY" if self.channels == 1 else "RGB"


def stratified_split(labels: np.ndarray, fractions: dict[str, float], seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic per-class split of indices; fractions sum to 1."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {k: [] for k in fractions}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        start = 0
        names = list(fractions)
        for i, k in enumerate(names):
            n = len(idx) - start if i == len(names) - 1 else int(round(fractions[k] * len(idx)))
            out[k].append(idx[start : start + n])
            start += n
    return {k: np.sort(np.concatenate(v)) for k, v in out.items()}


def load_digits() -> Dataset:
    """5,000 real 20x20 handwritten digits (OpenCV's digits.png), embedded in the package.

    Split 3,600 train / 400 val / 1,000 test, stratified, seed 0.
    """
    with np.load(ASSETS / "digits.npz") as z:
        images, labels = z["images"], z["labels"].astype(np.int64)
    parts = stratified_split(labels, {"train": 0.72, "val": 0.08, "test": 0.20}, seed=0)
    return Dataset(
        name="digits",
        classes=[str(i) for i in range(10)],
        channels=1,
        mean=(0.1323,),
        std=(0.2918,),
        natural=False,
        splits={k: (images[v], labels[v]) for k, v in parts.items()},
    )


def default_input_spec(ds: Dataset, size: int, resize: str = "stretch") -> dict:
    """The manifest `input` block a model trained on `ds` at `size` x `size` uses."""
    return {
        "height": int(size),
        "width": int(size),
        "channels": ds.channels,
        "color": ds.color,
        "resize": resize,
        "interpolation": "area",
        "scale": 1.0 / 255.0,
        "mean": [float(m) for m in ds.mean],
        "std": [float(s) for s in ds.std],
    }


def preprocessed(ds: Dataset, split: str, spec: dict, limit: int | None = None,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(float32 NCHW, int64 labels) of a split, preprocessed exactly as the runtime does.

    With `limit`, a seeded, class-balanced-in-expectation random subset of that size.
    """
    images, labels = ds.split(split)
    idx = np.arange(len(labels))
    if limit is not None and limit < len(idx):
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=limit, replace=False))
    order = "RGB"  # dataset arrays are RGB (or greyscale)
    x = np.stack([preprocess(images[i], spec, color_order=order) for i in idx])
    return x, np.asarray(labels)[idx].astype(np.int64)
