"""Users' own small datasets: short runs, any input size, BatchNorm on small data, chance detection,
whole-folder evaluation, transfer learning from a local weights file.

The colour data is real: square patches cut from three of OpenCV's sample photos (a baboon, fruit,
a circuit board; `edgecnn.data.photos`), train/val/test from disjoint regions of each photo.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecnn.cli import main
from edgecnn.data import load_dataset
from edgecnn.data.photos import make_photo_patches
from edgecnn.train.checkpoint import read_checkpoint

# Many runs here: one intra-op thread each (see tests/test_train.py's one_thread).
TRAIN = ("--threads", "1", "--seed", "0")


def cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """450 real 32 px colour patches, 3 classes, split train/val/test by photo region."""
    return make_photo_patches(tmp_path_factory.mktemp("photos") / "patches", size=32)


@pytest.fixture(scope="module")
def photo_ckpt(photos, tmp_path_factory) -> Path:
    """simplecnn trained briefly on the photo patches (3 epochs, 32 px)."""
    out = tmp_path_factory.mktemp("photo-run")
    assert main(["train", "simplecnn", "--data", f"folder:{photos}", "--epochs", "3", "--out", str(out),
                 *TRAIN]) == 0
    return out / "best.pt"


def test_photo_patches_are_reproducible_and_split_by_region(tmp_path):
    a = make_photo_patches(tmp_path / "a", size=32, counts={"train": 4, "val": 2, "test": 2})
    b = make_photo_patches(tmp_path / "b", size=32, counts={"train": 4, "val": 2, "test": 2})
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert len(files) == 3 * 8
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    ds = load_dataset(f"folder:{a}")
    assert ds.classes == ["animal", "circuit", "fruit"] and ds.channels == 3 and not ds.flat
    assert [len(ds.split(s)[1]) for s in ("train", "val", "test")] == [12, 6, 6]


@pytest.mark.parametrize("limit", [1, 4, 200, 256])
def test_one_epoch_works_for_any_train_limit(tmp_path, capsys, limit):
    """The one-cycle schedule used to divide by zero at 4 steps (200 or 256 images at batch 64)."""
    out = tmp_path / "run"
    rc, stdout, err = cli(capsys, "train", "lenet5", "--epochs", "1", "--train-limit", limit, "--out", out, *TRAIN)
    assert rc in (0, 3), err  # 3: trained, but (1 epoch on a few images) still at chance: flagged
    assert "Traceback" not in err and "internal error" not in err
    ckpt = read_checkpoint(out / "best.pt")
    assert ckpt["epoch"] == 1 and ckpt["train_args"]["train_limit"] == limit
    assert (rc == 3) == ckpt["metrics"]["at_chance"] == ("never left chance" in err)


def test_a_failed_run_leaves_no_empty_out_folder(photos, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(photos, data)
    (data / "val" / "animal" / "0000.png").write_bytes(b"not an image")  # read once training starts
    out = tmp_path / "run"
    rc, _, err = cli(capsys, "train", "lenet5", "--data", f"folder:{data}", "--epochs", "1", "--out", out, *TRAIN)
    assert rc == 2 and "cannot read image" in err
    assert not out.exists()


def test_small_colour_run_records_test_and_chance(photo_ckpt):
    run = photo_ckpt.parent
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["test"]["n"] == 90 and summary["at_chance"] is False


def test_data_report_lines(photos):
    from edgecnn.train.trainer import data_report

    lines = data_report(load_dataset(f"folder:{photos}"))
    assert lines[0].split() == ["train", "300", "images:", "animal", "100,", "circuit", "100,", "fruit", "100"]
    assert "val" in lines[1] and "60 images" in lines[1]
    assert "cannot select a best epoch reliably" in lines[-1]  # 60 val images: one image = 1.7 points
    digits = data_report(load_dataset("digits"))
    assert "10 classes, min" in digits[0] and not any("note:" in line for line in digits)
