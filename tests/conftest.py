"""Shared fixtures: one small LeNet-5 trained on the embedded digits, and its exported bundle.

They go through the public CLI (in-process, so torch is imported once) and are built once per
test session; areas' tests reuse them instead of training their own models.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE_BUNDLE = REPO / "export" / "lenet5-digits"

os.environ.setdefault("OMP_NUM_THREADS", "2")


def run_cli(*args: str) -> int:
    from edgecnn.cli import main

    return main([str(a) for a in args])


@pytest.fixture(scope="session", autouse=True)
def _tune_cache(tmp_path_factory) -> Path:
    """This session's tune cache (Classifier's measured auto choice), never the user's ~/.cache/edgecnn."""
    path = tmp_path_factory.mktemp("edgecnn-cache")
    os.environ["EDGECNN_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def digits_ckpt(tmp_path_factory) -> Path:
    """best.pt of LeNet-5 trained briefly on the embedded digits (real data, ~97% test top-1)."""
    out = tmp_path_factory.mktemp("lenet5-digits-run")
    rc = run_cli("train", "lenet5", "--data", "digits", "--epochs", "8", "--out", out, "--seed", "0")
    assert rc == 0
    return out / "best.pt"


@pytest.fixture(scope="session")
def digits_bundle(digits_ckpt, tmp_path_factory) -> Path:
    """A bundle exported from `digits_ckpt`: ONNX + TFLite, fp32 + int8, verified."""
    out = tmp_path_factory.mktemp("bundles") / "lenet5-digits"
    rc = run_cli(
        "export", digits_ckpt, "--formats", "onnx,tflite", "--int8", "--calib", "digits", "--out", out
    )
    assert rc == 0
    return out


def basic_motions_dir() -> Path:
    """BasicMotions (UEA: smartwatch accelerometer + gyro, 6 x 100 at 10 Hz, 4 classes), shipped in aeon's wheel."""
    import aeon

    return Path(aeon.__file__).parent / "datasets" / "data" / "BasicMotions"


@pytest.fixture(scope="session")
def bm_ckpt(tmp_path_factory) -> Path:
    """best.pt of cnn1d trained on BasicMotions at its 10 Hz (15 epochs, seed 0): the series tests' model."""
    out = tmp_path_factory.mktemp("cnn1d-bm")
    assert run_cli("train", "cnn1d", "--data", f"ts:{basic_motions_dir()}", "--sample-rate", "10", "--epochs", "15",
                   "--out", out, "--seed", "0") == 0
    return out / "best.pt"


@pytest.fixture(scope="session")
def bm_bundle(bm_ckpt, tmp_path_factory) -> Path:
    """`bm_ckpt` exported as an ONNX fp32 series bundle, verified."""
    out = tmp_path_factory.mktemp("bundles") / "cnn1d-bm"
    assert run_cli("export", bm_ckpt, "--formats", "onnx", "--out", out) == 0
    return out
