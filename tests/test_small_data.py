"""Users' own small datasets: short runs, any input size, BatchNorm on small data, chance detection,
whole-folder evaluation, transfer learning from a local weights file.

The colour data is real: square patches cut from three of OpenCV's sample photos (a baboon, fruit,
a circuit board; `edgecnn.data.photos`), train/val/test from disjoint regions of each photo.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

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
    assert re.search(r"10 classes, (min \d+|\d+ each)", digits[0]) and not any("note:" in ln for ln in digits)


# --- any input size ----------------------------------------------------------------------------


def _train_and_export(capsys, tmp_path, model, data, size, formats="onnx,tflite"):
    run, bundle = tmp_path / f"{model}{size}", tmp_path / f"{model}{size}-bundle"
    rc, _, err = cli(capsys, "train", model, "--data", data, "--img-size", size, "--epochs", "1",
                     "--train-limit", 300, "--out", run, *TRAIN)
    assert rc in (0, 3), err
    ckpt = read_checkpoint(run / "best.pt")
    assert (ckpt["input"]["height"], ckpt["input"]["width"]) == (size, size)
    assert ckpt["model"]["options"] == ({} if size == 32 else {"input_size": size})
    # --allow-chance: one epoch on 300 images need not have learnt; this is about shapes
    rc, out, err = cli(capsys, "export", run / "best.pt", "--formats", formats, "--out", bundle, "--allow-chance")
    assert rc == 0, err
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["input"]["height"] == size
    assert all(a["verified"]["top1_agreement"] == 1.0 for a in manifest["artifacts"])
    return manifest


def test_lenet5_96px_and_simplecnn_28px_train_and_export(photos, tmp_path, capsys):
    """The two shapes that crashed (mat1 and mat2 shapes cannot be multiplied): computed flatten."""
    m = _train_and_export(capsys, tmp_path, "lenet5", "digits", 96, formats="onnx")
    assert {a["format"] for a in m["artifacts"]} == {"onnx"}
    _train_and_export(capsys, tmp_path, "simplecnn", f"folder:{photos}", 28, formats="onnx")


@pytest.mark.slow
@pytest.mark.parametrize("size", [28, 32, 64, 96])
@pytest.mark.parametrize("model", ["lenet5", "simplecnn"])
def test_every_size_trains_and_exports(photos, tmp_path, capsys, model, size):
    """ONNX and TFLite (LiteRT conversion takes most of the time, hence slow)."""
    data = "digits" if model == "lenet5" else f"folder:{photos}"
    _train_and_export(capsys, tmp_path, model, data, size)


def test_default_size_architecture_is_unchanged():
    """Saved 32 px checkpoints (export/lenet5-digits, users' runs) still load: same tensors."""
    from edgecnn.models import build_model, count_params

    assert count_params(build_model("lenet5", 10, 1)) == 61_706
    assert count_params(build_model("simplecnn", 10, 3)) == 1_147_466
    shapes = {k: tuple(v.shape) for k, v in build_model("lenet5", 10, 1).state_dict().items()}
    assert shapes["classifier.1.weight"] == (120, 400)
    from edgecnn.errors import EdgeCNNError

    with pytest.raises(EdgeCNNError, match="at least 16 px"):
        build_model("lenet5", 10, 1, input_size=12)


# --- BatchNorm on small data ---------------------------------------------------------------------


def test_mobilenet_v3_small_leaves_chance_on_small_colour_data(photos, tmp_path, capsys):
    """torchvision's MobileNetV3 BatchNorm momentum (0.01) left eval mode at exactly 1/3 on such data.

    Measured with the BatchNorm re-estimation, 6 epochs at 32 px: test 0.92 on the first patch set,
    0.58-0.74 on this one; without it 0.333 in every epoch (see docs/training.md).
    """
    out = tmp_path / "mnv3"
    rc, stdout, err = cli(capsys, "train", "mobilenet_v3_small", "--data", f"folder:{photos}", "--img-size", 32,
                          "--epochs", 6, "--out", out, *TRAIN)
    assert rc == 0, err
    assert "BatchNorm statistics are re-estimated" in stdout and "top-5" not in stdout  # 3 classes
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["at_chance"] is False
    # chance 0.333 + two binomial standard errors on 90 images = 0.43; measured 0.58 and >= 0.6 in
    # two runs of this test (shared CPU), exactly 0.333 without the re-estimation; with the small-data
    # defaults (AdamW, batch 16) 0.656 / 0.744 / 0.711 for seeds 0 / 1 / 2
    assert summary["test"]["top1"] >= 0.45, summary["test"]


# --- chance level --------------------------------------------------------------------------------


def test_chance_level_run_is_flagged_and_export_refuses_it(tmp_path, capsys):
    out = tmp_path / "run"
    # lr 1e-12: the seeded initial weights stay as they are, a model that has learnt nothing
    rc, _, err = cli(capsys, "train", "lenet5", "--epochs", "1", "--train-limit", 64, "--lr", "1e-12",
                     "--out", out, *TRAIN)
    assert rc == 3 and "never left chance" in err
    assert read_checkpoint(out / "best.pt")["metrics"]["at_chance"] is True
    rc, _, err = cli(capsys, "export", out / "best.pt", "--formats", "onnx", "--out", tmp_path / "b")
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "at chance level" in lines[0] and "--allow-chance" in lines[0]
    assert not (tmp_path / "b").exists()
    rc, stdout, err = cli(capsys, "export", out / "best.pt", "--formats", "onnx", "--out", tmp_path / "b",
                          "--allow-chance")
    assert rc == 0 and "--allow-chance: exporting a model at chance level" in stdout


def test_chance_arithmetic():
    from edgecnn.train.chance import above_chance, chance_accuracy

    labels = np.repeat([0, 1, 2], 20)
    assert chance_accuracy(labels) == pytest.approx(1 / 3)
    assert not above_chance(1 / 3, labels) and not above_chance(0.45, labels) and above_chance(0.6, labels)
    skewed = np.array([0] * 90 + [1] * 10)
    assert not above_chance(0.9, skewed)  # always predicting class 0
    assert above_chance(0.97, skewed)


# --- whole-folder evaluation ---------------------------------------------------------------------


def test_eval_uses_a_whole_flat_folder_and_saves_per_image_results(photos, photo_ckpt, tmp_path, capsys):
    flat = make_photo_patches(tmp_path / "flat", size=32, layout="flat", splits=("test",),
                              counts={"test": 20}, seed=7)
    n_files = len(list(flat.rglob("*.png")))
    assert n_files == 60
    preds, wrong = tmp_path / "preds.csv", tmp_path / "wrong"
    rc, out, err = cli(capsys, "eval", photo_ckpt, "--data", f"folder:{flat}", "--out", tmp_path,
                       "--save-predictions", preds, "--save-misclassified", wrong)
    assert rc == 0, err
    assert f"/all: {n_files} images (every image of the folder)" in out
    rows = list(csv.DictReader(preds.open()))
    assert len(rows) == n_files and {Path(r["file"]) for r in rows} == set(flat.rglob("*.png"))
    top1 = float(re.search(r"top-1 ([0-9.]+)", out).group(1))
    assert np.mean([int(r["correct"]) for r in rows]) == pytest.approx(top1, abs=1e-4)
    n_wrong = sum(1 for r in rows if r["correct"] == "0")
    assert len(list(wrong.rglob("*.png"))) == n_wrong and f"{n_wrong} misclassified images" in out
    # the training folder itself: its test split (never trained on); --split all: every image
    rc, out, _ = cli(capsys, "eval", photo_ckpt, "--out", tmp_path)
    assert rc == 0 and "/test: 90 images (the test split, never trained on)" in out
    rc, out, _ = cli(capsys, "eval", photo_ckpt, "--split", "all", "--out", tmp_path, "--json")
    assert json.loads(out)["n"] == 450


@pytest.mark.parametrize("only", ["test", "val"])
def test_a_folder_with_only_one_split_evaluates(photo_ckpt, tmp_path, capsys, only):
    data = make_photo_patches(tmp_path / "d", size=32, splits=(only,), counts={only: 5})
    rc, out, err = cli(capsys, "eval", photo_ckpt, "--data", f"folder:{data}", "--out", tmp_path)
    assert rc == 0, err
    assert f"/{only}: 15 images" in out
    import shutil

    shutil.rmtree(data / only / "fruit")  # a held-out folder with some of the classes: labels by name
    rc, out, err = cli(capsys, "eval", photo_ckpt, "--data", f"folder:{data}", "--out", tmp_path, "--json")
    m = json.loads(out)
    assert rc == 0 and m["n"] == 10 and m["per_class"]["fruit"] is None


def test_export_test_and_verify_use_the_whole_flat_folder(photo_ckpt, tmp_path, capsys):
    flat = make_photo_patches(tmp_path / "flat", size=32, layout="flat", splits=("test",),
                              counts={"test": 10}, seed=3)
    bundle = tmp_path / "bundle"
    rc, out, err = cli(capsys, "export", photo_ckpt, "--formats", "onnx", "--out", bundle,
                       "--test", f"folder:{flat}", "--max-drop", "100")
    assert rc == 0, err
    assert "verification: 30 images of folder:" in out
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["verification"]["samples"] == 30 and manifest["verification"]["split"] == "all"
    rc, out, err = cli(capsys, "verify", bundle, "--data", f"folder:{flat}", "--max-drop", "100")
    assert rc == 0 and "verifying on 30 images of folder:" in out, err


# --- transfer learning from a local weights file -------------------------------------------------


@pytest.fixture(scope="module")
def fashion_weights(tmp_path_factory) -> Path:
    """LeNet-5 pre-trained briefly on real Fashion-MNIST (Debian's files): a weights file on disk."""
    out = tmp_path_factory.mktemp("fashion-run")
    rc = main(["train", "lenet5", "--data", "fashion-mnist", "--epochs", "1", "--train-limit", "1000",
               "--out", str(out), *TRAIN])
    assert rc == 0
    return out / "best.pt"


def test_weights_fine_tune_copies_the_backbone_and_replaces_the_classifier(fashion_weights, tmp_path, capsys):
    out = tmp_path / "digits"
    rc, stdout, err = cli(capsys, "train", "lenet5", "--data", "digits", "--weights", fashion_weights,
                          "--freeze-backbone", 2, "--epochs", 2, "--train-limit", 100, "--out", out, *TRAIN)
    assert rc in (0, 3), err
    assert "classifier 'classifier.5' replaced (10 -> 10 classes)" in stdout  # other class names
    assert "backbone frozen: only the classifier learns" in stdout
    source, tuned = read_checkpoint(fashion_weights), read_checkpoint(out / "best.pt")
    for k, v in source["state_dict"].items():  # frozen for every epoch: the backbone is the file's
        same = torch.equal(v, tuned["state_dict"][k])
        assert same == (not k.startswith("classifier.5.")), k
    assert tuned["input"]["mean"] == source["input"]["mean"]  # the pre-training's normalization
    assert tuned["train_args"]["weights"] == str(fashion_weights) and tuned["train_args"]["weights_sha256"]


def test_torchvision_weights_layout_loads_with_imagenet_defaults(tmp_path):
    """A torchvision .pth file (the layout of mobilenet_v2-7ebf99e0.pth: a 1000-class state_dict)."""
    import torchvision

    from edgecnn.models import build_model
    from edgecnn.train.weights import input_defaults, load_transfer_weights, read_weights

    path = tmp_path / "mobilenet_v2-local.pth"
    torch.manual_seed(0)
    reference = torchvision.models.mobilenet_v2(num_classes=1000).state_dict()
    torch.save(reference, path)
    model = build_model("mobilenet_v2", 3, 3)
    info = load_transfer_weights(model, path, "mobilenet_v2")
    assert info.head == "classifier.1" and info.head_replaced and info.imagenet
    assert info.loaded == len(reference) - 2
    assert torch.equal(model.state_dict()["features.0.0.weight"], reference["features.0.0.weight"])
    assert model.state_dict()["classifier.1.weight"].shape == (3, 1280)
    start = input_defaults(*read_weights(path, "mobilenet_v2"), 3)
    assert start["size"] == 224 and start["mean"] == (0.485, 0.456, 0.406)


def test_bad_weights_are_one_clear_line(fashion_weights, tmp_path, capsys):
    import torchvision

    from edgecnn.models import build_model

    torch.save(torchvision.models.resnet18(num_classes=1000).state_dict(), tmp_path / "resnet18.pth")
    torch.save(build_model("lenet5", 10, 1, input_size=64).state_dict(), tmp_path / "lenet64.pth")
    (tmp_path / "corrupt.pth").write_bytes(fashion_weights.read_bytes()[:5000])
    torch.save({"lr": 0.1}, tmp_path / "no_tensors.pth")
    cases = {
        "other architecture": ("mobilenet_v2", tmp_path / "resnet18.pth",
                               "lacks tensor 'features.0.0.weight' [32, 1, 3, 3] (260 of the model's tensors "
                               "missing; the file's first is 'conv1.weight' [64, 3, 7, 7]"),  # digits: grey
        "other checkpoint": ("simplecnn", fashion_weights, "is an edgecnn 'lenet5' checkpoint, not 'simplecnn'"),
        "other shapes": ("lenet5", tmp_path / "lenet64.pth",
                         "first mismatching tensor 'classifier.1.weight': file [120, 2704] vs model [120, 400]"),
        "corrupt": ("lenet5", tmp_path / "corrupt.pth", "not a readable weights file"),
        "no tensors": ("lenet5", tmp_path / "no_tensors.pth", "holds no state_dict"),
        "missing": ("lenet5", tmp_path / "nope.pth", "weights file not found"),
    }
    for what, (model, weights, message) in cases.items():
        out = tmp_path / what.replace(" ", "-")
        rc, _, err = cli(capsys, "train", model, "--weights", weights, "--epochs", 1, "--out", out, *TRAIN)
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and message in lines[0], (what, err)
        assert not out.exists(), what
