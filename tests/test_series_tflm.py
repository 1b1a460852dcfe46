"""Series bundles on TensorFlow Lite Micro: the C sources compile for a Cortex-M4 (quick), and the slow bars:
BasicMotions with the default command through TFLite int8 and TFLM (accuracy within 1 point, arena, fit),
a user's Conv1d model as H = 1 convolutions, and the 3-seed accuracy bars (benchmarks/series_accuracy.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecnn.export import tflm_series
from edgecnn.export.tflm_sources import main_cc
from edgecnn.series import FRONTEND_DEFAULTS, series_spec

REPO = Path(__file__).resolve().parents[1]
ARM_GCC, ARM_GXX = shutil.which("arm-none-eabi-gcc"), shutil.which("arm-none-eabi-g++")
M4_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-O2", "-Wall", "-Wextra", "-Werror"]
QUANT_IN, QUANT_OUT = {"scale": 0.1043805, "zero_point": -31}, {"scale": 0.05297, "zero_point": -41}


def _uea() -> Path:
    aeon_datasets = pytest.importorskip("aeon.datasets", reason="the series extra: pip install 'edgecnn[series]'")
    return Path(aeon_datasets.__file__).parent / "data"


@pytest.mark.skipif(not (ARM_GCC and ARM_GXX), reason="arm-none-eabi-gcc not installed (Debian: gcc-arm-none-eabi; "
                                                      "scripts/setup.sh installs it)")
@pytest.mark.parametrize("frontend", [None, FRONTEND_DEFAULTS], ids=["sensor", "mfcc"])
def test_series_model_io_h_compiles_for_cortex_m4_and_quantizes_like_the_host(tmp_path, frontend):
    if frontend:
        spec = series_spec(1, 16000, np.zeros(10), np.ones(10), sample_rate=16000, frontend=frontend)
    else:  # integer-valued mean/std on purpose: "2f" is not a C float literal, "2.0f" is
        spec = series_spec(6, 100, [2, -1.3, 0, 0.019, -0.024, -0.056], [7, 6.79, 3.55, 2, 1.82, 3.52], 10)
    (tmp_path / "model_io.h").write_text(tflm_series.model_io_h(spec, ["a", "b"], {"quant": QUANT_IN},
                                                                {"quant": QUANT_OUT}, 8336, "test", "t"))
    probe = ('#include "model_io.h"\n#include <stdio.h>\nint main(void) { for (int i = 0; i < 9; ++i) '
             '{ float x = -3.0f + 0.75f * i; printf("%d ", edgecnn_quantize_sample(x, i % EDGECNN_INPUT_CHANNELS)); }'
             ' return EDGECNN_INPUT_BYTES > 0 ? 0 : 1; }\n')
    (tmp_path / "p.c").write_text(probe)
    (tmp_path / "p.cc").write_text(probe)
    subprocess.run([ARM_GCC, *M4_FLAGS, "-std=c99", "-I", tmp_path, "-c", tmp_path / "p.c", "-o", tmp_path / "c.o"],
                   check=True)
    subprocess.run([ARM_GXX, *M4_FLAGS, "-I", tmp_path, "-c", tmp_path / "p.cc", "-o", tmp_path / "cc.o"], check=True)
    host_cc = shutil.which("gcc") or shutil.which("cc")
    if host_cc:  # the same header on this host: its quantization equals the Python verification's
        subprocess.run([host_cc, "-std=c99", "-I", tmp_path, tmp_path / "p.c", "-o", tmp_path / "p", "-lm"], check=True)
        got = [int(v) for v in subprocess.run([tmp_path / "p"], capture_output=True, text=True).stdout.split()]
        from edgecnn.export.tflm_ops import quantize_input

        x = -3.0 + 0.75 * np.arange(9)
        c = np.arange(9) % (10 if frontend else 6)
        mean, std = np.asarray(spec["mean"], np.float32)[c], np.asarray(spec["std"], np.float32)[c]
        want = quantize_input(((x.astype(np.float32) - mean) / std).astype(np.float32), QUANT_IN["scale"],
                              QUANT_IN["zero_point"])
        assert got == want.tolist()
    text = main_cc(None, "a", "a", series=tflm_series.sample_block(spec, np.zeros((100, 6), np.float32)
                                                                   if not frontend else np.zeros((49, 10), np.int8),
                                                                   "a", "a"))
    assert "kSample[EDGECNN_INPUT_BYTES]" in text and "kExpected" in text


def _ops(path: Path) -> list[tuple[str, list[tuple[int, ...]]]]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(str(path))
    td = it.get_tensor_details()
    return [(o["op_name"], [tuple(int(v) for v in td[i]["shape"]) for i in o["inputs"] if i >= 0])
            for o in it._get_ops_details()]


@pytest.mark.slow
def test_basicmotions_default_run_through_tflite_int8_and_tflm(tmp_path):
    pytest.importorskip("tflite_micro")
    from conftest import run_cli

    data = f"ts:{_uea() / 'BasicMotions'}"
    assert run_cli("train", "cnn1d", "--data", data, "--out", tmp_path / "run") == 0
    out = tmp_path / "bundle"
    assert run_cli("export", tmp_path / "run" / "best.pt", "--formats", "onnx,tflite,tflm", "--int8", "--calib",
                   data, "--device", "cortex-m4", "--out", out) == 0
    m = json.loads((out / "manifest.json").read_text())
    fp32 = next(a for a in m["artifacts"] if a["file"] == "model.tflite")["verified"]
    int8 = next(a for a in m["artifacts"] if a["file"] == "model.int8.tflite")["verified"]
    t = m["tflm"]
    assert fp32["accuracy"] >= 0.975
    assert 100 * (fp32["accuracy"] - int8["accuracy"]) <= 1.0 and 100 * (fp32["accuracy"] - t["verified"]["accuracy"]) <= 1.0
    assert 0 < t["arena_bytes"] < 64 * 1024 and t["fit"]["fits"] is True
    ops = _ops(out / "model.int8.tflite")
    convs = [shapes for name, shapes in ops if name == "CONV_2D"]
    assert convs[0][0] == (1, 1, 100, 6) and convs[0][1] == (32, 1, 7, 6)  # H = 1 NHWC, 1 x 7 filters
    assert all(s[0][1] == 1 and s[1][1] == 1 for s in convs) and "TRANSPOSE" not in [n for n, _ in ops]
    io_h = (out / "tflm" / "model_io.h").read_text()
    assert "#define EDGECNN_WINDOW_LENGTH 100" in io_h and "#define EDGECNN_WINDOW_CHANNELS 6" in io_h
    if ARM_GXX:
        subprocess.run([ARM_GXX, *M4_FLAGS, "-c", out / "tflm" / "model_data.cc", "-o", tmp_path / "md.o"], check=True)
        from test_tflm import ARM_SIZE, _tflm_include_dirs

        if _tflm_include_dirs() and ARM_SIZE:  # main.cc against the TFLM headers (EDGECNN_TFLM_ROOT)
            inc = [a for d in [str(out / "tflm"), *_tflm_include_dirs()] for a in ("-I", d)]
            subprocess.run([ARM_GXX, *M4_FLAGS[:-1], "-std=c++17", "-fno-exceptions", "-fno-rtti",
                            "-DTF_LITE_STATIC_MEMORY", *inc, "-c", out / "tflm" / "main.cc", "-o", tmp_path / "main.o"],
                           check=True)
            bss = int(subprocess.run([ARM_SIZE, tmp_path / "main.o"], check=True, capture_output=True,
                                     text=True).stdout.splitlines()[1].split()[2])
            assert bss >= t["arena_bytes"]  # the arena is static RAM


@pytest.mark.slow
def test_a_users_conv1d_model_becomes_h1_convolutions_on_tflite_and_tflm(tmp_path):
    pytest.importorskip("tflite_micro")
    from test_series_pipeline import trained_conv1d

    import edgecnn
    from edgecnn.data import load_dataset

    data = f"ts:{_uea() / 'BasicMotions'}"
    ds = load_dataset(data)
    net, mean, std = trained_conv1d(ds)
    out = edgecnn.export_model(net, tmp_path / "b", input_size=(6, 100), kind="series", classes=ds.classes,
                               mean=mean, std=std, test=data, calib=data, int8=True, formats="tflite,tflm",
                               log=lambda s: None)
    m = json.loads((out / "manifest.json").read_text())
    fp32 = next(a for a in m["artifacts"] if a["file"] == "model.tflite")["verified"]
    assert fp32["max_abs_diff"] < 1e-4 and fp32["top1_agreement"] == 1.0
    names: dict = {}
    for n, shapes in _ops(out / "model.tflite"):
        names.setdefault(n, shapes)  # the first op of each kind
    assert names["CONV_2D"][0] == (1, 1, 100, 6) and names["CONV_2D"][1] == (16, 1, 5, 6)
    assert names["DEPTHWISE_CONV_2D"][1] == (1, 1, 3, 16)
    assert m["tflm"]["verified"]["accuracy"] >= fp32["accuracy"] - 0.01


@pytest.mark.slow
def test_three_seed_accuracy_bars(tmp_path):
    _uea()
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "series_accuracy.py"), "--out", str(tmp_path),
                          "--json", str(tmp_path / "rows.json")], capture_output=True, text=True, timeout=3600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert min(r["test_acc"] for r in rows if r["set"] == "BasicMotions") >= 0.975
    assert min(r["test_acc"] for r in rows if r["set"] == "JapaneseVowels") >= 0.97


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="the probe runs in a forked child on POSIX only")
def test_an_arena_probe_that_crashes_tflm_reads_as_too_small(monkeypatch):
    """tflite-micro segfaults on some too-small arenas (seen: a Conv1d model's int8 file at 2,528 bytes);
    the bisection probes in a child process, so the export sees "does not allocate" and lives on."""
    import os
    import signal

    from edgecnn.export import tflm

    def crash(model, arena):
        if arena < 100:
            os.kill(os.getpid(), signal.SIGSEGV)
        if arena < 200:
            raise RuntimeError("arena too small")

    monkeypatch.setattr(tflm, "_interpreter", crash)
    assert tflm._allocates(b"", 50) is False and tflm._allocates(b"", 150) is False and tflm._allocates(b"", 300)


@pytest.mark.slow
def test_prune_qat_and_their_exports_on_a_series_model(tmp_path):
    """Structured pruning and QAT take cnn1d like an image CNN; their checkpoints export and verify."""
    from conftest import run_cli

    from edgecnn.train.checkpoint import read_checkpoint

    data = f"ts:{_uea() / 'BasicMotions'}"
    assert run_cli("train", "cnn1d", "--data", data, "--epochs", "40", "--out", tmp_path / "run") == 0
    best = tmp_path / "run" / "best.pt"
    assert run_cli("prune", best, "--ratio", "0.3", "--finetune-epochs", "5", "--out", tmp_path / "pruned") == 0
    pruned = read_checkpoint(tmp_path / "pruned" / "pruned.pt")
    assert pruned["metrics"]["test_acc"] >= 0.95 and pruned["structure"] is not None
    assert run_cli("qat", best, "--qat-epochs", "2", "--out", tmp_path / "qat") == 0
    for ckpt in (tmp_path / "pruned" / "pruned.pt", tmp_path / "qat" / "qat.pt"):
        out = tmp_path / f"bundle-{ckpt.stem}"
        assert run_cli("export", ckpt, "--formats", "onnx", "--int8", "--calib", data, "--out", out) == 0
        m = json.loads((out / "manifest.json").read_text())
        assert m["input"]["kind"] == "series" and all(a["verified"]["accuracy"] >= 0.95 for a in m["artifacts"])
