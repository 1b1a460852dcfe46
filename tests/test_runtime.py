"""Runtime area: Classifier, backends, sources, sinks and `edgecnn run` on real data.

Data: the shared `digits_bundle` (LeNet-5 trained on the embedded digits, exported to ONNX + TFLite,
fp32 + int8, with real held-out sample PNGs), the digits test split, OpenCV's vtest.avi (795 real
frames), and a video written from held-out digit images.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecnn.bundle import Bundle
from edgecnn.cli import main
from edgecnn.errors import EdgeCNNError

REPO = Path(__file__).resolve().parents[1]
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
VTEST_FRAMES = 795

# A bootstrap that makes every host-side library unimportable, as on a device without torch.
BLOCK_HOST_LIBS = r"""
import importlib.abc, sys
BLOCKED = {"torch", "torchvision", "torchao", "torch_pruning", "litert_torch", "onnx", "onnxscript", "onnxslim"}
class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by this test)", name=name)
        return None
sys.meta_path.insert(0, _Blocker())
"""


def run_cli(*args, capsys=None) -> int:
    return main([str(a) for a in args])


def sample_files(bundle: Path) -> list[tuple[Path, str]]:
    manifest = json.loads((bundle / "manifest.json").read_text())
    return [(bundle / s["file"], s["label"]) for s in manifest["samples"]]


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def subprocess_env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("EDGECNN_DEBUG", None)
    return env


# -- Classifier: outputs equal the bundle's verification ------------------------------------------


@pytest.mark.parametrize("backend,precision", [("onnxruntime", "fp32"), ("onnxruntime", "int8"),
                                               ("litert", "fp32"), ("litert", "int8")])
def test_runtime_equals_bundle_verification(digits_bundle, backend, precision):
    """Same preprocessing, same logits, and the same accuracy as the manifest's verified record."""
    from edgecnn.data import load_dataset, preprocessed
    from edgecnn.export.verify import artifact_logits
    from edgecnn.runtime import Classifier

    clf = Classifier(digits_bundle, backend=backend, precision=precision, threads=1, top_k=3)
    art = clf.selection.artifact
    assert (art.format, art.precision) == ({"onnxruntime": "onnx", "litert": "tflite"}[backend], precision)
    ds = load_dataset("digits")
    images, labels = ds.split("test")
    verified = art.info["verified"]
    n = verified["samples"]
    assert n == len(labels)  # the export verified on the whole digits test split, in order
    x_verify, y = preprocessed(ds, "test", clf.input_spec, n)
    # Preprocessing: the runtime's, applied to the raw uint8 images, is the verification's input.
    x_runtime = np.stack([clf.preprocess(im, color_order="RGB") for im in images[:n]])
    np.testing.assert_array_equal(x_runtime, x_verify)
    logits = clf.infer_preprocessed(x_runtime)
    np.testing.assert_allclose(logits, artifact_logits(art, x_verify), rtol=0, atol=1e-5)
    results = clf.predict_batch(list(images[:n]), color_order="RGB")
    acc = np.mean([r.index == label for r, label in zip(results, y)])
    assert acc == pytest.approx(verified["accuracy"], abs=1e-9)
    assert acc > 0.9  # a trained model on real digits, not chance
    r = results[0]
    assert len(r.top) == 3 and r.top[0][1] >= r.top[1][1] >= r.top[2][1]
    assert abs(float(r.probs.sum()) - 1) < 1e-4
    assert set(r.timings) == {"preprocess", "inference", "postprocess"} and all(v > 0 for v in r.timings.values())


def test_predict_accepts_what_users_have(digits_bundle):
    """BGR frames, RGB arrays, greyscale, BGRA, PIL images and paths of any size: same answer."""
    from PIL import Image

    from edgecnn.runtime import Classifier

    clf = Classifier(digits_bundle, backend="onnxruntime", precision="fp32", threads=1)
    for path, _ in sample_files(digits_bundle)[::4]:
        grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        big = cv2.resize(grey, (97, 131), interpolation=cv2.INTER_NEAREST)  # odd size, not square
        bgr = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
        expected = clf.predict(grey)
        assert clf.predict(path).top == expected.top
        assert clf.predict(str(path)).top == expected.top
        assert clf.predict(bgr).label == expected.label
        assert clf.predict(bgr[:, :, ::-1].copy(), color_order="RGB").label == expected.label
        assert clf.predict(cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)).label == expected.label
        assert clf.predict(Image.fromarray(grey)).top == expected.top
        assert clf.predict(big).probs.shape == (10,)
    results = clf.predict_batch([p for p, _ in sample_files(digits_bundle)])
    acc = np.mean([r.label == lab for r, (_, lab) in zip(results, sample_files(digits_bundle))])
    assert acc >= 0.85


def test_image_of_wrong_shape_is_one_clear_error(digits_bundle, tmp_path, capsys):
    from edgecnn.runtime import Classifier

    clf = Classifier(digits_bundle, backend="onnxruntime", threads=1)
    with pytest.raises(EdgeCNNError, match="HxW, HxWx3 or HxWx4"):
        clf.predict(np.zeros((20, 20, 2), np.uint8))
    with pytest.raises(EdgeCNNError, match="model input must be"):
        clf.infer_preprocessed(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(EdgeCNNError, match="got shape"):
        clf.predict(np.zeros((4, 20, 20, 3), np.uint8))  # a batch passed as one image
    # Image files always decode to a valid shape; a file that is no image is the CLI's case.
    not_image = tmp_path / "digit.png"
    not_image.write_text("not an image\n")
    assert run_cli("classify", digits_bundle, not_image) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgecnn: error: cannot read image"), err


def test_auto_selection_follows_the_documented_rule(digits_bundle):
    """x86 here: onnxruntime; int8 chosen because the bundle verified it within 1 point of fp32."""
    import platform

    from edgecnn.runtime.backends import available_backends, select

    present = available_backends()
    assert present["onnxruntime"] and present["litert"]
    sel = select(Bundle.load(digits_bundle))
    if platform.machine() in ("x86_64", "AMD64"):
        assert sel.backend == "onnxruntime"
    b = Bundle.load(digits_bundle)
    v8, v32 = b.find("onnx", "int8")[0].info["verified"], b.find("onnx", "fp32")[0].info["verified"]
    favoured = 100 * (v32["accuracy"] - v8["accuracy"]) <= 1.0
    assert sel.precision == ("int8" if favoured else "fp32")
    with pytest.raises(EdgeCNNError, match="tensorrt"):
        select(b, "tensorrt")
    with pytest.raises(EdgeCNNError, match="no fp16 model"):
        select(b, "onnxruntime", "fp16")


# -- edgecnn run: sources and sinks ---------------------------------------------------------------


def test_run_video_file_headless_in_order(digits_bundle, capsys, tmp_path):
    report = tmp_path / "summary.json"
    rc = run_cli("run", digits_bundle, "--source", VTEST, "--headless", "--max-frames", 25, "--threads", 1,
                 "--top-k", 3, "--report", report)
    assert rc == 0
    out = capsys.readouterr()
    records = json_lines(out.out)
    assert [r["frame"] for r in records] == list(range(25))  # a file: every frame, in order
    for r in records:
        probs = [t["prob"] for t in r["top"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1.0001
        assert set(r["ms"]) == {"capture", "preprocess", "inference", "postprocess"}
        assert r["ms"]["inference"] > 0
    summary = json.loads(report.read_text())
    assert summary["frames"] == 25 and summary["fps"] > 0
    assert set(summary["stages"]) == {"capture", "preprocess", "inference", "postprocess", "render", "total"}
    assert "25 frames in" in out.err and "p99" in out.err


def test_run_whole_video_reaches_end_of_stream(digits_bundle, capsys):
    assert run_cli("run", digits_bundle, "--source", VTEST, "--headless", "--backend", "litert", "--threads", 1) == 0
    records = json_lines(capsys.readouterr().out)
    assert len(records) == VTEST_FRAMES and records[-1]["frame"] == VTEST_FRAMES - 1


@pytest.fixture(scope="module")
def digit_video(tmp_path_factory) -> tuple[Path, list[str]]:
    """A real video of 100 held-out digit images (2 frames each) with the true label of every frame."""
    from edgecnn.data import load_dataset
    from edgecnn.data.video import write_digit_video

    path = tmp_path_factory.mktemp("video") / "digits.mp4"
    sidecar = write_digit_video(load_dataset("digits"), path, count=100, frames_per_image=2, seed=1)
    return path, sidecar["labels"]


@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
def test_run_digit_video_matches_truth_at_bundle_accuracy(digits_bundle, digit_video, capsys, backend):
    path, truth = digit_video
    assert run_cli("run", digits_bundle, "--source", path, "--headless", "--backend", backend, "--threads", 1) == 0
    records = json_lines(capsys.readouterr().out)
    assert len(records) == len(truth)
    acc = np.mean([r["top"][0]["label"] == t for r, t in zip(records, truth)])
    sel_art = [a for a in Bundle.load(digits_bundle).artifacts
               if a.format == {"onnxruntime": "onnx", "litert": "tflite"}[backend] and a.precision == "int8"][0]
    # 100 images: allow ~3 standard errors below the bundle's verified test accuracy.
    assert acc >= sel_art.info["verified"]["accuracy"] - 0.05, acc


def test_run_folder_source_matches_classify(digits_bundle, capsys):
    samples = digits_bundle / "samples"
    assert run_cli("run", digits_bundle, "--source", samples, "--headless", "--backend", "litert",
                   "--precision", "fp32", "--top-k", 1) == 0
    records = json_lines(capsys.readouterr().out)
    files = sample_files(digits_bundle)
    assert sorted(r["name"] for r in records) == sorted(p.name for p, _ in files)
    by_name = {r["name"]: r["top"][0]["label"] for r in records}
    assert run_cli("classify", digits_bundle, *[p for p, _ in files], "--backend", "litert", "--precision", "fp32",
                   "--json", "--top-k", 1) == 0
    classified = json_lines(capsys.readouterr().out)
    assert {Path(c["file"]).name: c["top"][0]["label"] for c in classified} == by_name
    acc = np.mean([by_name[p.name] == label for p, label in files])
    assert acc >= 0.85


def test_run_save_writes_a_readable_video(digits_bundle, tmp_path, capsys):
    out = tmp_path / "annotated.mp4"
    rc = run_cli("run", digits_bundle, "--source", VTEST, "--save", out, "--max-frames", 12, "--threads", 1,
                 "--roi", "200,100,300,300", "--center-crop", "--smooth", "0.5")
    assert rc == 0
    cap = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 12 and frames[0].shape == (576, 768, 3)
    source = cv2.VideoCapture(str(VTEST))
    ok, first = source.read()
    # The overlay changed the frame (labels, bars, ROI box) but it is still the source's picture.
    diff = np.abs(frames[0].astype(int) - first.astype(int)).mean(axis=2)
    assert (diff > 40).mean() > 0.002 and np.median(diff) < 10
    assert not list(tmp_path.glob(".*partial*"))  # the temp file was renamed into place


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_serve_returns_jpeg_and_ctrl_c_finishes_cleanly(digits_bundle):
    port = _free_port()
    args = ["run", str(digits_bundle), "--source", str(VTEST), "--realtime", "--serve", f"127.0.0.1:{port}",
            "--threads", "1", "--max-frames", "600"]
    # As on a device: host libraries blocked (also keeps the start fast).
    code = BLOCK_HOST_LIBS + f"from edgecnn.cli import main; sys.exit(main({args!r}))"
    cmd = [sys.executable, "-X", "faulthandler", "-c", code]
    # SIGINT at its default in the child: a suite started in the background (nohup ... &) ignores
    # SIGINT, the child would inherit that, and Python then installs no KeyboardInterrupt handler.
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=subprocess_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        jpeg, deadline = None, time.monotonic() + 60
        while jpeg is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with no_proxy.open(f"http://127.0.0.1:{port}/frame.jpg", timeout=5) as resp:
                    assert resp.headers["Content-Type"] == "image/jpeg"
                    jpeg = resp.read()
            except OSError:
                time.sleep(0.3)
        assert jpeg is not None, proc.stderr.read() if proc.poll() is not None else "no frame in 60 s"
        assert jpeg[:2] == b"\xff\xd8"
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (576, 768, 3)
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler (-X faulthandler) prints every thread's stack
            pytest.fail(f"no exit 30 s after Ctrl-C; thread stacks:\n{proc.communicate()[1][-6000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "(interrupted)" in err and "p50" in err and "Traceback" not in err


# -- torch absent ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
def test_runtime_and_run_work_without_torch(digits_bundle, backend):
    code = BLOCK_HOST_LIBS + f"""
import json, sys
import edgecnn.runtime
from edgecnn.runtime import Classifier
clf = Classifier({str(digits_bundle)!r}, backend={backend!r}, threads=1)
manifest = json.load(open({str(digits_bundle / "manifest.json")!r}))
hits = [clf.predict({str(digits_bundle)!r} + "/" + s["file"]).label == s["label"] for s in manifest["samples"]]
from edgecnn.cli import main
rc = main(["run", {str(digits_bundle)!r}, "--source", {str(VTEST)!r}, "--headless", "--max-frames", "5",
           "--backend", {backend!r}, "--threads", "1"])
host = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(json.dumps({{"rc": rc, "accuracy": sum(hits) / len(hits), "host_modules": host,
                  "backend": clf.describe()["backend"]}}))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(),
                         timeout=120)
    assert res.returncode == 0, res.stderr
    lines = json_lines(res.stdout)
    frames, result = lines[:-1], lines[-1]
    assert result["rc"] == 0 and result["host_modules"] == [] and result["backend"] == backend
    assert result["accuracy"] >= 0.85
    assert [f["frame"] for f in frames] == [0, 1, 2, 3, 4]


def test_device_commands_never_load_torch_even_where_installed(digits_bundle):
    """On a Jetson torch may be installed too: `edgecnn info`/`classify` must still start without it."""
    sample = sample_files(digits_bundle)[0][0]
    code = f"""
import json, sys
from edgecnn.cli import main
rcs = [main(["info"]), main(["classify", {str(digits_bundle)!r}, {str(sample)!r}, "--json"])]
print(json.dumps({{"rcs": rcs, "torch": "torch" in sys.modules}}))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(),
                         timeout=120)
    assert res.returncode == 0, res.stderr
    result = json_lines(res.stdout)[-1]
    assert result == {"rcs": [0, 0], "torch": False}


# -- bad input: one line, exit 2 -------------------------------------------------------------------


def _one_line_error(capsys, *args) -> str:
    rc = run_cli(*args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("edgecnn: error: "), err
    return err[0]


def test_bad_bundles(digits_bundle, tmp_path, capsys):
    import shutil

    assert "bundle not found" in _one_line_error(capsys, "run", tmp_path / "nope", "--source", VTEST, "--headless")
    broken = tmp_path / "broken"
    shutil.copytree(digits_bundle, broken)
    (broken / "manifest.json").write_text('{"schema": "edgecnn.bundle/1", "name": ')
    assert "not valid JSON" in _one_line_error(capsys, "run", broken, "--source", VTEST, "--headless")
    manifest = json.loads((digits_bundle / "manifest.json").read_text())
    (broken / "manifest.json").write_text(json.dumps({**manifest, "schema": "edgecnn.bundle/99"}))
    assert "schema must be" in _one_line_error(capsys, "classify", broken, VTEST)
    bad_layout = {**manifest, "artifacts": [{**manifest["artifacts"][0], "layout": "CHW"}]}
    (broken / "manifest.json").write_text(json.dumps(bad_layout))
    assert "layout must be one of" in _one_line_error(capsys, "run", broken, "--source", VTEST)
    # A model file damaged after export: caught by its sha256 before it can answer wrongly.
    (broken / "manifest.json").write_text(json.dumps(manifest))
    model = broken / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    assert "sha256" in _one_line_error(capsys, "run", broken, "--source", VTEST, "--headless",
                                       "--backend", "onnxruntime", "--precision", "fp32")
    # Truncated to garbage and the manifest updated to match: the backend's own load error, one line.
    (broken / "model.tflite").write_bytes(b"not a flatbuffer" * 8)
    tampered = json.loads(json.dumps(manifest))
    for a in tampered["artifacts"]:
        if a["file"] == "model.tflite":
            from edgecnn.utils import sha256_file

            a["sha256"], a["size_bytes"] = sha256_file(broken / "model.tflite"), 128
    (broken / "manifest.json").write_text(json.dumps(tampered))
    assert "cannot load" in _one_line_error(capsys, "classify", broken, sample_files(digits_bundle)[0][0],
                                            "--backend", "litert", "--precision", "fp32")


def test_bad_sources(digits_bundle, tmp_path, capsys):
    for src, dev in (("7", "/dev/video7"), ("/dev/video9", "/dev/video9")):
        # a camera may appear later (USB at boot): retried like any live source, then one error line
        rc = run_cli("run", digits_bundle, "--source", src, "--headless", "--reconnect-timeout", "0.5")
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and err[-1].startswith(f"edgecnn: error: camera {dev} not found"), err
        assert "not up after 0.5 s of retries" in err[-1] and "Traceback" not in "\n".join(err)
    fake = tmp_path / "clip.mp4"
    fake.write_bytes(b"this is not a video\n" * 100)
    assert "cannot" in _one_line_error(capsys, "run", digits_bundle, "--source", fake, "--headless")
    assert "source not found" in _one_line_error(capsys, "run", digits_bundle, "--source", tmp_path / "gone.mp4")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no image files" in _one_line_error(capsys, "run", digits_bundle, "--source", empty)
    assert "GStreamer" in _one_line_error(capsys, "run", digits_bundle, "--source", "csi://0")
    assert "--roi" in _one_line_error(capsys, "run", digits_bundle, "--source", VTEST, "--roi", "1,2,3")
    assert "outside" in _one_line_error(capsys, "run", digits_bundle, "--source", VTEST, "--headless",
                                        "--roi", "5000,0,10,10")
    assert "--smooth" in _one_line_error(capsys, "run", digits_bundle, "--source", VTEST, "--smooth", "1.5")
    assert "--save" in _one_line_error(capsys, "run", digits_bundle, "--source", VTEST, "--save", tmp_path / "x.txt")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        port = busy.getsockname()[1]
        assert "cannot listen" in _one_line_error(capsys, "run", digits_bundle, "--source", VTEST,
                                                  "--serve", f"127.0.0.1:{port}")
    finally:
        busy.close()


# -- a live stream: newest frame, reconnect with backoff, give up cleanly ---------------------------


def test_live_http_stream_reconnects_then_gives_up(digits_bundle, tmp_path):
    """vtest.avi served over HTTP is a live source: at its end the app reopens it (logged) and goes on;
    with the server gone it retries until --reconnect-timeout, then prints the summary and one error."""
    import functools
    import shutil
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    shutil.copy(VTEST, tmp_path / "live.avi")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/live.avi"
    args = ["run", str(digits_bundle), "--source", url, "--headless", "--threads", "1", "--reconnect-timeout", "3"]
    code = BLOCK_HOST_LIBS + "from edgecnn.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=subprocess_env())
    try:
        # Read frames until the stream has been reopened once and frames flow again, then stop the server.
        seen, restarted = 0, False
        for line in proc.stdout:
            record = json.loads(line)
            seen += 1
            if record["frame"] >= VTEST_FRAMES + 20:  # frame numbers go on across the reconnect
                restarted = True
                break
        assert restarted, proc.stderr.read()
        server.shutdown()
        server.server_close()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "reopening" in err and "reconnected" in err
    assert "reconnected 1 times" in err or "reconnected 2 times" in err  # the summary came before the error
    last = err.strip().splitlines()[-1]
    assert proc.returncode == 2 and last.startswith("edgecnn: error:") and "not back after 3 s" in last
    assert "Traceback" not in err
