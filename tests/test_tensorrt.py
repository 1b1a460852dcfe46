"""Optional: every ONNX file a bundle carries for TensorRT parses and builds with NVIDIA's builder.

Not in the default run (marker `tensorrt`). No machine here has full TensorRT, so this uses
NVIDIA's TensorRT-RTX wheels, whose ONNX parser and builder run without a GPU:

    pip install --target .trt tensorrt-rtx-cu13          # about 95 MB download
    PYTHONPATH=.trt .venv/bin/pytest -m tensorrt tests/test_tensorrt.py

What it proves: TensorRT's ONNX parser accepts model.onnx, model.fp16.onnx and the int8 QDQ
model.int8.trt.onnx, and the builder produces engines (cached on the second call). What it
cannot prove here: running the engines (that needs a GPU: check on a Jetson with full TensorRT).
"""

from __future__ import annotations

import importlib

import pytest

from edgecnn.bundle import Bundle

pytestmark = pytest.mark.tensorrt


def run_cli(*args) -> int:
    from edgecnn.cli import main

    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def trt_bundle(digits_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("trt") / "lenet5-trt"
    rc = run_cli("export", digits_ckpt, "--formats", "tensorrt", "--fp16", "--int8", "--calib", "digits",
                 "--out", out)
    assert rc == 0
    return out


def test_tensorrt_module_present():
    mods = [m for m in ("tensorrt", "tensorrt_rtx") if importlib.util.find_spec(m)]
    assert mods, "install tensorrt or tensorrt-rtx-cu13 (see this file's docstring) to run -m tensorrt"


def test_tensorrt_bundle_carries_what_the_device_needs(trt_bundle):
    b = Bundle.load(trt_bundle)
    trt = b.manifest["tensorrt"]
    assert trt["onnx"] == "model.onnx" and trt["calib"] == "calib.npz"
    v = trt["onnx_int8"]["verified"]
    assert v["drop_points"] <= 1.0 and v["top1_agreement"] >= 0.98


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_every_onnx_parses_and_builds(trt_bundle, precision, capsys):
    from edgecnn.export.tensorrt import build_engine

    engine = build_engine(trt_bundle, precision, max_batch=4)
    assert engine.is_file() and engine.stat().st_size > 10_000
    assert build_engine(trt_bundle, precision, max_batch=4) == engine
    assert "cached engine" in capsys.readouterr().out
