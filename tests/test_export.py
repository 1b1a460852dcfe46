"""Export area: bundle layout, manifest, verification numbers on real digits, atomicity, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgecnn.bundle import Bundle
from edgecnn.errors import EdgeCNNError
from edgecnn.utils import sha256_file


def run_cli(*args) -> int:
    from edgecnn.cli import main

    return main([str(a) for a in args])


def test_bundle_layout_and_manifest(digits_bundle, digits_ckpt):
    b = Bundle.load(digits_bundle)  # validates the schema
    b.check_integrity()  # every sha256 matches its file
    files = {a.info["file"] for a in b.artifacts}
    assert files == {"model.onnx", "model.int8.onnx", "model.tflite", "model.int8.tflite"}
    assert (digits_bundle / "labels.txt").read_text().split() == [str(i) for i in range(10)]
    assert b.manifest["source"]["sha256"] == sha256_file(digits_ckpt)
    assert b.manifest["calibration"] == {"dataset": "digits", "split": "train", "samples": 200}
    for a in b.artifacts:
        assert a.info["size_bytes"] == a.path.stat().st_size
        assert a.layout == ("NCHW" if a.format == "onnx" else "NHWC")
    report = (digits_bundle / "REPORT.md").read_text()
    assert "model.int8.tflite" in report and "onnxruntime" in report


def test_onnx_has_dynamic_batch_and_embedded_weights(digits_bundle):
    import onnx
    import onnxruntime as ort

    assert not list(digits_bundle.glob("*.data"))
    model = onnx.load(str(digits_bundle / "model.onnx"))
    dim0 = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param and not dim0.dim_value
    sess = ort.InferenceSession(str(digits_bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.zeros((3, 1, 32, 32), np.float32)
    assert sess.run(None, {"input": x})[0].shape == (3, 10)
    qdq = onnx.load(str(digits_bundle / "model.int8.onnx"))
    assert sum(n.op_type == "QuantizeLinear" for n in qdq.graph.node) > 0


def test_verification_numbers_meet_the_bars(digits_bundle):
    b = Bundle.load(digits_bundle)
    for a in b.artifacts:
        v = a.info["verified"]
        assert v["dataset"] == "digits" and v["samples"] == 1000
        assert v["reference_accuracy"] > 0.9  # a really trained model, so the bars mean something
        if a.precision == "fp32":
            assert v["top1_agreement"] >= 0.999, a.info["file"]
            assert v["max_abs_diff"] < 1e-3, a.info["file"]
        else:
            assert v["drop_points"] <= 1.0, a.info["file"]
            assert v["top1_agreement"] >= 0.98, a.info["file"]


def test_int8_tflite_records_quant_params_from_the_file(digits_bundle):
    from ai_edge_litert.interpreter import Interpreter

    (art,) = Bundle.load(digits_bundle).find("tflite", "int8")
    it = Interpreter(model_path=str(art.path))
    detail = it.get_input_details()[0]
    assert art.info["input"]["dtype"] == "int8" and detail["dtype"] == np.int8
    assert art.info["input"]["quant"]["scale"] == pytest.approx(detail["quantization"][0])
    assert art.info["input"]["quant"]["zero_point"] == detail["quantization"][1]
    assert list(detail["shape"]) == [1, 32, 32, 1]  # NHWC on the device


def test_samples_are_real_test_images_the_artifacts_classify(digits_bundle):
    from edgecnn.export.onnx import run_onnx
    from edgecnn.preprocess import load_image, preprocess

    b = Bundle.load(digits_bundle)
    samples = b.manifest["samples"]
    assert len(samples) == 20
    x = np.stack([preprocess(load_image(str(digits_bundle / s["file"])), b.input) for s in samples])
    pred = run_onnx(digits_bundle / "model.onnx", x).argmax(1)
    labels = np.array([s["class_index"] for s in samples])
    assert (pred == labels).mean() >= 0.8
    # PyTorch's recorded prediction for each sample is what the fp32 artifact predicts from the PNG.
    assert [b.classes[p] for p in pred] == [s["reference_prediction"] for s in samples]


def test_verify_command_remeasures_and_detects_corruption(digits_bundle, tmp_path, capsys):
    import shutil

    assert run_cli("verify", digits_bundle, "--eval-limit", "300") == 0
    out = capsys.readouterr().out
    assert "model.int8.tflite" in out and "n/a" not in out  # compared against PyTorch via the checkpoint
    copy = tmp_path / "copy"
    shutil.copytree(digits_bundle, copy)
    with open(copy / "model.onnx", "r+b") as f:
        f.seek(1000)
        f.write(b"\x00" * 16)
    assert run_cli("verify", copy) == 2
    assert "sha256 does not match" in capsys.readouterr().err


def test_export_fails_atomically_when_drop_exceeds_max(digits_ckpt, tmp_path, capsys):
    # Calibrating int8 on blank frames (a real mistake: the wrong calibration folder) leaves the
    # activation ranges far too narrow; the export must fail naming the artifact, leaving nothing.
    import cv2

    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / "blank" / split / cls).mkdir(parents=True)
            for i in range(3):
                cv2.imwrite(str(tmp_path / "blank" / split / cls / f"{i}.png"), np.zeros((20, 20), np.uint8))
    out = tmp_path / "b"
    rc = run_cli("export", digits_ckpt, "--formats", "onnx", "--int8", "--calib", f"folder:{tmp_path / 'blank'}",
                 "--out", out)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "model.int8.onnx: accuracy" in err and "> --max-drop 1" in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".b.")]  # no staging dir left


@pytest.mark.parametrize(
    "args, message",
    [
        (["--formats", "onnx,coreml"], "unknown export format 'coreml'"),
        (["--int8"], "--int8 needs calibration data"),
    ],
)
def test_bad_options_are_one_line_errors(digits_ckpt, tmp_path, capsys, args, message):
    out = tmp_path / "b"
    assert run_cli("export", digits_ckpt, *args, "--out", out) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgecnn: error:") and message in err and "\n" not in err
    assert not out.exists()


def test_foreign_and_truncated_checkpoints(digits_ckpt, tmp_path, capsys):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(digits_ckpt.read_bytes()[:5000])
    foreign = tmp_path / "foreign.pt"
    import torch

    torch.save({"weights": torch.zeros(3)}, foreign)
    for bad in (truncated, foreign, tmp_path / "missing.pt"):
        assert run_cli("export", bad, "--out", tmp_path / "b") == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("edgecnn: error:") and "\n" not in err
    assert not (tmp_path / "b").exists()


def test_out_dir_holding_a_different_bundle_needs_force(digits_bundle, tmp_path, capsys):
    import shutil

    from edgecnn.export.api import _check_out_dir

    other = tmp_path / "other"
    shutil.copytree(digits_bundle, other)
    before = (other / "manifest.json").read_bytes()
    with pytest.raises(EdgeCNNError, match="different checkpoint; use --force"):
        _check_out_dir(other, "0" * 64, force=False, log=print)
    _check_out_dir(other, json.loads(before)["source"]["sha256"], force=False, log=print)  # same source: fine
    assert "same checkpoint" in capsys.readouterr().out
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(EdgeCNNError, match="not an edgecnn bundle"):
        _check_out_dir(tmp_path / "notes", "0" * 64, force=False, log=print)
    assert (other / "manifest.json").read_bytes() == before


def test_export_interrupted_midway_leaves_nothing(digits_ckpt, tmp_path, monkeypatch):
    from edgecnn.export import api, tflite

    def broken(*args, **kwargs):
        raise KeyboardInterrupt  # as if Ctrl-C hit during the TFLite conversion

    monkeypatch.setattr(tflite, "export_tflite", broken)
    with pytest.raises(KeyboardInterrupt):
        api.export_bundle(digits_ckpt, "onnx,tflite", out=tmp_path / "b", log=lambda m: None)
    assert list(tmp_path.iterdir()) == []


def test_build_engine_without_tensorrt_is_one_line(digits_bundle, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # None in sys.modules makes the import fail
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)
    assert run_cli("build-engine", digits_bundle) == 2
    err = capsys.readouterr().err.strip()
    assert "TensorRT is not installed" in err and "\n" not in err


def test_reference_bundle_in_repo_is_valid():
    ref = Path(__file__).resolve().parents[1] / "export" / "lenet5-digits"
    b = Bundle.load(ref)
    b.check_integrity()
    assert {(a.format, a.precision) for a in b.artifacts} >= {("onnx", "fp32"), ("onnx", "int8"),
                                                               ("tflite", "fp32"), ("tflite", "int8")}
    for a in b.artifacts:
        v = a.info["verified"]
        assert v["top1_agreement"] >= (0.999 if a.precision == "fp32" else 0.98)
        assert v["drop_points"] <= 1.0
    assert all((ref / s["file"]).is_file() for s in b.manifest["samples"])


def test_verify_without_checkpoint_measures_accuracy_only(digits_bundle, tmp_path, capsys):
    import shutil

    copy = tmp_path / "moved"
    shutil.copytree(digits_bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["source"]["checkpoint"] = str(tmp_path / "gone" / "best.pt")  # bundle copied to a device
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert run_cli("verify", copy, "--write") == 0
    assert "measuring accuracy only" in capsys.readouterr().out
    after = Bundle.load(copy)
    for old, new in zip(manifest["artifacts"], after.manifest["artifacts"]):
        assert new["verified"]["top1_agreement"] is None
        assert new["verified"]["accuracy"] == old["verified"]["accuracy"]  # same files, same data
        assert new["verified"]["drop_points"] == old["verified"]["drop_points"]
