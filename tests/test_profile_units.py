"""Profile area, without a model: stats vs numpy, environment record on a fake device tree, report validation."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgecnn.errors import EdgeCNNError
from edgecnn.profile.environment import environment_record, environment_summary
from edgecnn.profile.perop import parse_onnxruntime_trace
from edgecnn.profile.plots import pareto_front
from edgecnn.profile.profiler import parse_threads
from edgecnn.profile.report import SCHEMA, read_report, validate_report
from edgecnn.profile.stats import StageTimes, latency_stats, throughput


@pytest.mark.parametrize("seed,n", [(0, 1), (1, 7), (2, 1000), (3, 12345)])
def test_stats_match_numpy(seed, n):
    x = np.random.default_rng(seed).lognormal(0.0, 0.5, size=n)
    s = latency_stats(x)
    assert s["count"] == n
    for q in (50, 90, 99):
        assert s[f"p{q}"] == pytest.approx(np.percentile(x, q), rel=1e-12)
    assert s["mean"] == pytest.approx(x.mean())
    assert s["std"] == pytest.approx(x.std())
    assert (s["min"], s["max"]) == (x.min(), x.max())


def test_stats_known_values_and_throughput():
    s = latency_stats([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    assert s["p50"] == 5.5 and s["p90"] == pytest.approx(9.1) and s["p99"] == pytest.approx(9.91)
    assert throughput(s, batch=4) == {"inferences_per_s": pytest.approx(1000 / 5.5),
                                      "images_per_s": pytest.approx(4000 / 5.5)}


def test_stats_reject_empty_and_nan():
    with pytest.raises(EdgeCNNError, match="zero runs"):
        latency_stats([])
    with pytest.raises(EdgeCNNError, match="NaN"):
        latency_stats([1.0, float("nan")])


def test_stage_times_summary():
    t = StageTimes(["capture", "network"])
    for ms in (1.0, 2.0, 3.0):
        t.add("network", ms)
    t.add("postprocess", 0.5)
    stats = t.stats()
    assert list(stats) == ["network", "postprocess"]  # capture had no samples
    assert stats["network"]["p50"] == 2.0
    assert "network" in t.summary() and "n=3" in t.summary()


def test_parse_threads():
    assert parse_threads("1,2,4") == [1, 2, 4]
    assert parse_threads(None) == [None]
    assert parse_threads(3) == [3]
    for bad in ("0", "a,b", "", "2,-1"):
        with pytest.raises(EdgeCNNError):
            parse_threads(bad)


def _write(root, rel, text):
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_environment_on_fake_jetson(tmp_path):
    _write(tmp_path, "proc/device-tree/model", "NVIDIA Jetson Orin Nano Developer Kit\x00")
    _write(tmp_path, "proc/device-tree/compatible", "nvidia,p3768-0000+p3767-0005\x00nvidia,tegra234\x00")
    _write(tmp_path, "etc/nv_tegra_release", "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic\n")
    _write(tmp_path, "var/lib/nvpmodel/status", "pmode:0001 fmode:fanNull\n")
    _write(tmp_path, "etc/nvpmodel.conf", "< POWER_MODEL ID=0 NAME=15W >\n< POWER_MODEL ID=1 NAME=7W >\n")
    _write(tmp_path, "proc/cpuinfo", "".join(f"processor\t: {i}\nCPU implementer\t: 0x41\nCPU part\t: 0xd42\n\n"
                                             for i in range(6)))
    for cpu, (gov, cur) in enumerate([("schedutil", 1510400), ("performance", 729600)]):
        _write(tmp_path, f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor", gov + "\n")
        _write(tmp_path, f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq", f"{cur}\n")
        _write(tmp_path, f"sys/devices/system/cpu/cpu{cpu}/cpufreq/cpuinfo_max_freq", "1510400\n")
    _write(tmp_path, "sys/class/thermal/thermal_zone0/type", "cpu-thermal\n")
    _write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "48500\n")
    _write(tmp_path, "sys/class/thermal/thermal_zone1/type", "gpu-thermal\n")
    _write(tmp_path, "sys/class/thermal/thermal_zone1/temp", "garbage\n")  # unreadable value: skipped
    _write(tmp_path, "proc/meminfo", "MemTotal:        7802200 kB\nMemFree: 1 kB\n")
    _write(tmp_path, "proc/loadavg", "0.52 0.40 0.31 1/345 999\n")
    _write(tmp_path, "etc/os-release", 'PRETTY_NAME="Ubuntu 22.04.5 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\n')

    env = environment_record(tmp_path, machine="aarch64")
    assert env["board"] == "NVIDIA Jetson Orin Nano Developer Kit"
    assert env["jetson"]["l4t"] == "36.4.3" and env["jetson"]["jetpack"] == "6.2"
    assert env["jetson"]["power_mode"] == {"id": 1, "name": "7W"}
    assert env["cpu"]["cores"] == 6 and "Cortex-A78AE" in env["cpu"]["model"]
    freq = env["cpu"]["frequency"]
    assert freq["governors"] == ["performance", "schedutil"]
    assert freq["cores"][0] == {"cpu": 0, "governor": "schedutil", "cur_mhz": 1510.4, "max_mhz": 1510.4}
    assert env["temperatures"] == [{"zone": "thermal_zone0", "type": "cpu-thermal", "celsius": 48.5}]
    assert env["memory_total_mb"] == pytest.approx(7619.3, abs=0.1)
    assert env["load_average"] == [0.52, 0.40, 0.31]
    assert env["os"]["pretty_name"] == "Ubuntu 22.04.5 LTS"
    assert env["hostname"] is None  # a fake root is not this host
    line = environment_summary(env)
    assert "Jetson Orin Nano" in line and "48.5 C" in line and "nvpmodel 1 7W" in line and "1510 MHz" in line
    json.dumps(env)  # JSON-serialisable as is


def test_environment_on_empty_root(tmp_path):
    env = environment_record(tmp_path, machine="x86_64")
    assert env["board"] is None and env["jetson"] is None
    assert env["cpu"]["frequency"] == {"governors": [], "cores": []}
    assert env["temperatures"] == [] and env["load_average"] is None and env["memory_total_mb"] is None
    assert "onnxruntime" in env["libraries"]  # versions come from this Python, not the fake root
    environment_summary(env)


def test_onnxruntime_trace_parsing_skips_warmup():
    def run(ts, conv_us):
        return [{"cat": "Session", "name": "model_run", "ts": ts, "dur": 100},
                {"cat": "Node", "name": "conv1_kernel_time", "ts": ts + 1, "dur": conv_us, "args": {"op_name": "Conv"}},
                {"cat": "Node", "name": "relu_kernel_time", "ts": ts + 2, "dur": 10, "args": {"op_name": "Relu"}},
                {"cat": "Node", "name": "relu_fence_before", "ts": ts + 2, "dur": 0, "args": {"op_name": "Relu"}}]
    events = run(0, 5000) + run(1000, 30) + run(2000, 40) + run(3000, 30)
    op = parse_onnxruntime_trace(events, warmup=1)
    assert op["available"] and op["runs"] == 3
    by = {t["op_type"]: t for t in op["by_type"]}
    assert by["Conv"]["ms_per_run"] == pytest.approx(0.030)  # median of 30, 40, 30 us; warm-up 5 ms dropped
    assert by["Relu"]["ms_per_run"] == pytest.approx(0.010)
    assert by["Conv"]["percent"] == pytest.approx(75.0)
    assert op["top_nodes"][0]["name"] == "conv1"
    assert not parse_onnxruntime_trace(events, warmup=4)["available"]


def test_pareto_front():
    # (latency, accuracy): b dominates a; d is slowest but most accurate
    lat, acc = [2.0, 1.0, 0.5, 5.0, 3.0], [0.90, 0.95, 0.80, 0.97, 0.94]
    assert pareto_front(lat, acc) == [2, 1, 3]


def _minimal_report():
    lat = {"count": 3, "p50": 1.0, "p90": 1.5, "p99": 1.9, "mean": 1.2, "std": 0.3, "min": 0.9, "max": 2.0}
    return {"schema": SCHEMA, "bundle": {}, "environment": {}, "settings": {}, "skipped": [], "results": [{
        "artifact": "m.onnx", "format": "onnx", "precision": "fp32", "backend": "onnxruntime", "threads": 1,
        "batch": 1, "file_size_bytes": 10, "cold_start": {}, "latency_ms": lat, "throughput": {}, "memory": {},
        "samples_ms": [0.9, 1.0, 2.0], "per_op": None}]}


@pytest.mark.parametrize("mutate,message", [
    (lambda r: r.clear() or r.update({"traceEvents": []}), "not an edgecnn profile report"),
    (lambda r: r.update(schema="edgecnn.profile/0"), "not supported by this edgecnn"),
    (lambda r: r.update(schema="edgecnn.bundle/1"), "not an edgecnn profile report"),
    (lambda r: r.pop("results"), "missing field 'results'"),
    (lambda r: r["results"][0]["latency_ms"].update(p90=0.5), "not ordered"),
    (lambda r: r["results"][0].update(samples_ms=[1.0]), "samples_ms has 1 values"),
    (lambda r: r["results"][0].update(threads="two"), "field 'threads' has the wrong type"),
])
def test_bad_reports_are_one_clear_line(tmp_path, mutate, message):
    r = _minimal_report()
    validate_report(r)  # the unmodified report is valid
    mutate(r)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(r))
    with pytest.raises(EdgeCNNError, match=message) as e:
        read_report(path)
    assert "\n" not in str(e.value)


def test_report_file_errors(tmp_path):
    with pytest.raises(EdgeCNNError, match="report not found"):
        read_report(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(EdgeCNNError, match="not a JSON file"):
        read_report(tmp_path / "x.json")


def test_device_side_modules_do_not_import_torch():
    code = ("import sys; import edgecnn.profile.profiler, edgecnn.profile.report, edgecnn.profile.plots, "
            "edgecnn.profile.perop, edgecnn.profile.environment, edgecnn.profile.stats; "
            "bad = [m for m in ('torch', 'edgecnn.train', 'edgecnn.export') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
