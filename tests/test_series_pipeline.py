"""Series data end to end on real UCR/UEA sets shipped in aeon's wheel: loaders, train, eval, export, runtime.

BasicMotions (smartwatch accelerometer + gyro, 6 x 100, 4 classes, 40 train / 40 test) trains in seconds;
the 3-seed accuracy bars are in benchmarks/series_accuracy.py and the slow tests of test_series_tflm.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgecnn.data import default_input_spec, load_dataset, preprocessed
from edgecnn.errors import EdgeCNNError

aeon_datasets = pytest.importorskip("aeon.datasets", reason="the series extra: pip install 'edgecnn[series]'")
UEA = Path(aeon_datasets.__file__).parent / "data"
BASIC_MOTIONS = UEA / "BasicMotions"


def run_cli(*args) -> int:
    from edgecnn.cli import main

    return main([str(a) for a in args])


# bm_ckpt, bm_bundle: tests/conftest.py (one cnn1d per session, shared with test_series_run.py)


def test_ts_loader_reads_multivariate_equal_and_unequal_length_archives():
    bm = load_dataset(f"ts:{BASIC_MOTIONS}")
    assert bm.kind == "series" and bm.classes == ["Standing", "Running", "Walking", "Badminton"]
    assert (bm.channels, bm.length) == (6, 100)
    assert [len(bm.split(s)[1]) for s in ("train", "test")] == [40, 40]
    assert np.bincount(bm.split("test")[1]).tolist() == [10, 10, 10, 10]
    jv = load_dataset(f"ts:{UEA / 'JapaneseVowels'}")  # 12 LPC coefficients, 7..29 frames per utterance
    lengths = {len(x) for x in jv.split("train")[0]}
    assert jv.channels == 12 and len(lengths) > 5 and jv.length == max(lengths)
    assert [len(jv.split(s)[1]) for s in ("train", "test")] == [270, 370]
    x, y = preprocessed(jv, "test", default_input_spec(jv, 0))
    assert x.shape == (370, 12, 1, jv.length) and np.isfinite(x).all()


def test_ts_missing_values_and_a_malformed_line(tmp_path, capsys):
    text = (BASIC_MOTIONS / "BasicMotions_TRAIN.ts").read_text()
    head, data = text.split("@data\n", 1)
    rows = data.strip().splitlines()
    d = tmp_path / "gappy"
    d.mkdir()
    first = rows[0].split(":")
    first[0] = ",".join(["?" if i % 10 == 3 else v for i, v in enumerate(first[0].split(","))])
    gappy = ":".join(first)
    (d / "G_TRAIN.ts").write_text(head.replace("@missing false", "@missing true") + "@data\n"
                                  + "\n".join([gappy, *rows[1:]]) + "\n")
    shutil.copy(BASIC_MOTIONS / "BasicMotions_TEST.ts", d / "G_TEST.ts")
    ds = load_dataset(f"ts:{d}")
    assert np.isnan(ds.split("train")[0][0][:, 0]).sum() == 10
    x, _ = preprocessed(ds, "train", default_input_spec(ds, 0))
    assert np.isfinite(x).all()  # missing values became the channel mean

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "B_TRAIN.ts").write_text(head + "@data\n" + "\n".join([rows[0], "1.0,2.0,oops:3.0", *rows[2:]]) + "\n")
    shutil.copy(BASIC_MOTIONS / "BasicMotions_TEST.ts", bad / "B_TEST.ts")
    with pytest.raises(EdgeCNNError, match="B_TRAIN.ts: not a valid .ts file"):
        load_dataset(f"ts:{bad}")
    assert run_cli("train", "cnn1d", "--data", f"ts:{bad}", "--out", tmp_path / "run") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgecnn: error: ") and "B_TRAIN.ts: not a valid .ts file" in err[0]


def _write_csv_recordings(root: Path, ds, split: str, count: int, drop_column_in: int | None = None) -> None:
    """Real BasicMotions cases as CSV recordings in class folders (one column per channel, a header)."""
    xs, ys = ds.split(split)
    for i, (x, y) in enumerate(zip(xs[:count], ys[:count])):
        folder = root / ds.classes[int(y)]
        folder.mkdir(parents=True, exist_ok=True)
        arr = x[:, :-1] if i == drop_column_in else x
        lines = ["ax,ay,az,gx,gy,gz"] + [",".join(f"{v:.6f}" for v in row) for row in arr]
        if i == drop_column_in:
            lines = lines[:1] + [",".join(f"{v:.6f}" for v in x[0])] + lines[2:]
        (folder / f"rec{i}.csv").write_text("\n".join(lines) + "\n")


def test_csv_loader_cuts_windows_per_recording(tmp_path):
    bm = load_dataset(f"ts:{BASIC_MOTIONS}")
    _write_csv_recordings(tmp_path / "rec", bm, "test", 40)
    ds = load_dataset(f"csv:{tmp_path / 'rec'}", series={"window": 50, "hop": 25, "sample_rate": 10})
    assert ds.channels == 6 and ds.length == 50 and ds.sample_rate == 10
    n = {s: len(ds.split(s)[1]) for s in ds.splits}
    assert n == {"train": 28 * 3, "val": 4 * 3, "test": 8 * 3}  # 70/10/20 of 10 recordings a class, 3 windows each
    whole = load_dataset(f"csv:{tmp_path / 'rec'}")  # equal-length recordings: one window each
    assert whole.length == 100 and len(whole.split("train")[1]) == 28
    with pytest.raises(EdgeCNNError, match="duration like"):
        load_dataset(f"csv:{tmp_path / 'rec'}", series={"window": "ten"})


def test_bad_series_input_is_one_line_and_exit_2(tmp_path, capsys, bm_bundle):
    bm = load_dataset(f"ts:{BASIC_MOTIONS}")
    _write_csv_recordings(tmp_path / "rec", bm, "test", 8, drop_column_in=5)
    assert run_cli("train", "cnn1d", "--data", f"csv:{tmp_path / 'rec'}", "--out", tmp_path / "run") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rec5.csv:3: 5 columns, expected 6" in err[0]
    # a series bundle given an image
    img = Path("/usr/share/doc/opencv-doc/examples/data/lena.jpg")
    if not img.is_file():
        import cv2

        img = tmp_path / "digit.png"
        cv2.imwrite(str(img), np.full((20, 20), 200, np.uint8))
    # explicit backend: the auto choice may log a re-measurement note before the error (a shared bundle)
    assert run_cli("classify", bm_bundle, img, "--backend", "onnxruntime", "--precision", "fp32") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "classifies series windows (100 samples x 6 channels), not images" in err[0]
    # an image model on series data, a series model on images
    assert run_cli("train", "lenet5", "--data", f"ts:{BASIC_MOTIONS}", "--out", tmp_path / "x") == 2
    assert "choose cnn1d or dscnn" in capsys.readouterr().err
    assert run_cli("train", "cnn1d", "--data", "digits", "--out", tmp_path / "y") == 2
    assert "train it on ts:DIR" in capsys.readouterr().err


def test_cnn1d_trains_evaluates_and_exports_a_verified_series_bundle(bm_ckpt, bm_bundle, capsys):
    from edgecnn.bundle import Bundle
    from edgecnn.runtime import Classifier

    assert run_cli("eval", bm_ckpt, "--json") == 0
    m = json.loads(capsys.readouterr().out)
    assert m["n"] == 40 and m["top1"] >= 0.9  # 15 epochs, seed 0: 1.0 measured; the full default run is the bar
    b = Bundle.load(bm_bundle)
    assert b.input["kind"] == "series" and b.input["layout"] == "NC1T" and b.input["length"] == 100
    art = b.manifest["artifacts"][0]
    assert art["verified"]["max_abs_diff"] < 1e-4 and art["verified"]["accuracy"] == pytest.approx(m["top1"])
    samples = b.manifest["samples"]
    assert len(samples) == 8 and all(s["file"].endswith(".csv") for s in samples)
    with Classifier(bm_bundle, backend="onnxruntime", precision="fp32") as clf:
        hits = 0
        for s in samples:
            window = np.loadtxt(bm_bundle / s["file"], delimiter=",")
            p = clf.predict_series(window)
            hits += p.label == s["label"]
            assert p.label == s["reference_prediction"] and set(p.timings) == {"preprocess", "inference",
                                                                               "postprocess"}
        assert hits >= 7
        with pytest.raises(EdgeCNNError, match=r"shaped \(samples, 6\)"):
            clf.predict_series(np.zeros((100, 3)))


class Conv1dNet:
    """A user's own Conv1d network on (N, C, T) windows (built lazily: torch is imported by the test)."""

    @staticmethod
    def build(channels: int, classes: int):
        from torch import nn

        return nn.Sequential(
            nn.Conv1d(channels, 16, 5, padding=2), nn.BatchNorm1d(16), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(16, 16, 3, padding=1, groups=16), nn.Conv1d(16, 24, 1), nn.ReLU(),
            nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(24, classes))


def trained_conv1d(ds, steps: int = 60):
    """Conv1dNet fitted briefly on the standardized training windows, with plain torch."""
    import torch

    from edgecnn.series import fit_normalization, preprocess_series, series_spec

    spec = series_spec(ds.channels, ds.length, [0.0] * ds.channels, [1.0] * ds.channels)
    mean, std = fit_normalization(ds.split("train")[0], spec)
    spec = series_spec(ds.channels, ds.length, mean, std)
    x = torch.from_numpy(np.stack([preprocess_series(w, spec)[:, 0] for w in ds.split("train")[0]]))
    y = torch.from_numpy(ds.split("train")[1])
    torch.manual_seed(0)
    net = Conv1dNet.build(ds.channels, len(ds.classes))
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval(), mean, std


def test_export_model_takes_a_users_conv1d_module(tmp_path):
    import edgecnn
    from edgecnn.bundle import Bundle
    from edgecnn.runtime import Classifier

    ds = load_dataset(f"ts:{BASIC_MOTIONS}")
    net, mean, std = trained_conv1d(ds)
    out = edgecnn.export_model(net, tmp_path / "conv1d", input_size=(6, 100), kind="series", classes=ds.classes,
                               mean=mean, std=std, sample_rate=10, test=f"ts:{BASIC_MOTIONS}", formats="onnx",
                               log=lambda s: None)
    b = Bundle.load(out)
    v = b.manifest["artifacts"][0]["verified"]
    assert b.input["kind"] == "series" and b.input["sample_rate"] == 10.0
    assert v["max_abs_diff"] < 1e-4 and v["top1_agreement"] == 1.0 and v["accuracy"] >= 0.75
    windows, labels = ds.split("test")
    with Classifier(out, backend="onnxruntime", precision="fp32") as clf:
        acc = np.mean([clf.predict_series(w).index == t for w, t in zip(windows, labels)])
    assert acc == pytest.approx(v["accuracy"])
    # arrays instead of a dataset name; a wrong input_size is one line
    out2 = edgecnn.export_model(net, tmp_path / "arrays", input_size=(6, 100), kind="series", classes=ds.classes,
                                mean=mean, std=std, test=(windows, labels), formats="onnx", log=lambda s: None)
    assert Bundle.load(out2).manifest["artifacts"][0]["verified"]["accuracy"] == pytest.approx(v["accuracy"])
    with pytest.raises(EdgeCNNError, match=r"input_size is \(channels, length\)"):
        edgecnn.export_model(net, tmp_path / "x", input_size=(6, 1, 100), kind="series", classes=ds.classes,
                             mean=mean, std=std, test=(windows, labels))


def _write_wavs(root: Path, ds, rate: int, count: int, odd_rate_in: int | None = None) -> None:
    """Real BasicMotions accelerometer traces (x axis, 100 samples) as int16 mono WAV clips in class folders."""
    from scipy.io import wavfile

    xs, ys = ds.split("test")
    for i, (x, y) in enumerate(zip(xs[:count], ys[:count])):
        folder = root / ds.classes[int(y)]
        folder.mkdir(parents=True, exist_ok=True)
        clip = np.round(x[:, 0] / 40.0 * 32767).astype(np.int16)
        r = rate
        if i == odd_rate_in:
            clip, r = np.repeat(clip, 2), 2 * rate
        wavfile.write(str(folder / f"clip{i}.wav"), r, clip)


def test_wav_loader_mfcc_front_end_and_rates(tmp_path, capsys):
    bm = load_dataset(f"ts:{BASIC_MOTIONS}")
    _write_wavs(tmp_path / "clips", bm, 1000, 40)
    ds = load_dataset(f"wav:{tmp_path / 'clips'}")
    assert ds.kind == "series" and ds.sample_rate == 1000 and ds.length == 100 and ds.channels == 1
    assert ds.frontend["type"] == "mfcc" and ds.frontend["fmax"] == 500.0  # capped at the Nyquist frequency
    spec = default_input_spec(ds, 0)
    x, _ = preprocessed(ds, "train", spec)
    assert x.shape == (28, 10, 1, 4) and np.isfinite(x).all()  # 40 ms frames every 20 ms of 100 ms clips
    np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), 0, atol=1e-5)  # per-feature standardization
    raw = ds.split("train")[0][0][:, 0]
    assert np.abs(raw).max() <= 1.0  # int16 scaled to [-1, 1]

    _write_wavs(tmp_path / "mixed", bm, 1000, 8, odd_rate_in=3)
    assert run_cli("train", "dscnn", "--data", f"wav:{tmp_path / 'mixed'}", "--sample-rate", "1000",
                   "--out", tmp_path / "run") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "clip3.wav: recorded at 2000 Hz, the data set is at 1000 Hz; pass --resample" in err[0]
    resampled = load_dataset(f"wav:{tmp_path / 'mixed'}", series={"sample_rate": 1000, "resample": True})
    assert {len(w) for w in resampled.split("all")[0]} == {100}


def test_profile_times_a_series_bundle_on_its_sample_windows(bm_bundle, tmp_path, capsys):
    report = tmp_path / "prof.json"
    assert run_cli("profile", bm_bundle, "--runs", "10", "--warmup", "2", "--report", report) == 0
    r = json.loads(report.read_text())
    assert "bundle sample" in r["settings"]["input"] and "(8)" in r["settings"]["input"]  # the 8 CSV windows
    assert r["bundle"]["input"] == {"channels": 6, "height": 1, "width": 100}
    assert all(res["latency_ms"]["p50"] > 0 for res in r["results"])
    tune = tmp_path / "tune.json"
    assert run_cli("tune", bm_bundle, "--threads", "1", "--budget-s", "1", "--backend", "onnxruntime",
                   "--report", tune, "--no-cache") == 0
    assert "onnxruntime" in json.dumps(json.loads(tune.read_text()))


def test_predict_series_on_a_device_without_torch_aeon_or_scipy(bm_bundle):
    """The device side of series bundles is numpy + one backend: torch and the host's data readers blocked."""
    import os
    import subprocess
    import sys

    code = f"""
import importlib.abc, json, sys
BLOCKED = {{"torch", "torchvision", "torchao", "litert_torch", "onnx", "aeon", "scipy", "librosa", "pandas", "sklearn"}}
class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(name)
import numpy as np
sys.meta_path.insert(0, _Blocker())
from edgecnn.runtime import Classifier
b = {str(bm_bundle)!r}
m = json.load(open(b + "/manifest.json"))
clf = Classifier(b, backend="onnxruntime", precision="fp32", threads=1)
hits = [clf.predict_series(np.loadtxt(b + "/" + s["file"], delimiter=",")).label == s["reference_prediction"]
        for s in m["samples"]]
print(json.dumps({{"hits": sum(hits), "n": len(hits), "host": sorted(k for k in sys.modules if k.split(".")[0] in BLOCKED)}}))
"""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out == {"hits": 8, "n": 8, "host": []}
