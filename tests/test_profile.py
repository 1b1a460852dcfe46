"""Real profiles of the shared LeNet-5 digits bundle (ONNX fp32/int8 on onnxruntime, TFLite on LiteRT),
`edgecnn report` on two real reports, `edgecnn benchmark` on the shared checkpoint, and bad input."""

from __future__ import annotations

import json
import shutil

import pytest

from edgecnn.cli import main
from edgecnn.profile.benchmark import read_benchmark
from edgecnn.profile.profiler import profile_bundle
from edgecnn.profile.report import read_report, validate_report

RUNS = 30


@pytest.fixture(scope="module")
def onnx_report(digits_bundle, tmp_path_factory):
    """A real profile via the CLI: every ONNX artifact, 1 thread, with the per-op breakdown."""
    out = tmp_path_factory.mktemp("profile-onnx")
    rc = main(["profile", str(digits_bundle), "--backend", "onnxruntime", "--threads", "1", "--runs", str(RUNS),
               "--warmup", "5", "--per-op", "--report", str(out / "onnx.json"), "--markdown", str(out / "onnx.md"),
               "--plots", str(out / "plots"), "--no-progress"])
    assert rc == 0
    return out


def _check_result(r, runs):
    lat = r["latency_ms"]
    assert lat["count"] == runs == len(r["samples_ms"])
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"] < 1000
    assert r["throughput"]["images_per_s"] == pytest.approx(1000 * r["batch"] / lat["mean"])
    assert r["cold_start"]["load_ms"] > 0 and r["cold_start"]["first_inference_ms"] > 0
    mem = r["memory"]
    assert mem["peak_rss_mb"] >= mem["rss_after_load_mb"] > 0
    assert 0 <= mem["model_rss_mb"] == pytest.approx(mem["peak_rss_mb"] - mem["rss_before_load_mb"])
    assert r["file_size_bytes"] > 1000


def test_profile_onnx_fp32_and_int8(onnx_report, digits_bundle):
    report = read_report(onnx_report / "onnx.json")  # schema-valid on read
    assert report["schema"] == "edgecnn.profile/1"
    by_precision = {r["precision"]: r for r in report["results"]}
    assert set(by_precision) == {"fp32", "int8"}
    for r in report["results"]:
        _check_result(r, RUNS)
        assert r["backend"] == "onnxruntime" and r["threads"] == 1
        assert r["options"]["providers"] == ["CPUExecutionProvider"]
    manifest = json.loads((digits_bundle / "manifest.json").read_text())
    sizes = {a["file"]: a["size_bytes"] for a in manifest["artifacts"]}
    assert all(r["file_size_bytes"] == sizes[r["artifact"]] for r in report["results"])
    assert report["environment"]["cpu"]["cores"] >= 1 and report["environment"]["libraries"]["onnxruntime"]
    assert report["settings"]["input"].startswith("bundle sample images")


def test_per_op_breakdown_has_conv(onnx_report):
    report = read_report(onnx_report / "onnx.json")
    for r in report["results"]:
        op = r["per_op"]
        assert op["available"] and op["runs"] > 0
        types = [t["op_type"] for t in op["by_type"]]
        assert any("Conv" in t for t in types), types  # Conv (fp32) / QLinearConv (int8)
        assert sum(t["percent"] for t in op["by_type"]) == pytest.approx(100.0)
        assert op["top_nodes"] and op["top_nodes"][0]["ms_per_run"] >= op["top_nodes"][-1]["ms_per_run"]
    int8 = next(r for r in report["results"] if r["precision"] == "int8")
    assert "QLinearConv" in [t["op_type"] for t in int8["per_op"]["by_type"]]


def test_markdown_and_plots_written(onnx_report):
    md = (onnx_report / "onnx.md").read_text()
    assert "| model.onnx |" in md and "| model.int8.onnx |" in md and "Per-operator" in md
    pngs = sorted(p.name for p in (onnx_report / "plots").iterdir())
    assert "latency.png" in pngs and len(pngs) == 3  # latency + one per-op plot per ONNX artifact
    assert all((onnx_report / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_profile_litert_batch_and_duration(digits_bundle):
    report = profile_bundle(digits_bundle, backend="litert", precision="int8", threads=[1, 2], duration=0.2,
                            warmup=2, batch=2, per_op=True, progress=False, log=lambda s: None)
    validate_report(report)
    assert [(r["artifact"], r["threads"]) for r in report["results"]] == [("model.int8.tflite", 1),
                                                                          ("model.int8.tflite", 2)]
    for r in report["results"]:
        _check_result(r, r["latency_ms"]["count"])
        assert r["batch"] == 2 and r["latency_ms"]["count"] >= 25  # one 25-run chunk at least
        assert r["per_op"]["available"] is False and "benchmark_model" in r["per_op"]["reason"]
    assert report["settings"]["runs"] is None and report["settings"]["duration_s"] == 0.2


def test_report_merges_two_real_reports(onnx_report, digits_bundle, tmp_path, capsys):
    lite = tmp_path / "lite.json"
    assert main(["profile", str(digits_bundle), "--backend", "litert", "--precision", "fp32", "--runs", "20",
                 "--warmup", "2", "--report", str(lite), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["report", str(onnx_report / "onnx.json"), str(lite), "--out", str(tmp_path / "cmp.md"),
                 "--plot", str(tmp_path / "cmp.png")]) == 0
    table = capsys.readouterr().out
    for artifact in ("model.onnx", "model.int8.onnx", "model.tflite"):
        assert artifact in table
    md = (tmp_path / "cmp.md").read_text()
    assert md.count("| model.") == 3 and "onnx.json" in md and "lite.json" in md
    assert (tmp_path / "cmp.png").read_bytes()[:4] == b"\x89PNG"


def test_benchmark_table(digits_ckpt, digits_bundle, tmp_path):
    """Reuses the shared bundle (same checkpoint: the resume path) so no second export is needed."""
    out = tmp_path / "bench"
    shutil.copytree(digits_bundle, out / "bundle")
    assert main(["benchmark", str(digits_ckpt), "--data", "digits", "--out", str(out), "--threads", "1",
                 "--runs", "20", "--warmup", "2", "--test-limit", "300", "--no-progress"]) == 0
    result = read_benchmark(out / "benchmark.json")
    from edgecnn.runtime.backends.openvino import bf16_supported

    every = {(r["format"], r["precision"], r["backend"].split()[0]): r for r in result["rows"]}
    # OpenVINO rows: the same ONNX files, and on a CPU with bf16 (AVX512_BF16/AMX) the fp32 one with its bf16 hint
    bf16 = {("onnx", "bf16", "openvino")} if bf16_supported() else set()
    assert set(every) == {("pytorch", "fp32", "torch"), ("onnx", "fp32", "onnxruntime"), ("onnx", "int8", "onnxruntime"),
                          ("tflite", "fp32", "litert"), ("tflite", "int8", "litert"), ("onnx", "fp32", "openvino"),
                          ("onnx", "int8", "openvino")} | bf16
    if bf16:  # bf16 kernels round differently from fp32: a few of the 300 images at most
        assert abs(every[("onnx", "bf16", "openvino")]["accuracy"] - every[("onnx", "fp32", "openvino")]["accuracy"]) <= 0.015
    # accuracy measured through each backend: fp32 equal; int8 kernels round differently (measured: 2 of
    # the 300 images, 0.0067, in one full-suite run; 0.001 on 1,000 images in tests/test_openvino.py)
    gap = abs(every[("onnx", "int8", "openvino")]["accuracy"] - every[("onnx", "int8", "onnxruntime")]["accuracy"])
    assert gap <= 0.015
    assert every[("onnx", "fp32", "openvino")]["accuracy"] == every[("onnx", "fp32", "onnxruntime")]["accuracy"]
    rows = {k[:2]: r for k, r in every.items() if k[2] != "openvino"}
    ref = rows[("pytorch", "fp32")]["accuracy"]
    assert ref > 0.85  # LeNet-5 on real digits
    for key, r in rows.items():
        assert abs(r["accuracy"] - ref) <= 0.02, key  # measured per row on 300 test images
        assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p90"]
    assert rows[("onnx", "fp32")]["accuracy"] == ref  # fp32 export computes what PyTorch computes
    assert rows[("onnx", "int8")]["size_bytes"] < rows[("onnx", "fp32")]["size_bytes"] / 2
    assert all(r["verified"] == "yes" for k, r in rows.items() if k[0] != "pytorch")
    assert any(n["what"] == "tensorrt" for n in result["not_run"])  # not installed here: listed
    md = (out / "benchmark.md").read_text()
    assert "| pytorch | fp32 |" in md and "Not run here" in md
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args,message", [
    (["--backend", "tpu"], "unknown backend 'tpu'"),
    (["--runs", "0"], "--runs must be at least 1"),
    (["--precision", "int4"], "unknown precision 'int4'"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["--backend", "litert", "--precision", "fp16"], "nothing to profile"),
    (["--device", "nokia-3310"], "unknown device profile"),
])
def test_profile_bad_input_is_one_line_exit_2(digits_bundle, capsys, args, message):
    rc = main(["profile", str(digits_bundle), "--no-progress", *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("edgecnn: error: ") and message in err and err.count("\n") == 1


def test_profile_and_report_bad_paths(tmp_path, capsys):
    assert main(["profile", str(tmp_path / "nope")]) == 2
    assert "bundle not found" in capsys.readouterr().err
    other = tmp_path / "trace.json"
    other.write_text(json.dumps({"traceEvents": [], "displayTimeUnit": "ms"}))
    assert main(["report", str(other)]) == 2
    err = capsys.readouterr().err
    assert "not an edgecnn profile report" in err and err.count("\n") == 1


def test_missing_backend_is_listed_not_hidden(digits_bundle, monkeypatch):
    import edgecnn.profile.profiler as profiler

    real = profiler.available_backends()
    monkeypatch.setattr(profiler, "available_backends", lambda: {**real, "litert": None})
    report = profile_bundle(digits_bundle, precision="fp32", runs=5, warmup=1, progress=False, log=lambda s: None)
    # the ONNX file on every backend that reads it; the TFLite one listed as skipped
    assert [(r["artifact"], r["backend"]) for r in report["results"]] == [("model.onnx", "onnxruntime"),
                                                                          ("model.onnx", "openvino")]
    assert report["skipped"] == [{"artifact": "model.tflite", "backend": "litert",
                                  "reason": report["skipped"][0]["reason"]}]
    assert "not installed" in report["skipped"][0]["reason"]
