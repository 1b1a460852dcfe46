"""`edgecnn run` on a series bundle, end to end: a cnn1d trained on BasicMotions (aeon's wheel) classifies the
40 test recordings concatenated into one CSV stream, in sliding windows, smoothed; serial:// through a
pseudo-terminal; bad input is one line and exit 2; no torch on the device side."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
import tty
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from edgecnn.errors import EdgeCNNError

aeon_datasets = pytest.importorskip("aeon.datasets", reason="the series extra: pip install 'edgecnn[series]'")
BASIC_MOTIONS = Path(aeon_datasets.__file__).parent / "data" / "BasicMotions"
SEGMENT = 100  # samples per BasicMotions recording (10 s at 10 Hz)
REPO = Path(__file__).resolve().parents[1]


def run_cli(*args) -> int:
    from edgecnn.cli import main

    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def bm_stream_bundle(bm_bundle) -> Path:
    """cnn1d on BasicMotions at its 10 Hz (tests/conftest.py), an ONNX fp32 bundle."""
    return bm_bundle


@pytest.fixture(scope="module")
def bm_stream(tmp_path_factory) -> tuple[Path, list[str], np.ndarray]:
    """The 40 test recordings in a fixed shuffle (29 changes of activity) as one CSV stream, their labels,
    and the samples."""
    x, y = aeon_datasets.load_from_ts_file(str(BASIC_MOTIONS / "BasicMotions_TEST.ts"))
    order = np.random.default_rng(0).permutation(len(x))
    samples = np.concatenate([x[i].T for i in order])
    path = tmp_path_factory.mktemp("bm-stream") / "basicmotions-test.csv"
    np.savetxt(path, samples, delimiter=",", header="acc_x,acc_y,acc_z,gyr_x,gyr_y,gyr_z", comments="", fmt="%.6f")
    return path, [str(y[i]).lower() for i in order], samples


def segment_labels(records: list[dict], segments: int) -> list[str | None]:
    """The smoothed label in force when each recording segment has been read to its end: that of the
    last window ending at or before the segment's last sample."""
    out = []
    for k in range(segments):
        end = (k + 1) * SEGMENT
        last = max((r for r in records if r["samples"][1] <= end), key=lambda r: r["samples"][1], default=None)
        label = last["smoothed"]["label"] if last else None
        out.append(label.lower() if label else None)
    return out


def test_stream_of_recordings_gets_the_right_smoothed_label_per_segment(bm_stream_bundle, bm_stream, capsys,
                                                                         tmp_path):
    path, truth, _ = bm_stream
    report = tmp_path / "run.json"
    # onnxruntime fp32: what benchmarks/series_stream.py measured (auto may pick another backend here)
    assert run_cli("run", bm_stream_bundle, "--source", f"csv:{path}", "--headless", "--report", report,
                   "--backend", "onnxruntime", "--precision", "fp32") == 0
    out = capsys.readouterr()
    records = [json.loads(line) for line in out.out.splitlines()]
    # default hop: a quarter window (25 samples); every window of the file, in order
    assert [r["window"] for r in records] == list(range((len(truth) * SEGMENT - SEGMENT) // 25 + 1))
    assert all(r["samples"] == [25 * r["window"], 25 * r["window"] + SEGMENT] for r in records)
    assert all(r["t"] == r["samples"][1] / 10 and r["age_ms"] >= 0 and r["captured"] > 1e9 for r in records)
    got = segment_labels(records, len(truth))
    right = sum(g == t for g, t in zip(got, truth))
    # measured: 39 of 40 (seed 0; 39, 39, 39 over seeds 0-2, docs/sensors.md); bar: 95 % (38 of 40)
    assert right >= 38, list(zip(got, truth))
    # a detection whenever the activity changes (after the average has filled)
    summary = json.loads(report.read_text())
    assert summary["windows"] == len(records) and summary["dropped"] == 0 and summary["kind"] == "series"
    assert summary["detections"] >= sum(a != b for a, b in zip(truth, truth[1:])) - 2
    assert "windows (100 samples every 25)" in out.err


def test_serial_stream_through_a_pseudo_terminal(bm_stream_bundle, bm_stream, capsys):
    """A board printing a real recording over a serial line (a pty, raw mode like a USB CDC port): each
    window's result is the classifier's on exactly those samples."""
    from edgecnn.runtime import Classifier

    _, _, samples = bm_stream
    rec = samples[: 6 * SEGMENT]
    text = ["".join(",".join(f"{v:.6f}" for v in row) + "\r\n" for row in rec[i : i + 20])
            for i in range(0, len(rec), 20)]
    master, slave = os.openpty()
    tty.setraw(slave)
    port = os.ttyname(slave)
    done = threading.Event()

    def send(data: bytes) -> None:
        while data:  # a pty takes what fits in its buffer: write the rest when there is room
            data = data[os.write(master, data):]

    def board() -> None:  # Serial.println of each sample, 20 at a time, until the run is over
        # Wait until the runtime has opened the port (pyserial sets its mode, then flushes the input):
        # bytes in the pty while it flushes may be cut out of the middle of the stream.
        closed = termios.tcgetattr(slave)
        while termios.tcgetattr(slave) == closed and not done.wait(0.01):
            pass
        time.sleep(0.5)
        send(b"0.25,3\r\n")  # the end of a line sent before the port was opened
        i = 0
        try:
            while not done.is_set():
                send(text[i % len(text)].encode())
                i += 1
                time.sleep(0.02)
        except OSError:  # the test closed the pty while a write waited
            pass

    with socket.socket() as s:  # a free port for --health
        s.bind(("127.0.0.1", 0))
        health_port = s.getsockname()[1]
    health: list[dict] = []
    run_over = threading.Event()

    def service_manager() -> None:  # polls /healthz while the run goes on, then stops it like Ctrl-C
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not run_over.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=2) as r:
                    body = json.loads(r.read())
                if body["results"] >= 10:
                    health.append(body)
                    break
            except OSError:  # not listening yet, or 503 before the first result
                pass
            time.sleep(0.05)
        if not run_over.is_set():  # (a run that failed by itself is not interrupted after the fact)
            os.kill(os.getpid(), signal.SIGINT)

    writer = threading.Thread(target=board, daemon=True)
    manager = threading.Thread(target=service_manager, daemon=True)
    writer.start()
    manager.start()
    try:
        # the backend the check below uses (auto may choose OpenVINO's bf16 hint, whose probabilities differ)
        rc = run_cli("run", bm_stream_bundle, "--source", f"serial://{port}?baud=115200", "--headless", "--hop", "20",
                     "--health", f"127.0.0.1:{health_port}", "--backend", "onnxruntime", "--precision", "fp32")
    finally:
        run_over.set()
        manager.join(60)
        done.set()
        os.close(slave)  # the board's blocked write (if any) fails now
        writer.join(5)
        os.close(master)
    out = capsys.readouterr()
    assert rc == 0, out.err
    live = [json.loads(line) for line in out.out.splitlines()]
    assert len(live) >= 10 and "serial " + port in out.err and "(interrupted)" in out.err
    assert health and health[0]["status"] == "ok" and health[0]["sources"] == [
        {"source": f"serial {port} at 115200 baud", "state": "live"}]
    # Opening the port flushed what the board had sent, so the stream starts at some sample o of the
    # recording: find o from the first window, then every window must be the classifier's result on the
    # intact samples [o + start, o + end) of the (repeated) recording.
    clf = Classifier(bm_stream_bundle, backend="onnxruntime", precision="fp32")

    def agrees(r: dict, o: int) -> bool:
        start, end = r["samples"]
        want = clf.predict_series(rec[np.arange(o + start, o + end) % len(rec)].astype(np.float32))
        return r["top"][0]["label"] == want.label and abs(r["top"][0]["prob"] - want.confidence) < 1e-4

    offsets = [o for o in range(len(rec)) if agrees(live[0], o)]
    assert any(all(agrees(r, o) for r in live[1:]) for o in offsets), (offsets, out.err)
    assert all(b["samples"][0] - a["samples"][0] == 20 * (b["window"] - a["window"]) for a, b in zip(live, live[1:]))
    clf.close()


def _one_line(capsys, *args) -> str:
    assert run_cli(*args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_bad_input_is_one_line_and_exit_2(bm_stream_bundle, bm_stream, tmp_path, capsys):
    digits_bundle = REPO / "export" / "lenet5-digits"  # the image bundle shipped in the repository
    path, _, samples = bm_stream
    lines = path.read_text().splitlines()
    short = tmp_path / "short.csv"
    short.write_text("\n".join(lines[:120] + [lines[120].rsplit(",", 1)[0]] + lines[121:]) + "\n")
    # found while reading, after the model is loaded: an explicit backend, so no tuning note on stderr
    err = _one_line(capsys, "run", bm_stream_bundle, "--source", f"csv:{short}", "--headless", "--backend",
                    "onnxruntime", "--precision", "fp32")
    assert "short.csv line 121: 5 values, expected 6 (a missing column?)" in err
    vtest = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"
    err = _one_line(capsys, "run", bm_stream_bundle, "--source", vtest, "--headless")
    assert "takes series windows (6 channels x 100 samples): --source must be csv:FILE" in err
    err = _one_line(capsys, "run", digits_bundle, "--source", f"csv:{path}", "--headless")
    assert "is an image bundle" in err
    err = _one_line(capsys, "run", bm_stream_bundle, "--source", f"csv:{path}", "--roi", "0,0,5,5")
    assert "--roi is for image bundles" in err
    err = _one_line(capsys, "run", digits_bundle, "--source", vtest, "--hop", "5")
    assert "--hop is for series bundles" in err
    # the six channels of the recordings stored as a WAV at 100 Hz (scaled into [-1, 1]): another rate
    import soundfile

    wav = tmp_path / "motion-100hz.wav"
    soundfile.write(wav, (samples / np.abs(samples).max()).astype(np.float32), 100, subtype="FLOAT")
    err = _one_line(capsys, "run", bm_stream_bundle, "--source", f"wav:{wav}", "--headless")
    assert "100 Hz, the bundle takes 10 Hz (pass --resample to convert it" in err
    preds = tmp_path / "predictions.jsonl"
    assert run_cli("run", bm_stream_bundle, "--source", f"wav:{wav}", "--headless", "--resample",
                   "--predictions", preds) == 0
    resampled = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(resampled) == (len(samples) // 10 - SEGMENT) // 25 + 1  # a tenth of the samples
    assert [json.loads(x) for x in preds.read_text().splitlines()] == resampled  # the same lines, in a file
    err = _one_line(capsys, "run", bm_stream_bundle, "--source", "serial:///dev/ttyNOPE0", "--headless")
    assert "cannot open serial port /dev/ttyNOPE0" in err


def test_series_run_loads_no_host_library(bm_stream_bundle, bm_stream):
    """The device side of a series run: no torch (nor any other host library) is imported."""
    path, _, _ = bm_stream
    code = f"""
import json, sys
from edgecnn.cli import main
rc = main(["run", {str(bm_stream_bundle)!r}, "--source", "csv:{path}", "--headless", "--max-frames", "5"])
print(json.dumps({{"rc": rc, "host": sorted(m for m in sys.modules if m.split(".")[0] in
                                             ("torch", "torchvision", "aeon", "onnx", "matplotlib"))}}))
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert lines[-1] == {"rc": 0, "host": []} and [r["window"] for r in lines[:-1]] == [0, 1, 2, 3, 4]


def test_smoother_options_are_checked(bm_stream_bundle, bm_stream, capsys):
    path, _, _ = bm_stream
    assert "--threshold must be in [0, 1)" in _one_line(capsys, "run", bm_stream_bundle, "--source", f"csv:{path}",
                                                        "--headless", "--threshold", "2")
    with pytest.raises(EdgeCNNError):
        from edgecnn.runtime.smoothing import ResultSmoother

        ResultSmoother(["a", "b"], average=2, minimum_count=3)


def test_profile_times_the_cold_start_of_a_series_bundle(bm_stream_bundle, capsys):
    """With a cached tune, `edgecnn profile` times a fresh process to its first result: for a series bundle
    the first result is of its sample CSV window (predict_series), not an image."""
    assert run_cli("tune", bm_stream_bundle, "--budget-s", "1") == 0
    capsys.readouterr()
    assert run_cli("profile", bm_stream_bundle, "--runs", "5", "--warmup", "1") == 0
    out = capsys.readouterr().out
    assert "cold start to first result" in out and "cached tune" in out, out
