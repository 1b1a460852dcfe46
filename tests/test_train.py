"""Training and evaluation through the CLI and the fit() API, on the embedded real digits."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edgecnn.cli import main
from edgecnn.data import default_input_spec, load_dataset
from edgecnn.errors import EdgeCNNError
from edgecnn.models import build_model
from edgecnn.train.checkpoint import FORMAT, load_checkpoint
from edgecnn.train.trainer import fit

REPO = Path(__file__).resolve().parents[1]


def cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def one_thread():
    """Unit tests call fit() directly: one intra-op thread avoids OpenMP stalls on a shared 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_digits_checkpoint_is_data_and_complete(digits_ckpt):
    ckpt = torch.load(digits_ckpt, map_location="cpu", weights_only=True)  # data, never code
    assert ckpt["format"] == FORMAT
    assert ckpt["model"] == {"name": "lenet5", "num_classes": 10, "in_channels": 1, "options": {}}
    assert ckpt["classes"] == [str(i) for i in range(10)] and ckpt["dataset"] == "digits"
    spec = ckpt["input"]
    assert (spec["height"], spec["width"], spec["channels"], spec["color"]) == (32, 32, 1, "GRAY")
    assert spec["mean"] == pytest.approx([0.1323]) and spec["std"] == pytest.approx([0.2918])
    assert ckpt["train_args"]["epochs"] == 8 and ckpt["train_args"]["seed"] == 0
    assert ckpt["metrics"]["test_acc"] >= 0.95  # measured on the 1,000 held-out digits
    run = digits_ckpt.parent
    history = json.loads((run / "metrics.json").read_text())["history"]
    assert [r["epoch"] for r in history] == list(range(1, 9))
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert (run / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # its figure: accuracy as a fraction (as in the epoch lines), on an axis fitted to both curves
    from plot_checks import assert_accuracy_axis, axis_titled

    from edgecnn.train.trainer import training_figure

    ax = axis_titled(training_figure(history), "accuracy")
    assert "accuracy" in ax.get_ylabel()
    assert_accuracy_axis(ax, [r["train_acc"] for r in history] + [r["val_acc"] for r in history], scale=1.0)
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["epoch"] == 8 and last["resume"]["epoch"] == 8 and "optimizer" in last["resume"]


def test_eval_cli_reports_accuracy_and_confusion(digits_ckpt, tmp_path, capsys):
    rc, out, _ = cli(capsys, "eval", digits_ckpt, "--data", "digits", "--out", tmp_path)
    assert rc == 0
    top1 = float(re.search(r"top-1 ([0-9.]+)", out).group(1))
    top5 = float(re.search(r"top-5 ([0-9.]+)", out).group(1))
    assert 0.95 <= top1 <= top5
    assert len(re.findall(r"^  \d  [0-9.]+$", out, re.M)) == 10  # per-class accuracy, one line per digit
    png = tmp_path / "best.confusion.test.png"
    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] > 200
    rc, out, _ = cli(capsys, "eval", digits_ckpt, "--split", "val", "--json", "--out", tmp_path)
    m = json.loads(out)
    assert rc == 0 and m["n"] == 400 and np.asarray(m["confusion"]).sum() == 400
    assert np.trace(np.asarray(m["confusion"])) / 400 == pytest.approx(m["top1"])


def test_models_cli_lists_every_model(capsys):
    rc, out, _ = cli(capsys, "models")
    assert rc == 0
    for name in ("lenet5", "simplecnn", "mobilenet_v2", "mobilenet_v3_small", "resnet18"):
        assert re.search(rf"^{name}\s", out, re.M)
    assert re.search(r"^lenet5\s+1x32x32\s+61,706\s+0\.42M", out, re.M)


def _fit_digits(epochs: int, *, resume=None, stop_after: int | None = None, model=None, ema: float = 0.0):
    """LeNet-5 on 600 real digits; returns (model, resume states by epoch)."""
    ds = load_dataset("digits")
    spec = default_input_spec(ds, 32)
    if model is None:
        torch.manual_seed(0)
        model = build_model("lenet5", 10, 1)
    states = {}

    def on_epoch(e):
        buf = io.BytesIO()  # the state must survive a weights_only checkpoint round trip
        torch.save({"weights": e.model.state_dict(), "resume": e.resume_state}, buf)
        buf.seek(0)
        states[e.epoch] = torch.load(buf, weights_only=True)
        if e.epoch == stop_after:
            raise KeyboardInterrupt  # the user pressed Ctrl-C after this epoch was saved

    try:
        fit(model, ds, spec, epochs=epochs, lr=3e-3, batch_size=64, train_limit=600, seed=0, device="cpu",
            resume=resume, on_epoch=on_epoch, progress=False, ema_epochs=ema)
    except KeyboardInterrupt:
        pass
    return model, states


@pytest.mark.parametrize("ema", [0.0, 1.5])
def test_fit_resume_continues_exactly(one_thread, ema):
    straight, straight_states = _fit_digits(4, ema=ema)
    _, first = _fit_digits(4, stop_after=2, ema=ema)
    assert sorted(first) == [1, 2]
    torch.manual_seed(123)  # a different process state: resuming must not depend on it
    resumed = build_model("lenet5", 10, 1)
    resumed.load_state_dict(first[2]["weights"])  # with EMA: the average; the live weights are in "resume"
    resumed, later = _fit_digits(4, resume=first[2]["resume"], model=resumed, ema=ema)
    assert sorted(later) == [3, 4]
    if ema:  # what is validated and saved is the average, not the live weights training continues from
        saved, live = first[2]["weights"], first[2]["resume"]["live"]
        assert any(not torch.equal(v, live[k]) for k, v in saved.items())
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    def measured(history):  # everything but wall time
        return [{k: v for k, v in r.items() if k not in ("seconds", "train_seconds")} for r in history]

    assert measured(later[4]["resume"]["history"]) == measured(straight_states[4]["resume"]["history"])
    assert [r["epoch"] for r in later[4]["resume"]["history"]] == [1, 2, 3, 4]
    assert straight_states[4]["resume"]["history"][-1]["val_acc"] > 0.5  # it did learn


def test_cutmix_mixup_train_on_soft_targets_and_bad_names_are_one_line(one_thread, monkeypatch):
    import torchvision.transforms.v2 as T

    from edgecnn.train.trainer import make_mixer

    with pytest.raises(EdgeCNNError, match="unknown --mix 'cutout'"):
        make_mixer("cutout", 10)
    targets = []
    real_call = T.CutMix.__call__

    def spy(self, *args):  # what the loss receives: soft (N, classes) targets whose rows sum to 1
        out = real_call(self, *args)
        targets.append(out[1])
        return out

    monkeypatch.setattr(T.CutMix, "__call__", spy)
    ds = load_dataset("digits")
    torch.manual_seed(0)
    model = build_model("lenet5", 10, 1)
    history = fit(model, ds, default_input_spec(ds, 32), epochs=4, lr=3e-3, batch_size=64, train_limit=600,
                  seed=0, device="cpu", progress=False, mix="cutmix,mixup")
    assert targets and all(t.shape[1] == 10 and torch.allclose(t.sum(1), torch.ones(len(t))) for t in targets)
    assert any((t.max(1).values < 1).any() for t in targets)  # images really were mixed
    assert history[-1]["val_acc"] > 0.5  # and the model still learns the real labels


def test_cli_resume_extends_an_interrupted_run(tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, _ = cli(capsys, "train", "lenet5", "--epochs", "2", "--train-limit", "500", "--out", out, "--seed", "3")
    assert rc == 0
    first = json.loads((out / "metrics.json").read_text())["history"]
    rc, _, err = cli(capsys, "train", "lenet5", "--epochs", "4", "--out", out)
    assert rc == 2 and "--resume" in err  # an existing run is never silently overwritten
    rc, stdout, _ = cli(capsys, "train", "lenet5", "--epochs", "4", "--out", out, "--resume")
    assert rc == 0 and "epoch 3/4" in stdout and "epoch 1/4" not in stdout
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert history[:2] == first
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["epoch"] == 4 and last["train_args"]["train_limit"] == 500 and last["train_args"]["seed"] == 3
    model, ckpt = load_checkpoint(out / "best.pt")
    assert ckpt["metrics"]["test_acc"] > 0.5


def test_torchrun_two_processes_on_cpu(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "edgecnn", "train", "lenet5", "--data", "digits", "--epochs", "2", "--train-limit", "1200", "--batch-size", "32",
         "--out", str(out), "--seed", "0"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "x2 processes" in proc.stdout
    assert proc.stdout.count("best epoch") == 1  # only rank 0 reports and writes
    model, ckpt = load_checkpoint(out / "best.pt")
    assert ckpt["format"] == FORMAT and not any(k.startswith("module.") for k in ckpt["state_dict"])
    x = torch.zeros(1, 1, 32, 32)
    assert model(x).shape == (1, 10)
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[-1]["val_acc"] > 0.5  # 2 epochs on 1,200 digits, 600 per process: it learns


def _write_png_folder(root: Path) -> None:
    images, labels = load_dataset("digits").split("test")
    for c in (0, 1):
        d = root / str(c)
        d.mkdir(parents=True)
        for i in np.flatnonzero(labels == c)[:5]:
            cv2.imwrite(str(d / f"{i}.png"), images[i])


def test_bad_input_gives_one_clear_line(tmp_path, capsys, digits_ckpt):
    (tmp_path / "empty").mkdir()
    for c in ("a", "b"):
        (tmp_path / "text" / c).mkdir(parents=True)
        (tmp_path / "text" / c / "notes.txt").write_text("no images here")
    # Random bytes make the unpickler fail in many ways (UnpicklingError, IndexError, KeyError, ...).
    for i in range(20):
        (tmp_path / f"random{i}.pt").write_bytes(np.random.default_rng(i).bytes(4096))
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    torch.save(build_model("lenet5", 10, 1).state_dict(), tmp_path / "state_dict.pt")
    real = digits_ckpt.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(real[: len(real) // 2])
    _write_png_folder(tmp_path / "two_classes")
    (tmp_path / "two_classes" / "0").rename(tmp_path / "two_classes" / "a")
    (tmp_path / "two_classes").rename(tmp_path / "other_classes")
    cases = {
        "unknown model": (["train", "vgg99", "--out", tmp_path / "r1"], "unknown model 'vgg99'"),
        "missing data root": (["train", "lenet5", "--data", "fashion-mnist", "--data-root", tmp_path / "nope",
                               "--out", tmp_path / "r2"], "data root not found"),
        "unknown dataset": (["train", "lenet5", "--data", "imagenet", "--out", tmp_path / "r3"], "unknown dataset"),
        "empty folder": (["train", "lenet5", "--data", f"folder:{tmp_path / 'empty'}", "--out", tmp_path / "r4"],
                         "no class subfolders"),
        "non-image folder": (["train", "lenet5", "--data", f"folder:{tmp_path / 'text'}", "--out", tmp_path / "r5"],
                             "no image files"),
        "missing folder": (["eval", digits_ckpt, "--data", f"folder:{tmp_path / 'gone'}"], "not found"),
        **{f"random bytes {i}": (["eval", tmp_path / f"random{i}.pt"], "not a readable edgecnn") for i in range(20)},
        "truncated checkpoint": (["eval", tmp_path / "truncated.pt"], "not a readable edgecnn"),
        "foreign checkpoint": (["eval", tmp_path / "foreign.pt"], "not an edgecnn checkpoint"),
        "bare state_dict": (["eval", tmp_path / "state_dict.pt"], "not an edgecnn checkpoint"),
        "missing checkpoint": (["eval", tmp_path / "none.pt"], "checkpoint not found"),
        "wrong classes": (["eval", digits_ckpt, "--data", f"folder:{tmp_path / 'other_classes'}"],
                          "class 'a' is not among the model's classes"),
        "resume without run": (["train", "lenet5", "--out", tmp_path / "r6", "--resume"], "checkpoint not found"),
        "resume from best.pt": (["train", "lenet5", "--resume", digits_ckpt, "--out", tmp_path / "r7"],
                                "no resume state"),
    }
    for what, (args, message) in cases.items():
        rc, _, err = cli(capsys, *args)
        lines = err.strip().splitlines()
        assert rc == 2, (what, err)
        assert len(lines) == 1 and lines[0].startswith("edgecnn: error: ") and message in lines[0], (what, err)


def test_unreadable_checkpoints_name_their_cause(digits_ckpt, tmp_path):
    """Garbage, a truncated file and a pickle of foreign objects: each one line that says which."""
    import argparse

    from edgecnn.errors import EdgeCNNError
    from edgecnn.train.checkpoint import read_checkpoint

    garbage, truncated, foreign = tmp_path / "g.pt", tmp_path / "t.pt", tmp_path / "f.pt"
    garbage.write_bytes(b"not a checkpoint at all\n")
    truncated.write_bytes(digits_ckpt.read_bytes()[:30000])
    torch.save({"args": argparse.Namespace(lr=0.1)}, foreign)
    for path, cause in ((garbage, "not a PyTorch file"), (truncated, "truncated"),
                        (foreign, "pickles the Python object argparse.Namespace")):
        with pytest.raises(EdgeCNNError, match=cause) as info:
            read_checkpoint(path)
        assert "\n" not in str(info.value)
    assert torch.load(digits_ckpt, weights_only=True)["format"]  # the real one still loads
