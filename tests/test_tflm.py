"""The TensorFlow Lite Micro target: export, TFLM-interpreter verification, measured arena, MCU fit, C sources.

One export of the session's LeNet-5 (`digits_ckpt`) with --formats tflm serves the module. The
generated C/C++ is cross-compiled for a Cortex-M4 with Debian's gcc-arm-none-eabi; main.cc also
needs the TFLM headers, which are compiled against only where EDGECNN_TFLM_ROOT points at a
tflite-micro checkout (with its downloads: flatbuffers, gemmlowp).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgecnn.errors import EdgeCNNError

pytest.importorskip("tflite_micro", reason="the tflm target needs tflite-micro (pip install 'edgecnn[micro]')")

from conftest import run_cli  # noqa: E402

ARM_GXX = shutil.which("arm-none-eabi-g++")
ARM_GCC = shutil.which("arm-none-eabi-gcc")
ARM_SIZE = shutil.which("arm-none-eabi-size")
M4_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-O2", "-Wall", "-Wextra", "-Werror"]


def _cli_out(*args) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = run_cli(*args)
    return rc, buf.getvalue()


@pytest.fixture(scope="module")
def tflm_export(digits_ckpt, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("tflm") / "lenet5-tflm"
    rc, text = _cli_out("export", digits_ckpt, "--formats", "tflm", "--int8", "--calib", "digits",
                        "--device", "cortex-m4", "--out", out)
    assert rc == 0, text
    return out, text


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def test_tflm_export_verified_in_the_tflm_interpreter(tflm_export) -> None:
    bundle, text = tflm_export
    m = _manifest(bundle)
    litert = next(a for a in m["artifacts"] if a["file"] == "model.int8.tflite")
    t = m["tflm"]
    v = t["verified"]
    assert v["interpreter"].startswith("tflite-micro ")
    assert v["samples"] == litert["verified"]["samples"] == 1000  # the whole test split
    # bars: TFLM within 0.5 point of the LiteRT int8 artifact, close to PyTorch, high on real digits
    assert abs(v["accuracy"] - litert["verified"]["accuracy"]) <= 0.005
    assert v["accuracy_vs_litert_points"] == pytest.approx(100 * (v["accuracy"] - litert["verified"]["accuracy"]),
                                                           abs=1e-6)
    assert v["drop_points"] <= 1.0 and v["top1_agreement"] >= 0.99
    assert v["accuracy"] >= 0.96  # digits_ckpt is ~97% (8 epochs); measured 97.2% here
    assert t["ops"] == ["DEPTHWISE_CONV_2D", "MAX_POOL_2D", "CONV_2D", "TRANSPOSE", "RESHAPE", "FULLY_CONNECTED"]
    assert t["flash_bytes"] == (bundle / "model.int8.tflite").stat().st_size == litert["size_bytes"]
    assert "tflm: model.int8.tflite in the TFLM interpreter: accuracy" in text
    # the same int8 inputs in LiteRT, reference and default kernels (LeNet-5: within 1 step of both, measured)
    ref, default = v["litert"]["reference_kernels"], v["litert"]["default_kernels"]
    assert ref["samples"] == default["samples"] == 1000 and ref["top1_agreement"] >= 0.99
    assert ref["max_abs_diff_steps"] <= 2 and default["top1_agreement"] >= 0.99
    assert "tflm: against LiteRT's reference kernels: top-1 agreement" in text
    # the fit is recorded and said, with the numbers
    f = t["fit"]
    assert f["fits"] and f["ram"]["need_bytes"] == t["arena_bytes"] and f["ram"]["have_bytes"] == 256 * 1024
    assert re.search(r"tflm: fits cortex-m4 \(Nordic Semiconductor nRF52840\): tensor arena [\d.]+ KiB of 256.0 KiB "
                     r"RAM, model data [\d.]+ KiB of 1,024.0 KiB flash", text)
    assert "TensorFlow Lite Micro" in (bundle / "REPORT.md").read_text()


def test_recorded_arena_is_the_smallest_that_allocates(tflm_export) -> None:
    from tflite_micro.python.tflite_micro import runtime

    bundle, _ = tflm_export
    t = _manifest(bundle)["tflm"]
    model = (bundle / t["model"]).read_bytes()
    assert t["allocation_report"]["total_bytes"] <= t["arena_bytes"] < 64 * 1024
    runtime.Interpreter.from_bytes(model, arena_size=t["arena_bytes"])  # allocates
    with pytest.raises(RuntimeError, match="failed to allocate"):
        runtime.Interpreter.from_bytes(model, arena_size=t["arena_bytes"] - 16)


def _c_array(text: str, name: str) -> np.ndarray:
    body = re.search(re.escape(name) + r"[^=]*=\s*\{(.*?)\};", text, re.S).group(1)
    return np.array([int(v, 0) for v in re.findall(r"-?0x[0-9a-f]+|-?\d+", body)])


def test_generated_sources_carry_the_model_and_the_exact_preprocessing(tflm_export) -> None:
    from edgecnn.data import load_dataset, preprocessed
    from edgecnn.export.tflm import quantize_input, sample_pixels

    bundle, _ = tflm_export
    m = _manifest(bundle)
    src = bundle / "tflm"
    assert sorted(p.name for p in src.iterdir()) == ["README.md", "main.cc", "model_data.cc", "model_data.h",
                                                      "model_io.h", "model_ops.h"]
    data = _c_array((src / "model_data.cc").read_text(), "g_edgecnn_model_data[]")
    assert bytes(data.astype(np.uint8).tolist()) == (bundle / "model.int8.tflite").read_bytes()
    ops_h = (src / "model_ops.h").read_text()
    assert "MicroMutableOpResolver<kEdgecnnOpCount>" in ops_h and "kEdgecnnOpCount = 6;" in ops_h
    assert re.findall(r"resolver\.(Add\w+)\(\)", ops_h) == ["AddDepthwiseConv2D", "AddMaxPool2D", "AddConv2D",
                                                            "AddTranspose", "AddReshape", "AddFullyConnected"]
    io_h = (src / "model_io.h").read_text()
    art = next(a for a in m["artifacts"] if a["file"] == "model.int8.tflite")
    assert f"#define EDGECNN_TENSOR_ARENA_BYTES {m['tflm']['arena_bytes']}" in io_h
    assert f"kEdgecnnInputZeroPoint = {art['input']['quant']['zero_point']};" in io_h
    assert all(f'"{c}"' in io_h for c in m["classes"])
    # The MCU's lookup table, applied to real resized test images, gives exactly the int8 input verified on the host.
    lut = _c_array(io_h, "kEdgecnnPixelToInput").reshape(m["input"]["channels"], 256)
    ds = load_dataset("digits")
    images, _ = ds.split("test")
    x, _ = preprocessed(ds, "test", m["input"], 50)
    idx = np.sort(np.random.default_rng(0).choice(len(images), size=50, replace=False))  # preprocessed's subset
    q = art["input"]["quant"]
    for i, k in enumerate(idx):
        px = sample_pixels(np.asarray(images[k]), m["input"])
        on_mcu = lut[np.arange(px.shape[2])[None, None, :], px]
        on_host = quantize_input(x[i].transpose(1, 2, 0), q["scale"], q["zero_point"])
        np.testing.assert_array_equal(on_mcu, on_host)


@pytest.mark.skipif(not (ARM_GXX and ARM_GCC and ARM_SIZE),
                    reason="arm-none-eabi-g++/-size not installed (Debian: gcc-arm-none-eabi; scripts/setup.sh "
                           "installs it): the Cortex-M cross-compile is not checked")
def test_data_and_io_sources_cross_compile_for_cortex_m4(tflm_export, tmp_path) -> None:
    bundle, _ = tflm_export
    src = bundle / "tflm"
    flash = _manifest(bundle)["tflm"]["flash_bytes"]
    subprocess.run([ARM_GXX, *M4_FLAGS, "-c", src / "model_data.cc", "-o", tmp_path / "model_data.o"], check=True)
    probe = '#include "model_io.h"\nint probe(int p) { return kEdgecnnPixelToInput[0][p & 255] + EDGECNN_INPUT_BYTES; }\n'
    (tmp_path / "io_c.c").write_text(probe)
    (tmp_path / "io_cc.cc").write_text(probe)
    subprocess.run([ARM_GCC, *M4_FLAGS, "-std=c99", "-I", src, "-c", tmp_path / "io_c.c", "-o", tmp_path / "io_c.o"],
                   check=True)
    subprocess.run([ARM_GXX, *M4_FLAGS, "-I", src, "-c", tmp_path / "io_cc.cc", "-o", tmp_path / "io_cc.o"],
                   check=True)
    out = subprocess.run([ARM_SIZE, tmp_path / "model_data.o"], check=True, capture_output=True, text=True).stdout
    text, data, bss = (int(v) for v in out.splitlines()[1].split()[:3])
    print(f"arm-none-eabi-size model_data.o: text {text} data {data} bss {bss} (model {flash} bytes)")
    assert flash <= text <= flash + 64 and data == 0 and bss == 0  # the whole model is read-only flash


def _tflm_include_dirs() -> list[str] | None:
    root = os.environ.get("EDGECNN_TFLM_ROOT")
    if not root:
        return None
    downloads = Path(root) / "tensorflow/lite/micro/tools/make/downloads"
    dirs = [Path(root), downloads / "flatbuffers" / "include", downloads / "gemmlowp"]
    return [str(d) for d in dirs] if all(d.is_dir() for d in dirs) else None


@pytest.mark.skipif(not ARM_GXX or _tflm_include_dirs() is None,
                    reason="main.cc and model_ops.h need the TFLM headers: set EDGECNN_TFLM_ROOT to a tflite-micro "
                           "checkout whose tools/make/downloads holds flatbuffers and gemmlowp")
def test_main_cc_compiles_against_the_tflm_headers(tflm_export, tmp_path) -> None:
    bundle, _ = tflm_export
    inc = [a for d in [str(bundle / "tflm"), *_tflm_include_dirs()] for a in ("-I", d)]
    subprocess.run([ARM_GXX, *M4_FLAGS[:-1], "-std=c++17", "-fno-exceptions", "-fno-rtti", "-DTF_LITE_STATIC_MEMORY",
                    *inc, "-c", bundle / "tflm" / "main.cc", "-o", tmp_path / "main.o"], check=True)
    bss = int(subprocess.run([ARM_SIZE, tmp_path / "main.o"], check=True, capture_output=True,
                             text=True).stdout.splitlines()[1].split()[2])
    assert bss >= _manifest(bundle)["tflm"]["arena_bytes"]  # the arena is static RAM


def test_verify_reruns_the_tflm_model(tflm_export, capsys) -> None:
    bundle, _ = tflm_export
    assert run_cli("verify", bundle) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| model.int8.tflite | tflm |")]
    acc = _manifest(bundle)["tflm"]["verified"]["accuracy"]
    assert len(rows) == 1 and f"{100 * acc:.2f}%" in rows[0]


def test_verify_says_so_when_tflite_micro_is_absent(tflm_export, monkeypatch, capsys) -> None:
    import sys

    bundle, _ = tflm_export
    monkeypatch.setitem(sys.modules, "tflite_micro", None)  # import tflite_micro now raises ImportError
    monkeypatch.setitem(sys.modules, "tflite_micro.python.tflite_micro", None)
    assert run_cli("verify", bundle, "--eval-limit", "50", "--max-drop", "100") == 0
    out = capsys.readouterr().out
    assert "tflite-micro (the TFLM interpreter) is not installed on this host, so model.int8.tflite was NOT " \
           "re-verified" in out
    assert "| tflm |" not in out


def test_info_profile_says_whether_a_bundle_fits(tflm_export, capsys) -> None:
    bundle, _ = tflm_export
    assert run_cli("info", "--profile", "cortex-m4", "--bundle", bundle) == 0
    out = capsys.readouterr().out
    assert "nrf52840" in out.lower() and re.search(r"bundle .*: fits cortex-m4 .*tensor arena", out)
    assert run_cli("info", "--profile", "rp2040", "--bundle", bundle, "--json") == 0
    j = json.loads(capsys.readouterr().out)
    assert j["fit"]["fits"] and j["fit"]["ram"]["have_bytes"] == 264 * 1024


def test_fit_reports_a_model_too_big_with_the_numbers(tflm_export) -> None:
    from edgecnn.devices.mcu import fit, format_fit, load_mcu_profile

    bundle, _ = tflm_export
    t = _manifest(bundle)["tflm"]
    # MobileNetV2 224 (10 classes) int8, measured in the TFLM interpreter by benchmarks/tflm_fit.py
    # (docs/microcontrollers.md); a full export of it takes minutes, too long for the default suite
    big = {"arena_bytes": 2_604_592, "flash_bytes": 2_706_232}
    f = fit(big, load_mcu_profile("cortex-m4"))
    assert not f["fits"] and not f["ram"]["fits"] and not f["flash"]["fits"]
    assert format_fit(f).startswith("does NOT fit cortex-m4") and "(too big)" in format_fit(f)
    e = fit(big, load_mcu_profile("esp32-s3"))  # 8 MB PSRAM and flash take it, the arena outside SRAM
    assert e["fits"] and e["arena_in"] == "external RAM"
    # the measured LeNet-5 arena against a part with less RAM than it needs
    tiny = json.loads(json.dumps(load_mcu_profile("cortex-m4")))
    tiny["memory"]["ram_bytes"] = t["arena_bytes"] - 1
    assert not fit(t, tiny)["fits"]


def test_fp32_only_tflm_is_one_clear_error_and_writes_nothing(digits_ckpt, tmp_path, capsys) -> None:
    out = tmp_path / "b"
    assert run_cli("export", digits_ckpt, "--formats", "tflm", "--out", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--formats tflm needs --int8 --calib DATA" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert run_cli("export", digits_ckpt, "--formats", "onnx", "--device", "cortex-m4", "--out", out) == 2
    assert "add tflm to --formats" in capsys.readouterr().err
    assert run_cli("export", digits_ckpt, "--formats", "tflm", "--int8", "--calib", "digits", "--device",
                   "cortex-m9", "--out", out) == 2
    assert "unknown microcontroller profile 'cortex-m9'" in capsys.readouterr().err and not out.exists()


def _with_opcode(model: bytes, old: str, new: str) -> bytes:
    """The same flatbuffer with every `old` builtin op relabelled `new` (an op TFLM has no kernel for)."""
    import flatbuffers
    from tflite_micro.python.tflite_micro import runtime
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    m = runtime.convert_bytearray_to_object(bytearray(model))
    for code in m.operatorCodes:
        if runtime.get_builtin_code_from_operator_code(code) == getattr(fb.BuiltinOperator, old):
            code.builtinCode = getattr(fb.BuiltinOperator, new)
            code.deprecatedBuiltinCode = min(getattr(fb.BuiltinOperator, new), 127)
    b = flatbuffers.Builder(len(model) + 1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_an_op_tflm_lacks_is_named(tflm_export, tmp_path) -> None:
    from tflite_micro.python.tflite_micro import runtime

    from edgecnn.export.tflm import TFLM_OPS, check_tflm_model

    bundle, _ = tflm_export
    art = next(a for a in _manifest(bundle)["artifacts"] if a["file"] == "model.int8.tflite")
    assert "GELU" not in TFLM_OPS
    path = tmp_path / "gelu.tflite"
    path.write_bytes(_with_opcode((bundle / "model.int8.tflite").read_bytes(), "MAX_POOL_2D", "GELU"))
    with pytest.raises(EdgeCNNError, match=r"^gelu.tflite: TensorFlow Lite Micro has no kernel for op\(s\) GELU "
                                           r"\(the model uses DEPTHWISE_CONV_2D, GELU, CONV_2D"):
        check_tflm_model(path, art["input"], art["output"], "gelu.tflite")
    with pytest.raises(RuntimeError):  # and the TFLM runtime itself indeed refuses it
        runtime.Interpreter.from_file(str(path), arena_size=1 << 20)


@pytest.mark.slow
def test_export_of_a_model_with_an_op_tflm_lacks_fails_naming_it(monkeypatch, tmp_path, capsys) -> None:
    """End to end: a real GELU CNN trained checkpoint-format, converted by litert-torch; nothing is written."""
    import torch
    from torch import nn

    from edgecnn.data import default_input_spec, load_dataset
    from edgecnn.models import registry
    from edgecnn.train.checkpoint import make_checkpoint, save_checkpoint

    class GeluCNN(nn.Module):
        def __init__(self, num_classes: int = 10, in_channels: int = 1):
            super().__init__()
            self.conv, self.act = nn.Conv2d(in_channels, 8, 3, padding=1), nn.GELU()
            self.fc = nn.Linear(8 * 16 * 16, num_classes)

        def forward(self, x):
            return self.fc(self.act(self.conv(x)).flatten(1))

    monkeypatch.setitem(registry.MODELS, "gelucnn", registry.ModelSpec("gelucnn", GeluCNN, "GELU test CNN", 16))
    ds = load_dataset("digits")
    torch.manual_seed(0)
    ckpt = make_checkpoint(GeluCNN().eval(), name="gelucnn", num_classes=10, in_channels=1, options={},
                           classes=list(ds.classes), input_spec=default_input_spec(ds, 16), dataset="digits")
    save_checkpoint(ckpt, tmp_path / "gelu.pt")
    out = tmp_path / "bundle"
    assert run_cli("export", tmp_path / "gelu.pt", "--formats", "tflm", "--int8", "--calib", "digits",
                   "--calib-size", "16", "--verify-samples", "50", "--max-drop", "100", "--out", out) == 2
    # one error line (torch may print its own import-time deprecation warning first, outside edgecnn)
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("edgecnn: error:")]
    assert len(errors) == 1 and "TensorFlow Lite Micro has no kernel for op(s) GELU" in errors[0]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["gelu.pt"]


def test_residual_adds_are_quantized_so_resnets_stay_full_integer() -> None:
    """torch.export leaves `x + y` without source_fn_stack; without the mark the quantizer leaves it float."""
    import torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from torch import nn

    from edgecnn.export.tflite import _mark_residual_adds

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            return x + self.conv(x)

    def annotated_adds(mark: bool) -> list[bool]:
        graph = torch.export.export(Residual().eval(), (torch.rand(1, 4, 8, 8),)).module()
        if mark:
            _mark_residual_adds(graph)
        q = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
        q.annotate(graph)
        return [("quantization_annotation" in n.meta) for n in graph.graph.nodes
                if n.target == torch.ops.aten.add.Tensor]

    assert annotated_adds(mark=False) == [False]  # what litert-torch alone does on torch 2.14
    assert annotated_adds(mark=True) == [True]


def test_verify_checks_the_tflm_files(tflm_export, tmp_path) -> None:
    from edgecnn.export.tflm import verify_tflm_block

    bundle, _ = tflm_export
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    m = _manifest(copy)
    x = np.zeros((1, 1, 32, 32), np.float32)
    with (copy / "tflm" / "model_io.h").open("a") as f:
        f.write("/* edited */\n")
    with pytest.raises(EdgeCNNError, match=r"model_io.h: sha256 does not match the manifest"):
        verify_tflm_block(copy, m, x, np.zeros(1, np.int64), None, "digits")
    m["tflm"]["sources"] = {"../outside.h": "0" * 64}
    with pytest.raises(EdgeCNNError, match=r"names '../outside.h', outside the bundle"):
        verify_tflm_block(copy, m, x, np.zeros(1, np.int64), None, "digits")


def test_mcu_fit_is_device_side_and_never_imports_torch(tflm_export) -> None:
    import sys

    bundle, _ = tflm_export
    code = (
        "import sys; from edgecnn.devices import mcu; from edgecnn.devices.cli import cmd_info;"
        f"b = mcu.bundle_tflm_block({str(bundle)!r});"
        "[mcu.format_fit(mcu.fit(b, mcu.load_mcu_profile(n))) for n in mcu.mcu_profile_names()];"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('edgecnn.train', 'edgecnn.export', "
        "'tflite_micro'))];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
