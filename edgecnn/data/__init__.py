"""Datasets (host side). `load_dataset(name)` returns uint8 images + labels per split."""

from __future__ import annotations

from pathlib import Path

from ..errors import EdgeCNNError
from .datasets import (
    Dataset,
    default_input_spec,
    evaluation_split,
    load_cifar10,
    load_digits,
    load_folder,
    load_mnist_like,
    preprocessed,
    read_idx,
    same_dataset,
)

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "folder:PATH")
_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "cifar-10": "cifar10"}


def load_dataset(name: str, root: str | None = None, *, classes: list[str] | None = None,
                 channels: int | None = None) -> Dataset:
    """Load a named dataset: digits (embedded), mnist, fashion-mnist, cifar10, folder:PATH.

    `root` is the folder holding the files (IDX .gz for mnist/fashion-mnist, torchvision's layout for
    cifar10); without it Debian's /usr/share/datasets/fashion-mnist, then ~/.cache/edgecnn/datasets
    (downloading when online) are used. `classes`/`channels` (a model's) apply to folder:PATH: see
    `load_folder`.
    """
    key = _ALIASES.get(name.lower(), name.lower()) if not name.startswith("folder:") else name
    if key == "digits":
        return load_digits()
    if key in ("mnist", "fashion-mnist"):
        return load_mnist_like(key, root)
    if key == "cifar10":
        return load_cifar10(root)
    if key.startswith("folder:"):
        return load_folder(key[len("folder:"):], classes=classes, channels=channels)
    hint = f" (to use the folder '{name}', write folder:{name})" if Path(name).is_dir() else ""
    raise EdgeCNNError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}{hint}")


__all__ = ["DATASETS", "Dataset", "default_input_spec", "evaluation_split", "load_dataset", "preprocessed",
           "read_idx", "same_dataset"]
