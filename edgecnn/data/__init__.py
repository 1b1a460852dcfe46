"""Datasets (host side). `load_dataset(name)` returns uint8 images + labels per split."""

from __future__ import annotations

from .datasets import Dataset, default_input_spec, load_digits, preprocessed

_LOADERS = {"digits": load_digits}


def load_dataset(name: str, root: str | None = None) -> Dataset:
    """Load a named dataset: digits (embedded), mnist, fashion-mnist, cifar10, folder:PATH."""
    from ..errors import EdgeCNNError

    if name in _LOADERS:
        return _LOADERS[name]()
    raise EdgeCNNError(f"unknown dataset '{name}'; choose digits, mnist, fashion-mnist, cifar10 or folder:PATH")


__all__ = ["Dataset", "default_input_spec", "load_dataset", "preprocessed"]
