"""A small real colour folder dataset cut from OpenCV's sample photos (host side, needs OpenCV).

`make_photo_patches(out)` writes a few hundred square RGB patches in three classes, each class
cut from one real photo of Debian's `opencv-doc` package (/usr/share/doc/opencv-doc/examples/data):
a baboon's face (fur), a fruit bowl, a circuit board. It is what a user's own small dataset looks
like (450 images, 3 classes, 64-96 px) and it is made reproducibly (seeded) instead of committed.

The splits come from different regions of each photo, so a test patch never shares pixels with a
training patch: each photo is cut into a 4 x 4 grid of blocks, and a seeded shuffle gives 10 blocks
to train, 3 to val and 3 to test (each split sees all parts of the scene, e.g. every kind of fruit,
but never the same pixels). Each patch is a random square of 60-100 % of a block's short side
inside one block, optionally mirrored, resized to `size` px.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import EdgeCNNError

OPENCV_SAMPLES = Path("/usr/share/doc/opencv-doc/examples/data")
PHOTOS = {"animal": "baboon.jpg", "fruit": "fruits.jpg", "circuit": "board.jpg"}
COUNTS = {"train": 100, "val": 20, "test": 30}  # per class: 450 images in all
GRID = 4
BLOCKS = {"train": 10, "val": 3, "test": 3}  # of the GRID x GRID blocks of each photo


def _regions(h: int, w: int, rng: np.random.Generator) -> dict[str, list[tuple[int, int, int, int]]]:
    """(y0, y1, x0, x1) blocks of each split: disjoint, so no patch straddles two splits."""
    blocks = [(r * h // GRID, (r + 1) * h // GRID, c * w // GRID, (c + 1) * w // GRID)
              for r in range(GRID) for c in range(GRID)]
    order = rng.permutation(len(blocks))
    out, start = {}, 0
    for split, n in BLOCKS.items():
        out[split] = [blocks[i] for i in order[start : start + n]]
        start += n
    return out


def _patches(img: np.ndarray, regions: list[tuple[int, int, int, int]], n: int, size: int,
             rng: np.random.Generator) -> list[np.ndarray]:
    import cv2

    out = []
    for i in range(n):
        y0, y1, x0, x1 = regions[i % len(regions)]  # the split's blocks in turn (patch_block)
        short = min(y1 - y0, x1 - x0)
        side = int(rng.integers(int(0.6 * short), short + 1))
        y = int(rng.integers(y0, y1 - side + 1))
        x = int(rng.integers(x0, x1 - side + 1))
        patch = img[y : y + side, x : x + side]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        out.append(cv2.resize(np.ascontiguousarray(patch), (size, size), interpolation=cv2.INTER_AREA))
    return out


def patch_block(split: str, index: int) -> int:
    """Which of its split's blocks (0 .. BLOCKS[split]-1) patch `index` was cut from: they are taken in turn."""
    return index % BLOCKS[split]


def make_photo_patches(out: str | os.PathLike, *, size: int = 64, counts: dict[str, int] | None = None,
                       layout: str = "split", splits: tuple[str, ...] = ("train", "val", "test"),
                       seed: int = 0, photos: dict[str, str] | None = None,
                       source: str | os.PathLike = OPENCV_SAMPLES) -> Path:
    """Write the patch dataset under `out` and return `out`.

    layout "split": out/<split>/<class>/<n>.png (load it with `folder:out`);
    layout "flat": out/<class>/<split>_<n>.png, all the requested `splits` mixed in one folder per class.
    `counts` is per class and split (default 100/20/30). Same arguments, same files.
    """
    import cv2

    if layout not in ("split", "flat"):
        raise EdgeCNNError(f"layout must be 'split' or 'flat', got '{layout}'")
    counts = {**COUNTS, **(counts or {})}
    photos = photos or PHOTOS
    root = Path(out)
    rng = np.random.default_rng(seed)
    for cls, file in photos.items():
        path = Path(source) / file
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise EdgeCNNError(f"sample photo not found: {path} (Debian package opencv-doc)")
        regions = _regions(*img.shape[:2], rng)
        for split in splits:
            folder = root / split / cls if layout == "split" else root / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i, patch in enumerate(_patches(img, regions[split], counts[split], size, rng)):
                name = f"{i:04d}.png" if layout == "split" else f"{split}_{i:04d}.png"
                if not cv2.imwrite(str(folder / name), patch):
                    raise EdgeCNNError(f"cannot write {folder / name}")
    return root
