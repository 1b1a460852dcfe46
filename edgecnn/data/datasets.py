"""Named datasets as uint8 image arrays + labels, with deterministic seeded splits.

This module is numpy-only; torch Datasets/augmentation live in `edgecnn.data.torchdata`.
Names: digits (embedded, offline default), mnist, fashion-mnist, cifar10, folder:PATH.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import EdgeCNNError
from ..preprocess import preprocess_item
from ..series import feature_count, fit_normalization, series_spec

ASSETS = Path(__file__).parent / "assets"
SPLITS = ("train", "val", "test")
# Where Debian's `fashion-mnist` package puts the original IDX files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pbm")
VAL_FROM_TRAIN = 5000  # validation images carved (stratified, seed 0) from the official training sets


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
    flat: bool = False  # a folder of class subfolders that edgecnn split itself (70/10/20)
    # "series": items are float (t, C) windows, not images (edgecnn/data/series.py); then `length`
    # (samples per window), `sample_rate` (Hz or None) and `frontend` (audio features or None) apply.
    kind: str = "image"
    length: int | None = None
    sample_rate: float | None = None
    frontend: dict | None = None

    def split(self, name: str) -> tuple[Sequence[np.ndarray], np.ndarray]:
        """The images and labels of one split; "all" = every split together (train, val, test order)."""
        if name == "all":
            parts = [self.splits[k] for k in (*SPLITS, *[k for k in self.splits if k not in SPLITS])
                     if k in self.splits]
            return _concat([p[0] for p in parts]), np.concatenate([np.asarray(p[1]) for p in parts]) \
                if parts else np.zeros(0, dtype=np.int64)
        if name not in self.splits:
            raise EdgeCNNError(f"dataset '{self.name}' has no split '{name}' (has: {', '.join(self.splits)}, all)")
        return self.splits[name]

    @property
    def color(self) -> str:
        return "GRAY" if self.channels == 1 else "RGB"


def _concat(images: list[Sequence[np.ndarray]]) -> Sequence[np.ndarray]:
    if images and any(isinstance(i, list) for i in images):  # series windows (possibly unequal lengths)
        return [x for i in images for x in i]
    if images and all(isinstance(i, ImageFiles) for i in images):
        return ImageFiles([p for i in images for p in i.paths], images[0].channels)  # type: ignore[attr-defined]
    return np.concatenate([np.asarray(i) for i in images]) if images else np.zeros((0, 1, 1), np.uint8)


def same_dataset(a: str | None, b: str | None) -> bool:
    """Do two dataset names mean the same data? folder:PATH names compare their resolved paths."""
    if not a or not b:
        return False
    if a.startswith("folder:") and b.startswith("folder:"):
        return Path(a[7:]).expanduser().resolve() == Path(b[7:]).expanduser().resolve()
    return a == b


def evaluation_split(ds: Dataset, trained_on: str | None = None) -> str:
    """The split that evaluates a model on `ds` when none is asked for.

    A flat folder the model was not trained on is used whole ("all"): it is a held-out set. The
    training dataset itself gives its test split (never trained on); a folder holding only val/
    gives val.
    """
    if ds.flat and not same_dataset(ds.name, trained_on):
        return "all"
    for name in ("test", "val"):
        if name in ds.splits and len(ds.splits[name][1]):
            return name
    return "all"


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
    """The manifest `input` block a model trained on `ds` at `size` x `size` uses (series: `size` unused)."""
    if ds.kind == "series":
        return series_input_spec(ds)
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
    x = np.stack([preprocess_item(images[i], spec, color_order=order) for i in idx])
    return x, np.asarray(labels)[idx].astype(np.int64)


def default_data_root() -> Path:
    """Where downloaded datasets go: $EDGECNN_DATA, else ~/.cache/edgecnn/datasets."""
    return Path(os.environ.get("EDGECNN_DATA") or Path.home() / ".cache" / "edgecnn" / "datasets")


def _carve_val(train_images: np.ndarray, train_labels: np.ndarray, val_count: int = VAL_FROM_TRAIN,
               seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Split an official training set into train + a stratified, seeded validation set."""
    n = len(train_labels)
    frac = min(val_count, n // 5) / n
    parts = stratified_split(train_labels, {"train": 1 - frac, "val": frac}, seed=seed)
    return {k: (train_images[v], train_labels[v]) for k, v in parts.items()}


# --- IDX files (MNIST, Fashion-MNIST) ---------------------------------------------------------

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format; gzip-compressed when the name ends in .gz)."""
    path = Path(path)
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise EdgeCNNError(f"{path}: cannot read IDX file ({e})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise EdgeCNNError(f"{path}: not an IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    if len(data) - header != int(np.prod(shape)) * dtype.itemsize:
        raise EdgeCNNError(f"{path}: IDX file is truncated or has trailing bytes (shape {shape})")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem, stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def find_idx_set(root: Path) -> dict[str, Path] | None:
    """The four MNIST-style files in `root` (or torchvision's ROOT/<Name>/raw), or None."""
    stems = {
        "train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
        "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte",
    }
    for folder in (root, root / "FashionMNIST" / "raw", root / "MNIST" / "raw"):
        found = {k: _find_idx(folder, s) for k, s in stems.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    return None


MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _download(torchvision_name: str, root: Path, dataset_name: str) -> None:
    """Fetch a dataset with torchvision (needs network); one clear error when offline."""
    try:
        import torchvision.datasets as tvd
    except ImportError:
        raise EdgeCNNError(f"{dataset_name}: not found in {root} and torchvision is not installed to download it") \
            from None
    cls = getattr(tvd, torchvision_name)
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as e:  # URLError, HTTP errors, checksum failures: all mean "could not fetch"
        raise EdgeCNNError(
            f"{dataset_name}: no local copy in {root} and the download failed "
            f"({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}); "
            "put the files there or pass --data-root FOLDER"
        ) from None


def _check_root(root: str | os.PathLike | None) -> Path | None:
    if root is None:
        return None
    p = Path(root).expanduser()
    if not p.is_dir():
        raise EdgeCNNError(f"data root not found (or not a folder): {p}")
    return p


def load_mnist_like(name: str, root: str | os.PathLike | None = None) -> Dataset:
    """MNIST or Fashion-MNIST from IDX files: --data-root, Debian's fashion-mnist package, or a download."""
    fashion = name == "fashion-mnist"
    given = _check_root(root)
    candidates = [given] if given else ([DEBIAN_FASHION_MNIST] if fashion else []) + [default_data_root()]
    files = next((f for f in (find_idx_set(c) for c in candidates if c.is_dir()) if f), None)
    if files is None:
        target = given or default_data_root()
        target.mkdir(parents=True, exist_ok=True)
        _download("FashionMNIST" if fashion else "MNIST", target, name)
        files = find_idx_set(target)
        if files is None:
            raise EdgeCNNError(f"{name}: downloaded, but no IDX files found under {target}")
    train_x, train_y = read_idx(files["train_images"]), read_idx(files["train_labels"]).astype(np.int64)
    test_x, test_y = read_idx(files["test_images"]), read_idx(files["test_labels"]).astype(np.int64)
    if train_x.ndim != 3 or len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise EdgeCNNError(f"{name}: IDX files in {files['train_images'].parent} do not pair up (images vs labels)")
    splits = _carve_val(train_x, train_y)
    splits["test"] = (test_x, test_y)
    return Dataset(
        name=name,
        classes=FASHION_CLASSES if fashion else MNIST_CLASSES,
        channels=1,
        mean=(0.2860,) if fashion else (0.1307,),
        std=(0.3530,) if fashion else (0.3081,),
        natural=False,
        splits=splits,
    )


def load_cifar10(root: str | os.PathLike | None = None) -> Dataset:
    """CIFAR-10 (torchvision's python-pickle layout under ROOT/cifar-10-batches-py; downloads when online)."""
    target = _check_root(root) or default_data_root()
    if not (target / "cifar-10-batches-py").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        _download("CIFAR10", target, "cifar10")
    import torchvision.datasets as tvd

    try:
        train = tvd.CIFAR10(str(target), train=True, download=False)
        test = tvd.CIFAR10(str(target), train=False, download=False)
    except RuntimeError as e:
        raise EdgeCNNError(f"cifar10: {target}/cifar-10-batches-py is incomplete or corrupt ({e})") from None
    splits = _carve_val(np.asarray(train.data), np.asarray(train.targets, dtype=np.int64))
    splits["test"] = (np.asarray(test.data), np.asarray(test.targets, dtype=np.int64))
    return Dataset(
        name="cifar10",
        classes=CIFAR10_CLASSES,
        channels=3,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        natural=True,
        splits=splits,
    )


# --- folder:PATH (ImageFolder layout) ---------------------------------------------------------


class ImageFiles(Sequence[np.ndarray]):
    """Image files read on access as uint8 greyscale (HxW) or RGB (HxWx3), as a Dataset split holds them."""

    def __init__(self, paths: Sequence[Path], channels: int):
        self.paths = list(paths)
        self.channels = channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice) or (isinstance(i, np.ndarray) and i.ndim == 1) or isinstance(i, list):
            idx = range(len(self))[i] if isinstance(i, slice) else i
            return ImageFiles([self.paths[int(j)] for j in idx], self.channels)
        return _read_rgb_or_gray(self.paths[int(i)], self.channels)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]


def _read_rgb_or_gray(path: Path, channels: int) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise EdgeCNNError(f"cannot read image: {path} (corrupt or not an image)")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if channels == 1:
        return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB) if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def _scan(root: Path, classes: list[str] | None = None) -> tuple[list[str], list[Path], np.ndarray]:
    folders = _class_folders(root)
    if classes is None:
        classes = [f.name for f in folders]
    paths: list[Path] = []
    labels: list[int] = []
    for f in folders:
        if f.name not in classes:
            raise EdgeCNNError(f"{f}: class '{f.name}' is not among the model's classes ({', '.join(classes)})")
        files = _images_in(f)
        paths += files
        labels += [classes.index(f.name)] * len(files)
    return classes, paths, np.asarray(labels, dtype=np.int64)


def load_folder(path: str | os.PathLike, classes: list[str] | None = None, channels: int | None = None) -> Dataset:
    """Users' own images in the ImageFolder layout: PATH/<class>/<images>, split 70/10/20 (stratified,
    seed 0); or PATH/train/<class>/..., PATH/val/..., PATH/test/... (any of them: a folder holding only
    test/ or val/ is an evaluation set).

    `classes` (a model's class names) maps subfolders to those labels, so a held-out folder may hold
    only some of the classes; `channels` (1 or 3) reads the images as the model expects them.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise EdgeCNNError(f"folder dataset not found: {root}")
    sub = {p.name for p in _class_folders(root)}
    present = [k for k in SPLITS if k in sub]
    presplit = bool(present) and (sub <= set(SPLITS) or ("train" in sub and ("test" in sub or "val" in sub)))
    parts: dict[str, tuple[list[Path], np.ndarray]] = {}
    if presplit:
        if classes is None:  # the training classes; without train/, every class folder of the splits
            classes = [f.name for f in _class_folders(root / "train")] if "train" in present else \
                sorted({f.name for k in present for f in _class_folders(root / k)})
        for name in present:
            _, p, lab = _scan(root / name, classes)
            parts[name] = (p, lab)
    else:
        classes, paths, labels = _scan(root, classes)
    if len(classes) == 0:
        raise EdgeCNNError(f"{root}: no class subfolders (expected {root}/<class name>/<image files>)")
    n_found = sum(len(p) for p, _ in parts.values()) if presplit else len(paths)
    if n_found == 0:
        raise EdgeCNNError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES[:4])}, ...) in its class subfolders")
    if len(classes) < 2:
        raise EdgeCNNError(f"{root}: a classifier needs at least 2 class subfolders, found {len(classes)}")
    if not presplit:
        idx = stratified_split(labels, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=0)
        parts = {k: ([paths[i] for i in v], labels[v]) for k, v in idx.items()}
    elif "val" not in parts and "train" in parts:
        p, lab = parts["train"]
        idx = stratified_split(lab, {"train": 0.9, "val": 0.1}, seed=0)
        parts.update({k: ([p[i] for i in v], lab[v]) for k, v in idx.items()})

    # Greyscale data stays 1-channel (cheaper models); any real colour makes it RGB.
    first = next(p for p, _ in (parts[k] for k in (*SPLITS,) if k in parts) if len(p))
    rng = np.random.default_rng(0)
    sample = [first[i] for i in rng.choice(len(first), size=min(64, len(first)), replace=False)]
    if channels is None:
        colour = False
        for p in sample:
            img = _read_rgb_or_gray(p, 3)
            colour = colour or bool(np.any(img[..., 0] != img[..., 1]) or np.any(img[..., 1] != img[..., 2]))
        channels = 3 if colour else 1
    pixels = [(_read_rgb_or_gray(p, channels).reshape(-1, channels) / 255.0) for p in sample]
    mean = tuple(round(float(np.mean([px.mean(0)[c] for px in pixels])), 4) for c in range(channels))
    std = tuple(round(max(float(np.mean([px.std(0)[c] for px in pixels])), 1e-3), 4) for c in range(channels))
    return Dataset(
        name=f"folder:{root}",
        classes=classes,
        channels=channels,
        mean=mean,
        std=std,
        natural=channels == 3,
        splits={k: (ImageFiles(p, channels), np.asarray(lab, dtype=np.int64)) for k, (p, lab) in parts.items()},
        flat=not presplit,
    )


def series_input_spec(ds: Dataset) -> dict:
    """The manifest `input` block for a series dataset: per-channel (per-feature) mean/std of its training split."""
    spec = series_spec(ds.channels, int(ds.length or 1), [0.0] * ds.channels, [1.0] * ds.channels,
                       ds.sample_rate)
    if ds.frontend:
        n = feature_count(ds.frontend)
        spec = series_spec(ds.channels, int(ds.length or 1), [0.0] * n, [1.0] * n, ds.sample_rate, ds.frontend)
        mean, std = fit_normalization(ds.split("train")[0], spec)
    else:
        mean, std = list(ds.mean), list(ds.std)
    return series_spec(ds.channels, int(ds.length or 1), mean, std, ds.sample_rate, ds.frontend)
