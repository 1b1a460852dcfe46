"""`edgecnn profile FILE` for any input/output shape and dtype, and params/MACs counted from the graph.

The .tflite files were made by TensorFlow's own converter (tests/data/foreign/make_tflm_models.py):
a dense autoencoder [1, 640] -> [1, 640] (MLPerf Tiny AD01's shape, not a classifier) and a DS-CNN
keyword spotter on [1, 49, 10, 1]. The ONNX file is built here with onnx's own helper API.
Expected counts are derived by hand from each architecture (layer sizes below), not read from the files.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

FOREIGN = Path(__file__).parent / "data" / "foreign"
AE, KWS = FOREIGN / "profile_autoencoder.tflite", FOREIGN / "profile_kws_dscnn.tflite"


def _dense(sizes: list[int]) -> tuple[int, int]:
    """(params, MACs) of a chain of dense layers (weights + biases; one MAC per weight)."""
    pairs = list(zip(sizes, sizes[1:]))
    return sum(a * b + b for a, b in pairs), sum(a * b for a, b in pairs)


# The autoencoder: 640 -> 32 -> 32 -> 8 -> 32 -> 32 -> 640 (BatchNorm folded into the dense layers).
AE_COUNTS = _dense([640, 32, 32, 8, 32, 32, 640])
# The DS-CNN: conv 10x4 (1 -> 64, stride 2: 25x5 outputs), 4 x (depthwise 3x3 + pointwise 64 -> 64), dense 64 -> 12;
# folded BatchNorm gives every conv a bias.
_KWS_POS = 25 * 5
KWS_COUNTS = (10 * 4 * 64 + 64 + 4 * (9 * 64 + 64 + 64 * 64 + 64) + 64 * 12 + 12,
              _KWS_POS * 64 * 40 + 4 * (_KWS_POS * 64 * 9 + _KWS_POS * 64 * 64) + 64 * 12)


def _profile(*args) -> tuple[int, str, dict]:
    report = Path(args[-1])
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = run_cli("profile", *args[:-1], "--runs", "20", "--warmup", "2", "--report", report)
    return rc, buf.getvalue(), json.loads(report.read_text()) if rc == 0 else {}


def test_graph_counts_of_foreign_tflite_files() -> None:
    from edgecnn.profile.graph_count import count_graph

    for path, (params, macs) in ((AE, AE_COUNTS), (KWS, KWS_COUNTS)):
        c = count_graph(path)
        assert (c["params"], c["macs"]) == (params, macs), path.name


@pytest.mark.parametrize("path, shape", [(AE, [640]), (KWS, None)])
def test_profile_any_tflite_file(path, shape, tmp_path) -> None:
    rc, text, rep = _profile(path, tmp_path / "r.json")
    assert rc == 0, text
    r = rep["results"][0]
    assert r["precision"] == "int8" and r["latency_ms"]["count"] == 20 and r["latency_ms"]["p50"] > 0
    assert rep["settings"]["input"] == "seeded random int8 over [-128, 127] (bare file)"
    assert (rep["bundle"]["params"], rep["bundle"]["macs"]) == (AE_COUNTS if path == AE else KWS_COUNTS)
    if shape is not None:  # not an image: profiled as the features tensor it is
        assert rep["bundle"]["input"] == {"kind": "features", "shape": shape}
        assert f"input features {shape}" in text


def test_profile_an_onnx_file_of_any_shape(tmp_path) -> None:
    """A float [1, 640] -> [1, 640] ONNX graph (Gemm 640x16, Relu, Gemm 16x640): profiled, counted."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1, w2 = rng.standard_normal((640, 16)).astype(np.float32), rng.standard_normal((16, 640)).astype(np.float32)
    b1, b2 = np.zeros(16, np.float32), np.zeros(640, np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("Gemm", ["r", "w2", "b2"], ["y"])], "ae",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 640])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 640])],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / "ae.onnx"
    onnx.save(model, str(path))
    rc, text, rep = _profile(path, tmp_path / "r.json")
    assert rc == 0, text
    assert rep["bundle"]["input"] == {"kind": "features", "shape": [640]}
    assert (rep["bundle"]["params"], rep["bundle"]["macs"]) == _dense([640, 16, 640])
    assert rep["settings"]["input"] == "seeded random float32 in [0, 1) (bare file)"
    assert {r["backend"] for r in rep["results"]} >= {"onnxruntime"}


def test_graph_counts_match_pytorch_for_exported_files(digits_bundle) -> None:
    """For edgecnn's own LeNet-5 every exported file (ONNX/TFLite, fp32/int8) counts what PyTorch counted."""
    from edgecnn.profile.graph_count import count_graph

    m = json.loads((digits_bundle / "manifest.json").read_text())
    for a in m["artifacts"]:
        c = count_graph(digits_bundle / a["file"])
        assert (c["params"], c["macs"]) == (m["model"]["params"], m["model"]["macs"]), a["file"]
