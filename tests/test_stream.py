"""Long runs and unlucky disks (issue 14 items 2, 3, 4, 10; issue 13's pipelined run).

Real data: the shared `digits_bundle`, OpenCV's vtest.avi, and real full filesystems (small tmpfs
mounts; these tests need root, as in this project's CI container, and say so when skipped).
Network tests use 127.0.0.1 only and are bounded in time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecnn.cli import main
from edgecnn.errors import EdgeCNNError
from edgecnn.profile.stats import LatencyHistogram, RunStats

REPO = Path(__file__).resolve().parents[1]
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
VTEST_FRAMES = 795


def run_cli(*args) -> int:
    return main([str(a) for a in args])


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def env() -> dict:
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    e.pop("EDGECNN_DEBUG", None)
    return e


@pytest.fixture
def tiny_fs(tmp_path):
    """A real, small filesystem (tmpfs) to fill up: mount(8) needs root."""
    mounted = []

    def make(size: str) -> Path:
        d = tmp_path / f"fs{len(mounted)}"
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.decode().strip()}")
        mounted.append(d)
        return d

    yield make
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


# -- item 4: bounded run statistics ------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_histogram_percentiles_within_their_stated_error(seed):
    x = np.random.default_rng(seed).lognormal(0.0, 1.5, size=20000)
    h = LatencyHistogram()
    for v in x:
        h.add(v)
    s, xs = h.stats(), np.sort(x)
    for q in (50, 90, 99):
        exact = xs[int(np.ceil(q / 100 * len(x))) - 1]  # nearest rank
        assert abs(s[f"p{q}"] / exact - 1) <= h.relative_error + 1e-12
    assert s["count"] == len(x) and (s["min"], s["max"]) == (x.min(), x.max())
    assert s["mean"] == pytest.approx(x.mean(), rel=1e-9) and s["std"] == pytest.approx(x.std(), rel=1e-6)
    with pytest.raises(EdgeCNNError):
        h.add(float("nan"))


def test_run_stats_memory_does_not_grow_with_frames():
    stages = ("capture", "preprocess", "inference", "postprocess", "render", "total")
    stats = RunStats(stages)
    frame = {s: 1.0 + 0.1 * i for i, s in enumerate(stages)}

    def feed(n: int) -> None:
        for i in range(n):
            stats.add_frame({k: v * (1 + (i % 97) / 10) for k, v in frame.items()})

    feed(2000)  # fills the recent-frames rings: their size is fixed from here on
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    feed(20000)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 20_000, grown  # lists of samples would hold ~20000 * 6 * 32 B = 3.8 MB
    snap = stats.snapshot()
    assert snap["frames"] == 22000 and snap["fps"] > 0 and snap["fps_recent"] > 0
    assert set(snap["stages"]) == set(stages)
    assert snap["stages"]["inference"]["p50"] > 0 and snap["stages"]["inference"]["recent"]["p99"] > 0


class _MemoryProbe:
    """A sink that notes the traced Python memory at two frames of a run."""

    wants_image = False

    def __init__(self, at: tuple[int, int]):
        self.at, self.seen, self.memory = at, 0, {}

    def write(self, image, record) -> bool:
        self.seen += 1
        if self.seen in self.at:
            self.memory[self.seen] = tracemalloc.get_traced_memory()[0]
        return True

    def close(self, ok: bool = True) -> None:
        pass


def test_edgecnn_run_memory_is_bounded_over_a_long_run(digits_bundle, monkeypatch):
    """Frames 500 -> 3000 of a looping run: no per-frame growth (the per-stage lists grew ~200 B/frame)."""
    from edgecnn.runtime import app
    from edgecnn.runtime.classifier import Classifier

    probe = _MemoryProbe((500, 3000))
    monkeypatch.setattr(app, "open_sinks", lambda *a, **k: [probe])
    clf = Classifier(digits_bundle, backend="onnxruntime", precision="fp32", threads=1)
    opts = app.RunOptions(source=str(digits_bundle / "samples"), headless=True, loop=True, max_frames=3000)
    tracemalloc.start()
    try:
        summary = app.run(clf, opts, stderr=open(os.devnull, "w"))
    finally:
        tracemalloc.stop()
    assert summary["frames"] == summary["frames_in"] == 3000
    grown = probe.memory[3000] - probe.memory[500]
    assert grown < 150_000, grown  # 2500 frames x 6 stages x 32 B in lists = 480 kB


# -- the pipelined run ------------------------------------------------------------------------------


def test_pipelined_run_equals_sequential_in_order_with_no_frame_lost(digits_bundle):
    """Same records, same order, every frame of the file, with the stages overlapped or not."""
    import io

    from edgecnn.runtime import app
    from edgecnn.runtime.classifier import Classifier

    clf = Classifier(digits_bundle, backend="onnxruntime", precision="fp32", threads=1)
    results = {}
    for pipelined in (True, False):
        out = io.StringIO()
        opts = app.RunOptions(source=str(VTEST), headless=True, max_frames=120, smooth=0.5, pipelined=pipelined,
                              roi=(200, 100, 300, 300))
        summary = app.run(clf, opts, stdout=out, stderr=io.StringIO())
        records = json_lines(out.getvalue())
        assert summary["frames"] == summary["frames_in"] == 120 and summary["pipelined"] is pipelined
        results[pipelined] = [(r["frame"], r["top"]) for r in records]
    assert [f for f, _ in results[True]] == list(range(120))
    assert results[True] == results[False]


def test_loop_plays_a_folder_again_and_refuses_live_sources(digits_bundle, capsys):
    samples = sorted(p.name for p in (digits_bundle / "samples").iterdir())
    n = len(samples)
    assert run_cli("run", digits_bundle, "--source", digits_bundle / "samples", "--headless", "--loop",
                   "--max-frames", 2 * n + 3, "--threads", 1) == 0
    records = json_lines(capsys.readouterr().out)
    assert [r["frame"] for r in records] == list(range(2 * n + 3))
    assert [r["name"] for r in records] == (samples * 3)[: 2 * n + 3]
    rc = run_cli("run", digits_bundle, "--source", "http://127.0.0.1:9/x.avi", "--headless", "--loop")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--loop" in err[0] and "live" in err[0], err


def test_large_frames_shrink_before_the_colour_swap_with_identical_results():
    from edgecnn.preprocess import _convert_color, preprocess, resize

    spec = {"height": 224, "width": 224, "channels": 3, "color": "RGB", "resize": "stretch", "interpolation": "area",
            "scale": 1 / 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    cap = cv2.VideoCapture(str(VTEST))
    ok, frame = cap.read()
    cap.release()
    for size in ((640, 480), (1280, 720)):
        big = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
        for s in (spec, {**spec, "resize": "center_crop"}, {**spec, "interpolation": "linear"}):
            arr = resize(_convert_color(big, "BGR", "RGB"), 224, 224, s["resize"], s["interpolation"])
            x = (arr.astype(np.float32) * np.float32(s["scale"])).transpose(2, 0, 1)
            expected = (x - np.float32(s["mean"])[:, None, None]) / np.float32(s["std"])[:, None, None]
            np.testing.assert_array_equal(preprocess(big, s), expected)


# -- item 2: --save onto a full disk ----------------------------------------------------------------


def test_save_onto_a_full_disk_fails_with_one_line_and_leaves_no_file(digits_bundle, tiny_fs, capsys):
    full = tiny_fs("1m")  # under VideoSink.min_free_bytes: refused before a frame is written
    rc = run_cli("run", digits_bundle, "--source", VTEST, "--save", full / "out.mp4", "--max-frames", 50,
                 "--threads", 1)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("edgecnn: error: --save") and "No space left on device" in err[-1], err
    assert list(full.iterdir()) == []


def test_save_checks_the_finished_file_when_the_writer_fails_silently(digits_bundle, tiny_fs, capsys, monkeypatch):
    """With the free-space guard off, FFmpeg fills the disk and drops data without a word: the check
    at close (the file must reopen with every frame) catches it, and no file is left."""
    from edgecnn.runtime.sinks import VideoSink

    full = tiny_fs("1m")
    monkeypatch.setattr(VideoSink, "min_free_bytes", 0)
    rc = run_cli("run", digits_bundle, "--source", VTEST, "--save", full / "out.mp4", "--max-frames", 150,
                 "--threads", 1)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("edgecnn: error: --save") and "no video saved" in err[-1], err
    assert "saved" not in " ".join(err[:-1])
    assert list(full.iterdir()) == []


def test_save_cleans_partial_videos_of_killed_runs(digits_bundle, tmp_path, capsys):
    dead = tmp_path / ".clip.partial-999999999.mp4"  # no such pid
    dead.write_bytes(b"half a video")
    live = tmp_path / f".clip.partial-{os.getppid()}.mp4"  # a running process: left alone
    live.write_bytes(b"another run's video")
    assert run_cli("run", digits_bundle, "--source", VTEST, "--save", tmp_path / "clip.mp4", "--max-frames", 5,
                   "--threads", 1) == 0
    err = capsys.readouterr().err
    assert not dead.exists() and live.exists() and "999999999" in err and "removed" in err
    cap = cv2.VideoCapture(str(tmp_path / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5


# -- item 3: export and training onto a full disk, stale staging -----------------------------------


def test_export_onto_a_full_disk_names_the_path_and_leaves_nothing(digits_ckpt, tiny_fs, capsys):
    full = tiny_fs("100k")  # room for the ONNX step's start, not for a bundle
    rc = run_cli("export", digits_ckpt, "--formats", "tflite", "--out", full / "b")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert err[-1].startswith("edgecnn: error: No space left on device: ") and str(full / "b") in err[-1], err
    assert list(full.iterdir()) == []  # no .b.staging.* left behind


def test_checkpoint_save_onto_a_full_disk_names_the_path(digits_ckpt, tiny_fs):
    from edgecnn.train.checkpoint import read_checkpoint, save_checkpoint

    full = tiny_fs("64k")
    with pytest.raises(OSError) as e:
        save_checkpoint(read_checkpoint(digits_ckpt), full / "last.pt")
    assert e.value.errno == 28 and e.value.filename == str(full / "last.pt")
    assert list(full.iterdir()) == []


def test_stale_staging_and_temp_files_of_killed_runs_are_cleaned_or_reported(tmp_path, capsys):
    from edgecnn.utils import atomic_write_bytes, staged_directory

    dead_stage = tmp_path / ".b.staging.999999999.abcd1234"
    dead_stage.mkdir()
    (dead_stage / "model.onnx").write_bytes(b"half")
    old_format = tmp_path / ".b.staging.k2j3h4g5"  # an older edgecnn: no pid, so only reported
    old_format.mkdir()
    running = tmp_path / f".b.staging.{os.getppid()}.zzzz9999"  # a live process's: left alone
    running.mkdir()
    dead_tmp = tmp_path / ".last.pt.999999999.q1w2e3r4.tmp"
    dead_tmp.write_bytes(b"half a checkpoint")
    with staged_directory(tmp_path / "b") as stage:
        (stage / "manifest.json").write_text("{}")
    atomic_write_bytes(tmp_path / "last.pt", b"complete")
    err = capsys.readouterr().err
    assert not dead_stage.exists() and not dead_tmp.exists()
    assert old_format.exists() and running.exists()
    assert f"removed {dead_stage}" in err and f"removed {dead_tmp}" in err and f"{old_format}: " in err
    assert (tmp_path / "b" / "manifest.json").exists() and (tmp_path / "last.pt").read_bytes() == b"complete"


# -- item 10: stalled streams, truncated files, FPS without retries ---------------------------------


def test_stalled_stream_is_detected_within_the_reconnect_timeout(digits_bundle):
    """An HTTP stream that stops sending (socket open, no data) is reopened after --reconnect-timeout
    (not FFmpeg's 30 s); when the server is gone the run ends with one line. The FPS leaves the outage out."""
    data = VTEST.read_bytes()[:1_500_000]
    release = threading.Event()
    gets: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):  # noqa: N802
            gets.append(time.monotonic())
            if len(gets) > 2:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "video/x-msvideo")
            self.send_header("Content-Length", str(len(data) * (2 if len(gets) == 1 else 1)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            if len(gets) == 1:
                release.wait(60)  # the stall: connection open, half the announced bytes sent

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    report = Path(os.environ.get("TMPDIR", "/tmp")) / f"edgecnn-stall-{os.getpid()}.json"
    url = f"http://127.0.0.1:{server.server_address[1]}/live.avi"
    t0 = time.monotonic()
    try:
        r = subprocess.run([sys.executable, "-m", "edgecnn", "run", str(digits_bundle), "--source", url, "--headless",
                            "--threads", "1", "--reconnect-timeout", "2", "--report", str(report)],
                           capture_output=True, text=True, env=env(), timeout=90)
        wall = time.monotonic() - t0
        summary = json.loads(report.read_text())
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        report.unlink(missing_ok=True)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and err[-1].startswith("edgecnn: error:") and "not back after 2 s" in err[-1], r.stderr
    assert "Traceback" not in r.stderr
    assert len(gets) >= 3 and "no data for" in r.stderr and summary["reconnects"] == 1
    assert wall < 30, wall  # FFmpeg's own read timeout alone would be 30 s
    # the stall (up to 2 s: it may begin while the model still loads, before the run's clock) + the final
    # 2 s of retries; frames flowed for part of the run, so the FPS without outages is above the wall FPS
    assert 2.0 <= summary["retry_seconds"] < min(15, summary["seconds"]), summary
    assert summary["fps"] > summary["fps_wall"] and summary["fps_wall"] == pytest.approx(
        summary["frames"] / summary["seconds"])
    # A live stream runs in fresh mode: frames the model was too busy for are dropped (and counted).
    assert len(json_lines(r.stdout)) == summary["frames"] and summary["frames"] + summary["dropped"] > 100


def test_truncated_video_says_how_many_frames_and_exits_non_zero(digits_bundle, tmp_path, capsys):
    cut = tmp_path / "cut.avi"
    cut.write_bytes(VTEST.read_bytes()[:3_000_000])  # the container still announces 795 frames
    rc = run_cli("run", digits_bundle, "--source", cut, "--headless", "--threads", 1)
    out = capsys.readouterr()
    records = json_lines(out.out)
    err = out.err.strip().splitlines()
    assert rc == 2 and 100 < len(records) < VTEST_FRAMES
    assert err[-1] == (f"edgecnn: error: video {cut}: ended after {len(records)} of the {VTEST_FRAMES} frames it "
                       "announces (a truncated or damaged file)")
    assert any(f"{len(records)} frames in" in line for line in err)  # the summary came first
    # the complete file is fine
    assert run_cli("run", digits_bundle, "--source", VTEST, "--headless", "--threads", 1, "--max-frames", 3) == 0


def test_bad_reconnect_timeout_is_one_line(digits_bundle, capsys):
    rc = run_cli("run", digits_bundle, "--source", VTEST, "--headless", "--reconnect-timeout=-1")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--reconnect-timeout" in err[0] and "0 (retry forever)" in err[0]

