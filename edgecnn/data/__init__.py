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

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "folder:PATH", "ts:DIR", "csv:DIR", "wav:DIR")
_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "cifar-10": "cifar10"}


def load_dataset(name: str, root: str | None = None, *, classes: list[str] | None = None,
                 channels: int | None = None, series: dict | None = None, input_spec: dict | None = None) -> Dataset:
    """Load a named dataset: digits (embedded), mnist, fashion-mnist, cifar10, folder:PATH.

    `root` is the folder holding the files (IDX .gz for mnist/fashion-mnist, torchvision's layout for
    cifar10); without it Debian's /usr/share/datasets/fashion-mnist, then ~/.cache/edgecnn/datasets
    (downloading when online) are used. `classes`/`channels` (a model's) apply to folder:PATH: see
    `load_folder`.

    Series data (edgecnn/data/series.py): ts:DIR (UCR/UEA), csv:DIR, wav:DIR. `series` holds the
    training options (sample_rate, window, hop, resample, frontend); `input_spec`, a model's series
    input block, cuts csv:/wav: recordings the way that model was trained (its length, rate, front end).
    """
    from .series import is_series_name

    if is_series_name(name):
        return _load_series(name, classes, dict(series or {}), input_spec)
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


def _load_series(name: str, classes: list[str] | None, opts: dict, spec: dict | None) -> Dataset:
    from ..series import is_series
    from .series import load_csv, load_ts, load_wav

    if spec is not None and is_series(spec):  # a trained model's windows: its length, rate and front end
        opts = {"sample_rate": spec.get("sample_rate"), "window": spec["length"], "resample": opts.get("resample"),
                "frontend": spec.get("frontend") or "none"}
    scheme, path = name.split(":", 1)
    rate = opts.get("sample_rate")
    if scheme == "ts":
        for k in ("window", "hop") if spec is None else ():
            if opts.get(k) is not None:
                raise EdgeCNNError(f"--{k} applies to csv:/wav: recordings; a .ts archive holds its cases as they are")
        return load_ts(path, rate)
    if scheme == "csv":
        return load_csv(path, rate, opts.get("window"), opts.get("hop"), classes=classes)
    return load_wav(path, rate, opts.get("window"), opts.get("hop"), bool(opts.get("resample")),
                    opts.get("frontend", "mfcc"), classes=classes)


__all__ = ["DATASETS", "Dataset", "default_input_spec", "evaluation_split", "load_dataset", "preprocessed",
           "read_idx", "same_dataset"]
