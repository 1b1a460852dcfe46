"""`edgecnn demo` (the README's main command) end to end on the embedded digits, at a small scale."""

from __future__ import annotations

import json
import re

from conftest import run_cli

FAST = ("--epochs", "8", "--finetune-epochs", "2", "--runs", "20", "--max-frames", "45")


def test_demo_runs_every_step_then_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    assert run_cli("demo", "--out", str(out), *FAST) == 0
    text = capsys.readouterr().out
    for n in range(1, 7):
        assert f"=== [{n}/6]" in text
    for f in ("train/best.pt", "pruned/pruned.pt", "bundle/manifest.json", "bundle/REPORT.md", "profile.json",
              "profile.md", "digits_test.mp4", "annotated.mp4", "run_summary.json"):
        assert (out / f).is_file(), f
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    assert {(a["format"], a["precision"]) for a in manifest["artifacts"]} == {
        ("onnx", "fp32"), ("onnx", "int8"), ("tflite", "fp32"), ("tflite", "int8")}
    frames = (out / "predictions.jsonl").read_text().splitlines()
    assert len(frames) == 45
    # the video holds held-out digits with known labels: a trained model gets most of them right
    hits, total = map(int, re.search(r"video: (\d+)/(\d+) frames classified correctly", text).groups())
    assert total == 45 and hits / total >= 0.8
    # the final table has one row per artifact, with measured latency
    table = text[text.index("format  precision"):]
    assert len(re.findall(r"^\s*(onnx|tflite)\s+(fp32|int8)\s", table, re.M)) == 4

    # a second run finds every step's result and redoes nothing
    assert run_cli("demo", "--out", str(out), *FAST) == 0
    again = capsys.readouterr().out
    assert "already trained" in again and "already pruned" in again and "already exported" in again


def test_demo_checks_the_source_before_training(tmp_path, capsys):
    out = tmp_path / "demo"
    assert run_cli("demo", "--out", str(out), "--source", str(tmp_path / "missing.mp4")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgecnn: error: source not found") and "\n" not in err
    assert not out.exists()
