"""The streaming runtime of series bundles: sources (csv:, wav:, serial:// through a pseudo-terminal, mic://),
sliding windows, and the smoothing of results, on the BasicMotions recordings shipped in aeon's wheel."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgecnn.errors import EdgeCNNError
from edgecnn.runtime.series_sources import SeriesSource, SlidingWindows, is_series_uri, open_series_source
from edgecnn.runtime.smoothing import ResultSmoother

CHANNELS = ("acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z")


def basicmotions_dir() -> Path:
    aeon = pytest.importorskip("aeon", reason="the BasicMotions files ship in aeon's wheel (dev extra)")
    return Path(aeon.__file__).parent / "datasets" / "data" / "BasicMotions"


@pytest.fixture(scope="module")
def recordings() -> tuple[np.ndarray, np.ndarray]:
    """The 40 BasicMotions test recordings (40, 6, 100) and their labels, read by aeon's .ts reader."""
    from aeon.datasets import load_from_ts_file

    x, y = load_from_ts_file(str(basicmotions_dir() / "BasicMotions_TEST.ts"))
    return np.asarray(x, np.float64), np.asarray(y)


@pytest.fixture(scope="module")
def stream_csv(recordings, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """The test recordings one after another (a fixed shuffle) as one CSV stream with a header row."""
    x, _ = recordings
    order = np.random.default_rng(0).permutation(len(x))
    samples = np.concatenate([x[i].T for i in order])  # (4000, 6): samples x channels
    path = tmp_path_factory.mktemp("series") / "basicmotions.csv"
    np.savetxt(path, samples, delimiter=",", header=",".join(CHANNELS), comments="", fmt="%.6f")
    return path, np.loadtxt(path, delimiter=",", skiprows=1)


def test_series_uris_are_told_from_image_sources():
    assert all(is_series_uri(u) for u in ("csv:a.csv", "wav:x.wav", "serial:///dev/ttyUSB0", "mic://", "CSV:a"))
    assert not any(is_series_uri(u) for u in ("0", "video.mp4", "rtsp://cam", "images/", "/dev/video0"))


def test_csv_stream_gives_every_window_in_order(stream_csv):
    path, samples = stream_csv
    src = SeriesSource(f"csv:{path}", 6, 100, 10)
    windows = list(src)
    assert len(windows) == (len(samples) - 100) // 10 + 1 == 391
    assert [w.index for w in windows] == list(range(391)) and src.dropped == 0
    for w in windows[::37] + windows[-1:]:
        assert (w.start, w.end) == (10 * w.index, 10 * w.index + 100)
        np.testing.assert_allclose(w.samples, samples[w.start : w.end], rtol=0, atol=1e-6)
    assert all(w.captured > 1e9 for w in windows)  # wall-clock epoch seconds


def test_csv_columns_pick_channels_by_name_or_index(stream_csv):
    path, samples = stream_csv
    by_name = list(SeriesSource(f"csv:{path}?columns=gyr_z,acc_x", 2, 100, 50))
    by_index = list(SeriesSource(f"csv:{path}?columns=5,0", 2, 100, 50))
    np.testing.assert_allclose(by_name[3].samples, samples[150:250][:, [5, 0]], atol=1e-6)
    np.testing.assert_array_equal(by_name[3].samples, by_index[3].samples)


def test_csv_with_a_missing_column_or_a_bad_value_is_one_line(stream_csv, tmp_path):
    path, _ = stream_csv
    lines = path.read_text().splitlines()
    short = tmp_path / "short.csv"
    short.write_text("\n".join(lines[:50] + [lines[50].rsplit(",", 1)[0]] + lines[51:]) + "\n")
    src = SeriesSource(f"csv:{short}", 6, 100, 10)
    with pytest.raises(EdgeCNNError, match=r"short\.csv line 51: 5 values, expected 6 \(a missing column\?\)"):
        list(src)
    narrow = tmp_path / "narrow.csv"
    narrow.write_text("\n".join(ln.rsplit(",", 1)[0] for ln in lines) + "\n")
    with pytest.raises(EdgeCNNError, match="5 columns, the bundle takes 6 channels"):
        SeriesSource(f"csv:{narrow}", 6, 100, 10)
    with pytest.raises(EdgeCNNError, match="no column 'mag_x'"):
        SeriesSource(f"csv:{path}?columns=mag_x,acc_x", 2, 100, 10)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines[:30] + ["1,2,3,oops,5,6"] + lines[31:]) + "\n")
    with pytest.raises(EdgeCNNError, match=r"line 31: 'oops' in column 4 is not a number"):
        list(SeriesSource(f"csv:{bad}", 6, 100, 10))


def test_a_series_source_refuses_image_sources_and_unknown_options(stream_csv):
    spec = {"channels": 6, "length": 100, "sample_rate": None}
    with pytest.raises(EdgeCNNError, match=r"takes series windows \(6 channels x 100 samples\): --source must be"):
        open_series_source("video.mp4", spec)
    path, _ = stream_csv
    with pytest.raises(EdgeCNNError, match="unknown option 'rate'"):
        open_series_source(f"csv:{path}?rate=10", spec)
    with pytest.raises(EdgeCNNError, match="--hop must be at least 1"):
        open_series_source(f"csv:{path}", spec, hop=0)
    with pytest.raises(EdgeCNNError, match="--realtime plays a file at its sample rate, and the bundle records none"):
        open_series_source(f"csv:{path}", spec, realtime=True)
    assert open_series_source(f"csv:{path}", spec).windows.hop == 25  # default: a quarter window


def test_live_windows_keep_the_newest_and_count_the_skipped(stream_csv):
    _, samples = stream_csv
    sw = SlidingWindows(100, 10, 6, newest_only=True)
    sw.push(samples[:95], 1.0, 1.0)
    assert sw.newest() == (None, 0)
    sw.push(samples[95:160], 2.0, 2.0)  # windows 0..6 complete at once: only the newest is handed over
    w, skipped = sw.newest()
    assert (w.index, w.start, skipped, w.captured) == (6, 60, 6, 2.0)
    np.testing.assert_array_equal(w.samples, samples[60:160].astype(np.float32))
    sw.push(samples[160:4000], 3.0, 3.0)
    assert len(sw._buf) <= 100 + 10  # bounded, however far the consumer is behind
    w, skipped = sw.newest()
    assert (w.index, skipped) == (390, 383)
    np.testing.assert_array_equal(w.samples, samples[3900:4000].astype(np.float32))
    sw.gap()  # a reconnect: no window spans the hole
    sw.push(samples[:99], 4.0, 4.0)
    assert sw.newest() == (None, 0)
    sw.push(samples[99:100], 5.0, 5.0)
    w, _ = sw.newest()
    assert w.after_gap and w.start == 4000 and w.index == 400
    np.testing.assert_array_equal(w.samples, samples[:100].astype(np.float32))


def test_realtime_file_is_paced_at_its_sample_rate(stream_csv):
    path, samples = stream_csv
    src = open_series_source(f"csv:{path}", {"channels": 6, "length": 100, "sample_rate": 4000.0}, hop=100,
                             realtime=True)
    t0 = time.perf_counter()
    windows = list(src)
    took = time.perf_counter() - t0
    assert 0.9 <= took < 5  # 4000 samples at 4000 Hz: about one second
    assert len(windows) + src.dropped == 40
    for w in windows:
        np.testing.assert_allclose(w.samples, samples[w.start : w.end], atol=1e-6)


def test_serial_source_reads_a_recording_through_a_pseudo_terminal(stream_csv):
    _, samples = stream_csv
    rec = samples[:600]
    master, slave = os.openpty()
    port = os.ttyname(slave)

    def send(data: bytes) -> None:
        while data:  # a pty takes what fits in its buffer: write the rest when there is room
            data = data[os.write(master, data):]

    def device() -> None:  # a sensor board printing one sample a line, 100 lines at a time
        send(b"3,0.25\r\n")  # the tail of a line sent before the port was opened
        for i in range(0, len(rec), 100):
            send("".join(",".join(f"{v:.6f}" for v in row) + "\r\n" for row in rec[i : i + 100]).encode())
            time.sleep(0.05)

    src = open_series_source(f"serial://{port}?baud=115200", {"channels": 6, "length": 100, "sample_rate": 10.0},
                             hop=20)
    writer = threading.Thread(target=device)
    writer.start()
    got = []
    try:
        while not got or got[-1].end < len(rec):
            got.append(src.read())
    finally:
        writer.join()
        src.close()
        os.close(master)
        os.close(slave)
    assert src.live and got[-1].end == 600 and got[-1].index == 25
    assert len(got) + src.dropped == 26  # every window delivered or counted as skipped
    for w in got:
        np.testing.assert_allclose(w.samples, rec[w.start : w.end], atol=1e-6)
    assert src.reader.skipped == 0  # the first line (maybe a partial one) is dropped quietly


def test_serial_port_that_does_not_exist_is_one_line():
    with pytest.raises(EdgeCNNError, match="cannot open serial port /dev/ttyNOPE0"):
        SeriesSource("serial:///dev/ttyNOPE0?baud=9600", 6, 100, 10)
    with pytest.raises(EdgeCNNError, match="baud must be a positive integer"):
        SeriesSource("serial:///dev/ttyUSB0?baud=fast", 6, 100, 10)


def test_microphone_without_an_input_device_is_one_line():
    # No audio hardware here (and in CI): sounddevice's PortAudio finds no input. With a microphone
    # this opens it instead, which the test cannot tell apart, so it only runs without one.
    try:
        import sounddevice

        has_input = any(d["max_input_channels"] > 0 for d in sounddevice.query_devices())
    except (ImportError, OSError):
        has_input = False
    if has_input:
        pytest.skip("this machine has a microphone")
    with pytest.raises(EdgeCNNError) as e:
        SeriesSource("mic://", 1, 16000, 4000, sample_rate=16000.0)
    assert "\n" not in str(e.value) and "mic://" in str(e.value)


def test_wav_at_another_sample_rate_needs_resample(tmp_path, recordings):
    import soundfile as sf
    x, _ = recordings
    # A real signal as audio: the accelerometer's x axis of all recordings, scaled into [-1, 1].
    audio = np.concatenate([r[0] for r in x])
    audio = (audio / np.abs(audio).max()).astype(np.float32)
    path = tmp_path / "motion-8k.wav"
    sf.write(path, audio, 8000, subtype="PCM_16")
    spec = {"channels": 1, "length": 800, "sample_rate": 16000.0}
    with pytest.raises(EdgeCNNError, match=r"8000 Hz, the bundle takes 16000 Hz \(pass --resample"):
        open_series_source(f"wav:{path}", spec)
    windows = list(open_series_source(f"wav:{path}", spec, hop=800, resample=True))
    assert len(windows) == 2 * len(audio) // 800  # twice the samples at twice the rate
    # the resampled stream keeps the signal: every other sample is (nearly) an original one
    back = np.concatenate([w.samples[::2, 0] for w in windows])
    assert np.corrcoef(back[100:-100], audio[100 : len(back) - 100])[0, 1] > 0.99
    same = list(open_series_source(f"wav:{path}", {**spec, "sample_rate": 8000.0}, hop=800))
    np.testing.assert_allclose(np.concatenate([w.samples[:, 0] for w in same]), audio[: 800 * len(same)],
                               atol=1 / 32767)


def test_smoothing_follows_tflm_recognize_commands():
    sm = ResultSmoother(["rest", "walk", "run"], average=3, threshold=0.6, suppression=100)
    walk, run, unsure = [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.34, 0.33, 0.33]
    out = [sm.update(walk, 100), sm.update(walk, 110)]
    assert [o.label for o in out] == [None, None] and not any(o.detected for o in out)  # fewer than 3 results
    o = sm.update(walk, 120)
    assert (o.label, o.count, o.detected) == ("walk", 3, True) and o.prob == pytest.approx(0.8)
    assert not sm.update(walk, 130).detected  # same label within the suppression time
    o = sm.update(run, 140)  # mean of walk, walk, run: still walk
    assert o.label == "walk" and not o.detected
    o = sm.update(run, 150)  # walk, run, run: run leads, at (0.1 + 0.8 + 0.8) / 3 < the threshold
    assert o.label == "run" and o.prob == pytest.approx((0.1 + 0.8 + 0.8) / 3) and not o.detected
    o = sm.update(run, 160)
    assert o.label == "run" and o.detected  # a new label: no suppression
    assert not sm.update(run, 250).detected  # 90 samples later: suppressed
    assert sm.update(run, 261).detected  # more than 100 samples after the last report
    o = sm.update(unsure, 270)
    assert o.label == "run" and not o.detected
    assert sm.detections == 3
    with pytest.raises(EdgeCNNError, match="stream order"):
        sm.update(run, 10)
    with pytest.raises(EdgeCNNError, match="--threshold must be in"):
        ResultSmoother(["a"], threshold=1.5)
    with pytest.raises(EdgeCNNError, match="--average must be at least 1"):
        ResultSmoother(["a"], average=0)
