"""Any int8 TFLite file to TensorFlow Lite Micro: import-model --formats tflm, export BUNDLE --formats tflm.

The files come from TensorFlow's own converter (tests/data/foreign/make_tflm_models.py, run once; CI
needs no TensorFlow): a small CNN trained on the embedded real digits, and the same CNN with a GELU
activation, an op TFLM has no kernel for. The generated C is cross-compiled for Cortex-M4 and M7 with
Debian's gcc-arm-none-eabi (scripts/setup.sh installs it).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tflite_micro", reason="the tflm target needs tflite-micro (pip install 'edgecnn[micro]')")

from conftest import run_cli  # noqa: E402

FOREIGN = Path(__file__).parent / "data" / "foreign"
DIGITS = FOREIGN / "tflm_digits_int8.tflite"
GELU = FOREIGN / "tflm_gelu_op.tflite"
ARM_GXX, ARM_GCC = shutil.which("arm-none-eabi-g++"), shutil.which("arm-none-eabi-gcc")
CPUS = {"cortex-m4": ["-mcpu=cortex-m4", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
        "cortex-m7": ["-mcpu=cortex-m7", "-mfloat-abi=hard", "-mfpu=fpv5-d16"]}
STRICT = ["-mthumb", "-O2", "-Wall", "-Wextra", "-Werror"]
N = 300  # test images: enough for the comparison, quick on 2 cores


def _cli(*args) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = run_cli(*args)
    return rc, buf.getvalue()


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _tree(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def labels(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("labels") / "labels.txt"
    path.write_text("\n".join(str(i) for i in range(10)) + "\n")
    return path


@pytest.fixture(scope="module")
def imported(labels, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("tflm-import") / "digits-tflm"
    rc, text = _cli("import-model", DIGITS, "--labels", labels, "--data", "digits", "--eval-limit", N,
                    "--formats", "tflm", "--device", "cortex-m7", "--out", out)
    assert rc == 0, text
    return out, text


def test_import_model_to_tflm_measures_verifies_and_fits(imported) -> None:
    from edgecnn.export.tflm import _allocates

    bundle, text = imported
    t = _manifest(bundle)["tflm"]
    v = t["verified"]
    litert = _manifest(bundle)["artifacts"][0]["verified"]
    assert t["model"] == DIGITS.name and t["ops"] == ["CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED"]
    assert v["samples"] == N and v["dataset"] == "digits" and v["interpreter"].startswith("tflite-micro ")
    # The same file on the same int8 inputs: TFLM's reference kernels and LiteRT's agree on every class here,
    # and its accuracy is LiteRT's (measured separately by import-model on the same images).
    ref, default = v["litert"]["reference_kernels"], v["litert"]["default_kernels"]
    assert ref["op_resolver"] == "BUILTIN_REF" and default["op_resolver"] == "AUTO"
    assert ref["top1_agreement"] == 1.0 and default["top1_agreement"] == 1.0
    assert ref["max_abs_diff_steps"] <= 2 and default["max_abs_diff_steps"] <= 2  # measured: 1 and 1
    assert v["accuracy"] == litert["accuracy"] == v["reference_accuracy"] and v["accuracy"] > 0.9
    # The recorded arena is the smallest in which the real TFLM interpreter allocates the model.
    model = (bundle / DIGITS.name).read_bytes()
    assert _allocates(model, t["arena_bytes"]) and not _allocates(model, t["arena_bytes"] - 16)
    assert t["fit"]["fits"] and t["fit"]["profile"] == "cortex-m7"
    assert "tflm: fits cortex-m7 (STMicroelectronics STM32F767ZI): tensor arena" in text
    assert "against LiteRT's reference kernels: top-1 agreement 100.00%" in text
    assert "## TensorFlow Lite Micro" in (bundle / "REPORT.md").read_text()


@pytest.mark.skipif(not (ARM_GXX and ARM_GCC), reason="arm-none-eabi-gcc/g++ not installed (Debian: "
                    "gcc-arm-none-eabi; scripts/setup.sh installs it): the Cortex-M cross-compile is not checked")
@pytest.mark.parametrize("cpu", sorted(CPUS))
def test_generated_sources_compile_for_cortex_m(imported, cpu, tmp_path) -> None:
    """model_data.cc compiles; every header that needs no TFLM include compiles from C and from C++."""
    from edgecnn.export.tflm_sources import model_io_h

    bundle, _ = imported
    src = bundle / "tflm"
    flags = [*CPUS[cpu], *STRICT]
    subprocess.run([ARM_GXX, *flags, "-c", src / "model_data.cc", "-o", tmp_path / "model_data.o"], check=True)
    # A whole-number scale (int8 = pixel - 128: scale 1.0) must still be a float literal: `1.0f`, not `1f`.
    m = _manifest(bundle)
    art = m["artifacts"][0]
    whole = tmp_path / "whole"
    whole.mkdir()
    io_h = model_io_h(m["input"], m["classes"], {**art["input"], "quant": {"scale": 1.0, "zero_point": -128}},
                      art["output"], 1024, "x", "test")
    assert "kEdgecnnInputScale = 1.0f;" in io_h
    (whole / "model_io.h").write_text(io_h)
    probe = ('#include "model_data.h"\n#include "model_io.h"\n'
             "int probe(int p) { return kEdgecnnPixelToInput[0][p & 255] + EDGECNN_INPUT_BYTES + "
             "(int)(kEdgecnnInputScale * kEdgecnnOutputScale) + (int)g_edgecnn_model_data_len; }\n")
    for inc in (src, whole):
        for compiler, ext, std in ((ARM_GCC, "c", "-std=c99"), (ARM_GXX, "cc", "-std=c++11")):
            (tmp_path / f"probe.{ext}").write_text(probe)
            subprocess.run([compiler, *flags, std, "-I", src, "-I", inc, "-c", tmp_path / f"probe.{ext}",
                            "-o", tmp_path / f"probe_{ext}.o"], check=True)


def test_c_float_literals_are_valid_c() -> None:
    from edgecnn.export.tflm_sources import c_float

    assert [c_float(v) for v in (1.0, 2.0, 0.5, 1 / 255, 1e-5, 255.0)] == \
        ["1.0f", "2.0f", "0.5f", "0.00392156863f", "1e-05f", "255.0f"]


def test_export_adds_tflm_to_an_existing_bundle(labels, tmp_path) -> None:
    bundle = tmp_path / "b"
    rc, _ = _cli("import-model", DIGITS, "--labels", labels, "--out", bundle)
    assert rc == 0 and "tflm" not in _manifest(bundle)
    rc, text = _cli("export", bundle, "--formats", "tflm", "--device", "cortex-m4")
    assert rc == 0, text
    t = _manifest(bundle)["tflm"]
    v = t["verified"]
    # No data named: parity with LiteRT on seeded random int8 inputs, accuracy not claimed.
    assert v["accuracy"] is None and v["samples"] == 64 and v["litert"]["reference_kernels"]["top1_agreement"] >= 0.95
    assert sorted(p.name for p in (bundle / "tflm").iterdir()) == ["README.md", "main.cc", "model_data.cc",
                                                                   "model_data.h", "model_io.h", "model_ops.h"]
    assert "tflm: fits cortex-m4" in text and "bundle updated:" in text
    from edgecnn.bundle import Bundle

    Bundle.load(bundle).check_integrity()


def test_an_op_tflm_lacks_is_one_line_and_writes_nothing(labels, tmp_path, capsys) -> None:
    out = tmp_path / "gelu"
    assert run_cli("import-model", GELU, "--labels", labels, "--formats", "tflm", "--out", out) == 2
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("edgecnn: error:")]
    assert errors == ["edgecnn: error: tflm_gelu_op.tflite: TensorFlow Lite Micro has no kernel for op(s) GELU "
                      "(the model uses CONV_2D, GELU, MAX_POOL_2D, RESHAPE, FULLY_CONNECTED); replace those layers "
                      "to target a microcontroller"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # The same file imported without tflm, then `export BUNDLE --formats tflm`: refused, the bundle untouched.
    assert run_cli("import-model", GELU, "--labels", labels, "--out", out) == 0
    before = _tree(out)
    capsys.readouterr()
    assert run_cli("export", out, "--formats", "tflm") == 2
    assert "no kernel for op(s) GELU" in capsys.readouterr().err
    assert _tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["gelu"]


def test_verify_reruns_an_imported_tflm_model(imported) -> None:
    bundle, _ = imported
    rc, text = _cli("verify", bundle, "--data", "digits", "--eval-limit", N)
    assert rc == 0, text
    acc = _manifest(bundle)["tflm"]["verified"]["accuracy"]
    rows = [r for r in text.splitlines() if r.startswith(f"| {DIGITS.name} | tflm |")]
    assert len(rows) == 1 and f"{100 * acc:.2f}%" in rows[0]


def test_bundle_export_takes_only_tflm(imported, capsys) -> None:
    bundle, _ = imported
    assert run_cli("export", bundle, "--formats", "onnx,tflm") == 2
    assert "only --formats tflm can be added to it" in capsys.readouterr().err
    assert run_cli("export", bundle, "--formats", "tflm", "--out", "elsewhere") == 2
    assert "--out does not apply to a bundle" in capsys.readouterr().err


def test_tflm_sources_for_a_feature_input(tmp_path) -> None:
    """A non-image input (a [1, 49, 10, 1] keyword-spotting tensor): no pixel table, the int8 sample fed as is."""
    from edgecnn.export.tflm_sources import write_sources

    spec = {"kind": "features", "shape": [1, 49, 10, 1]}
    inp = {"name": "x", "dtype": "int8", "quant": {"scale": 0.588, "zero_point": 76}}
    out = {"name": "y", "dtype": "int8", "quant": {"scale": 1 / 256, "zero_point": -128}}
    sample = np.arange(490).astype(np.int8).reshape(49, 10, 1)
    write_sources(tmp_path, model=b"\x00" * 32, file="kws.tflite", sha256="0" * 64, ops=["CONV_2D"], spec=spec,
                  classes=[f"k{i}" for i in range(12)], inp=inp, out=out, arena_bytes=4096, tflm_version="x",
                  source="kws.tflite", sample=sample, sample_label="k3", expected="k3", input_shape=[1, 49, 10, 1])
    io_h = (tmp_path / "model_io.h").read_text()
    assert "#define EDGECNN_INPUT_BYTES 490" in io_h and "kEdgecnnPixelToInput" not in io_h
    assert "input->data.int8[i] = kSample[i];" in (tmp_path / "main.cc").read_text()
    if ARM_GCC:
        (tmp_path / "p.c").write_text('#include "model_io.h"\nint probe(void) { return EDGECNN_INPUT_BYTES; }\n')
        subprocess.run([ARM_GCC, *CPUS["cortex-m4"], *STRICT, "-std=c99", "-I", tmp_path, "-c", tmp_path / "p.c",
                        "-o", tmp_path / "p.o"], check=True)
