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


@pytest.mark.parametrize("path, shape", [(KWS, None)])
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


def test_graph_counts_match_pytorch_for_exported_files(digits_bundle) -> None:
    """For edgecnn's own LeNet-5 every exported file (ONNX/TFLite, fp32/int8) counts what PyTorch counted."""
    from edgecnn.profile.graph_count import count_graph

    m = json.loads((digits_bundle / "manifest.json").read_text())
    for a in m["artifacts"]:
        c = count_graph(digits_bundle / a["file"])
        assert (c["params"], c["macs"]) == (m["model"]["params"], m["model"]["macs"]), a["file"]
