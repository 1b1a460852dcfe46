"""Datasets: embedded digits, IDX files (Debian's real Fashion-MNIST), folder datasets, torch wrapper."""

from __future__ import annotations

import gzip
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecnn.data import load_dataset, preprocessed, read_idx
from edgecnn.data.datasets import DEBIAN_FASHION_MNIST, default_input_spec, stratified_split
from edgecnn.errors import EdgeCNNError

needs_fashion = pytest.mark.skipif(not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists(),
                                   reason="Debian's fashion-mnist package is not installed")


def _fingerprints(images) -> set[bytes]:
    return {np.ascontiguousarray(im).tobytes() for im in images}


def test_digits_splits_are_deterministic_disjoint_and_stratified():
    a, b = load_dataset("digits"), load_dataset("digits")
    sizes = {k: len(a.split(k)[1]) for k in ("train", "val", "test")}
    assert sizes == {"train": 3600, "val": 400, "test": 1000}
    for k in sizes:
        assert np.array_equal(a.split(k)[0], b.split(k)[0]) and np.array_equal(a.split(k)[1], b.split(k)[1])
        assert np.bincount(a.split(k)[1]).tolist() == [sizes[k] // 10] * 10  # every class equally
    train, val, test = (_fingerprints(a.split(k)[0]) for k in ("train", "val", "test"))
    # Images are real handwriting: no image of one split reappears in another.
    assert not (train & test) and not (train & val) and not (val & test)


def test_stratified_split_is_seeded_and_partitions():
    labels = np.repeat(np.arange(4), 50)
    s0 = stratified_split(labels, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=0)
    again = stratified_split(labels, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=0)
    other = stratified_split(labels, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=1)
    assert all(np.array_equal(s0[k], again[k]) for k in s0)
    assert not np.array_equal(s0["test"], other["test"])
    together = np.concatenate(list(s0.values()))
    assert sorted(together.tolist()) == list(range(200))  # disjoint and complete
    assert [len(s0[k]) for k in ("train", "val", "test")] == [140, 20, 40]


@needs_fashion
def test_idx_reader_on_debian_fashion_mnist():
    x = read_idx(DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz")
    y = read_idx(DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and np.bincount(y).tolist() == [1000] * 10
    assert 0.25 < x.mean() / 255 < 0.32  # Fashion-MNIST's known mean intensity is 0.286


@needs_fashion
def test_fashion_mnist_autodetects_debian_path_and_carves_val():
    ds = load_dataset("fashion-mnist")  # no --data-root: found in /usr/share/datasets/fashion-mnist
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot" and ds.channels == 1
    tr, va, te = (ds.split(k)[1] for k in ("train", "val", "test"))
    assert (len(tr), len(va), len(te)) == (55000, 5000, 10000)
    assert np.bincount(va).tolist() == [500] * 10
    same = load_dataset("fashion-mnist", root=str(DEBIAN_FASHION_MNIST))
    assert np.array_equal(same.split("val")[0], ds.split("val")[0])


def test_idx_reader_rejects_corrupt_and_truncated(tmp_path):
    bad = tmp_path / "bad-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(b"not an idx file at all"))
    with pytest.raises(EdgeCNNError, match="not an IDX file"):
        read_idx(bad)
    # A valid header promising 2x3x3 images with only one image's bytes behind it.
    short = tmp_path / "short-idx3-ubyte"
    short.write_bytes(bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") * 2 + bytes(9))
    with pytest.raises(EdgeCNNError, match="truncated"):
        read_idx(short)
    notgz = tmp_path / "x-idx3-ubyte.gz"
    notgz.write_bytes(b"plain bytes, not gzip")
    with pytest.raises(EdgeCNNError, match="cannot read IDX"):
        read_idx(notgz)


def test_idx_folder_given_as_data_root(tmp_path):
    """A folder holding the four IDX files (here: real digits written as IDX) loads as mnist."""
    digits = load_dataset("digits")
    x, y = digits.split("train")

    def write(name, arr, code):
        header = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
        (tmp_path / name).write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))

    write("train-images-idx3-ubyte.gz", x[:500], 8)
    write("train-labels-idx1-ubyte.gz", y[:500], 8)
    write("t10k-images-idx3-ubyte.gz", x[500:700], 8)
    write("t10k-labels-idx1-ubyte.gz", y[500:700], 8)
    ds = load_dataset("mnist", root=str(tmp_path))
    assert len(ds.split("test")[1]) == 200 and np.array_equal(ds.split("test")[0], x[500:700])
    assert len(ds.split("train")[1]) + len(ds.split("val")[1]) == 500


def test_missing_data_root_is_one_clear_error(tmp_path):
    with pytest.raises(EdgeCNNError, match="data root not found"):
        load_dataset("fashion-mnist", root=str(tmp_path / "nope"))
    with pytest.raises(EdgeCNNError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")


def _write_digit_folder(root: Path, per_class: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Real digit images as PNG files in ImageFolder layout (class per subfolder)."""
    images, labels = load_dataset("digits").split("test")
    keep = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])
    for i in keep:
        d = root / f"digit_{labels[i]}"
        d.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(d / f"{i:04d}.png"), images[i])
    return images[keep], labels[keep]


def test_folder_dataset_reads_real_pngs(tmp_path):
    images, labels = _write_digit_folder(tmp_path / "digits")
    (tmp_path / "digits" / "digit_3" / "notes.txt").write_text("not an image, ignored")
    ds = load_dataset(f"folder:{tmp_path / 'digits'}")
    assert ds.classes == [f"digit_{c}" for c in range(10)]
    assert ds.channels == 1 and not ds.natural  # greyscale PNGs stay 1-channel
    sizes = {k: len(ds.split(k)[1]) for k in ("train", "val", "test")}
    assert sizes == {"train": 80, "val": 10, "test": 30}  # 12 per class: 8 / 1 / the remaining 3
    # What was written is what is read back (pixel for pixel), with the right label.
    found = {im.tobytes(): lab for k in sizes for im, lab in zip(ds.split(k)[0], ds.split(k)[1])}
    assert found == {im.tobytes(): int(lab) for im, lab in zip(images, labels)}
    again = load_dataset(f"folder:{tmp_path / 'digits'}")
    assert np.array_equal(again.split("test")[1], ds.split("test")[1])


def test_folder_dataset_with_train_test_subfolders(tmp_path):
    _write_digit_folder(tmp_path / "d" / "train", per_class=10)
    _write_digit_folder(tmp_path / "d" / "test", per_class=3)
    ds = load_dataset(f"folder:{tmp_path / 'd'}")
    assert len(ds.split("test")[1]) == 30
    assert len(ds.split("train")[1]) + len(ds.split("val")[1]) == 100 and len(ds.split("val")[1]) == 10


def test_folder_dataset_errors(tmp_path):
    with pytest.raises(EdgeCNNError, match="folder dataset not found"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgeCNNError, match="no class subfolders"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    for c in ("a", "b"):
        (tmp_path / "text" / c).mkdir(parents=True)
        (tmp_path / "text" / c / "readme.txt").write_text("hello")
    with pytest.raises(EdgeCNNError, match="no image files"):
        load_dataset(f"folder:{tmp_path / 'text'}")
    for c in ("a", "b"):
        (tmp_path / "corrupt" / c).mkdir(parents=True)
        (tmp_path / "corrupt" / c / "x.png").write_bytes(b"\x89PNG but not really")
    with pytest.raises(EdgeCNNError, match="cannot read image"):
        load_dataset(f"folder:{tmp_path / 'corrupt'}")


def test_torch_split_is_exactly_the_runtime_preprocessing():
    import torch

    from edgecnn.data.torchdata import PreprocessedSplit

    ds = load_dataset("digits")
    spec = default_input_spec(ds, 32)
    x_np, y_np = preprocessed(ds, "val", spec)
    split = PreprocessedSplit(ds, "val", spec)
    xs = torch.stack([split[i][0] for i in range(len(split))]).numpy()
    assert np.array_equal(xs, x_np) and np.array_equal(split.labels.numpy(), y_np)

    aug = PreprocessedSplit(ds, "val", spec, augment=True)
    torch.manual_seed(0)
    a = aug[0][0]
    torch.manual_seed(0)
    b = aug[0][0]
    assert a.shape == (1, 32, 32) and torch.equal(a, b)  # seeded
    assert not torch.equal(a, split[0][0])  # but it does change the image
