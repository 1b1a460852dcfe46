"""Hardening (issue 14): reproducible training in a shared test process, bad bundles, bad predict inputs,
verify without a checkpoint, artifact path confinement, the umask."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgecnn.cli import main
from edgecnn.errors import EdgeCNNError


def run_cli(*args) -> int:
    return main([str(a) for a in args])


# -- item 12: what ran before a test must not change its training ------------------------------------------

def test_train_seed_fixes_the_initial_weights_whatever_ran_before(tmp_path):
    """torch seeds its global RNG randomly per process and earlier tests consume it: the initial weights
    came from there, so the session's digits_ckpt (and every accuracy measured on it) changed run to run."""
    states = []
    for i, prior in enumerate((1, 2)):
        torch.manual_seed(prior)  # a different process history
        torch.rand(prior * 10)
        out = tmp_path / f"run{i}"
        assert run_cli("train", "lenet5", "--epochs", "1", "--train-limit", "128", "--seed", "5", "--out", out) == 0
        states.append(torch.load(out / "last.pt", weights_only=True)["state_dict"])
    for k, v in states[0].items():
        assert torch.equal(v, states[1][k]), k


def test_prune_cli_restores_the_thread_count(digits_ckpt, tmp_path):
    """`edgecnn prune` sets torch's threads for its measurements; in-process callers keep theirs."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert run_cli("prune", digits_ckpt, "--ratio", "0.3", "--finetune-epochs", "0", "--no-report",
                       "--out", tmp_path / "p") == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# -- the bad-bundle matrix (items 5, 7, 8 and 1): each refused with one clear line ------------------------

REPO = Path(__file__).resolve().parents[1]
REFERENCE_BUNDLE = REPO / "export" / "lenet5-digits"
SAMPLE = "samples/7_0.png"
ONNX_FP32 = 0  # artifacts[0] of the reference bundle: model.onnx (fp32, NCHW)
TFLITE_INT8 = 3  # artifacts[3]: model.int8.tflite, int8 input/output with quant params


def _set_input(**fields):
    def mutate(m, d, tmp):
        m["input"].update(fields)
    return mutate


def _set_artifact(i, **fields):
    def mutate(m, d, tmp):
        m["artifacts"][i].update(fields)
    return mutate


def _rewrite_file(m, d, name: str, data: bytes) -> None:
    """Replace an artifact's bytes and record them, so only what is inside the file is wrong."""
    (d / name).write_bytes(data)
    rec = next(a for a in m["artifacts"] if a["file"] == name)
    rec.update(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def _classes(m, d, tmp, new):
    m["classes"] = new


def _absolute(m, d, tmp):
    outside = tmp / "elsewhere.onnx"
    shutil.copy(d / "model.onnx", outside)  # a real model with the right sha256: only the place is wrong
    m["artifacts"][ONNX_FP32]["file"] = str(outside)


def _symlink_out(m, d, tmp):
    outside = tmp / "elsewhere.onnx"
    shutil.copy(d / "model.onnx", outside)
    (d / "model.onnx").unlink()
    (d / "model.onnx").symlink_to(outside)


def _corrupt_bytes(m, d, tmp):
    data = bytearray((d / "model.onnx").read_bytes())
    data[1000:1016] = b"\x00" * 16
    (d / "model.onnx").write_bytes(bytes(data))  # the manifest's sha256 still describes the old bytes


def _garbage_model(m, d, tmp):
    _rewrite_file(m, d, "model.onnx", np.random.default_rng(0).bytes(4096))


def _nan_weights(m, d, tmp):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(d / "model.onnx"))
    init = next(t for t in model.graph.initializer if numpy_helper.to_array(t).size > 100)
    arr = numpy_helper.to_array(init).copy()
    arr.flat[0] = np.nan
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    _rewrite_file(m, d, "model.onnx", model.SerializeToString())


def _drop_key(*path):
    def mutate(m, d, tmp):
        node = m
        for k in path[:-1]:
            node = node[k]
        del node[path[-1]]
    return mutate


def _not_json(m, d, tmp):
    m.clear()  # written below as invalid JSON


three_channels = _set_input(channels=3, color="RGB", mean=[0.1] * 3, std=[0.3] * 3)
BAD_BUNDLES = {
    # item 7: the manifest against the loaded model
    "classes-fewer-than-outputs": (lambda m, d, t: _classes(m, d, t, m["classes"][:5]), "lists 5 classes"),
    "classes-more-than-outputs": (lambda m, d, t: _classes(m, d, t, m["classes"] + ["10", "11"]), "lists 12 classes"),
    "input-size-the-model-does-not-take": (_set_input(height=28, width=28), "the manifest says 1x28x28"),
    "input-channels-the-model-does-not-take": (three_channels, "the manifest says 3x32x32"),
    "layout-not-the-models": (_set_artifact(ONNX_FP32, layout="NHWC"), "the manifest says 32x32x1"),
    "input-dtype-not-the-models": (_set_artifact(ONNX_FP32, input={"name": "input", "dtype": "int8",
                                                                   "quant": {"scale": 0.1, "zero_point": 0}}),
                                   "model input dtype is float32, the manifest says int8"),
    "nan-weights": (_nan_weights, "not finite"),
    "input-size-huge": (_set_input(height=100000, width=100000), "height must be between 1 and 4096"),
    "input-size-zero": (_set_input(width=0), "width must be between 1 and 4096"),
    **{f"scale-{name}": (_set_input(scale=v), "scale must be a finite number")
       for name, v in (("nan", float("nan")), ("inf", float("inf")), ("zero", 0.0), ("negative", -1 / 255),
                       ("1e-300", 1e-300))},
    **{f"std-{name}": (_set_input(std=[v]), "std must hold finite numbers")
       for name, v in (("nan", float("nan")), ("inf", float("inf")), ("zero", 0.0), ("negative", -0.29),
                       ("1e-300", 1e-300))},
    "mean-nan": (_set_input(mean=[float("nan")]), "mean must hold finite numbers"),
    # item 1: labels
    "label-duplicate": (lambda m, d, t: m["classes"].__setitem__(3, "2"), "classes[3] '2' duplicates classes[2]"),
    "label-empty": (lambda m, d, t: m["classes"].__setitem__(0, ""), "classes[0] '' is empty"),
    "label-lone-surrogate": (lambda m, d, t: m["classes"].__setitem__(4, "\ud800"), "classes[4] '\\ud800' contains a lone surrogate"),
    "label-control-char": (lambda m, d, t: m["classes"].__setitem__(5, "5\n6"), "contains the control character U+000A"),
    "label-not-a-string": (lambda m, d, t: m["classes"].__setitem__(6, 6), "classes[6] 6 must be a string"),
    # int8 quantization parameters
    "int8-quant-scale-zero": (lambda m, d, t: m["artifacts"][TFLITE_INT8]["input"]["quant"].update(scale=0.0),
                              "quant scale must be a finite number > 0"),
    "int8-quant-scale-nan": (lambda m, d, t: m["artifacts"][TFLITE_INT8]["output"]["quant"].update(scale=float("nan")),
                             "quant scale must be a finite number > 0"),
    "int8-zero-point-out-of-range": (lambda m, d, t: m["artifacts"][TFLITE_INT8]["input"]["quant"].update(zero_point=300),
                                     "outside the int8 range"),
    # item 8: paths confined to the bundle
    "path-absolute": (_absolute, "must be a relative path inside the bundle"),
    "path-dotdot": (_set_artifact(ONNX_FP32, file="../../etc/passwd"), "must be a relative path inside the bundle"),
    "path-symlink-out": (_symlink_out, "resolves outside the bundle"),
    "sample-path-dotdot": (lambda m, d, t: m["samples"][0].update(file="../x.png"), "samples[0]: file '../x.png'"),
    # item 5 and integrity
    "file-missing": (lambda m, d, t: (d / "model.onnx").unlink(), "artifact file missing: model.onnx"),
    "sha256-mismatch": (_corrupt_bytes, "sha256 does not match the manifest"),
    "corrupt-model-file": (_garbage_model, "onnxruntime cannot load this model"),
    "zero-artifacts": (lambda m, d, t: m["artifacts"].clear(), "artifacts is empty"),
    "sha256-not-hex": (_set_artifact(ONNX_FP32, sha256="xyz"), "sha256 must be 64 lowercase hex digits"),
    "size-bytes-negative": (_set_artifact(ONNX_FP32, size_bytes=-1), "size_bytes must be positive"),
    # the schema
    "layout-unknown": (_set_artifact(ONNX_FP32, layout="NWHC"), "layout must be one of NCHW|NHWC"),
    "dtype-unknown": (lambda m, d, t: m["artifacts"][ONNX_FP32]["input"].update(dtype="float64"), "dtype must be one of"),
    "format-unknown": (_set_artifact(ONNX_FP32, format="pt"), "format must be one of onnx|tflite"),
    "precision-unknown": (_set_artifact(ONNX_FP32, precision="int4"), "precision must be one of"),
    "missing-classes": (_drop_key("classes"), "missing field 'classes'"),
    "missing-input-scale": (_drop_key("input", "scale"), "missing field 'scale'"),
    "missing-artifact-sha256": (lambda m, d, t: m["artifacts"][ONNX_FP32].pop("sha256"), "missing field 'sha256'"),
    "schema-version-wrong": (lambda m, d, t: m.update(schema="edgecnn.bundle/2"), "schema must be 'edgecnn.bundle/1'"),
    "manifest-not-json": (_not_json, "not valid JSON"),
}


def _bad_bundle(tmp_path: Path, kind: str) -> Path:
    d = tmp_path / "bundle"
    shutil.copytree(REFERENCE_BUNDLE, d)
    m = json.loads((d / "manifest.json").read_text())
    mutate, _ = BAD_BUNDLES[kind]
    mutate(m, d, tmp_path)
    text = "{not json" if not m else json.dumps(m, ensure_ascii=True)  # NaN/Infinity as Python's json writes them
    (d / "manifest.json").write_text(text)
    return d


def test_the_matrix_holds_at_least_the_28_kinds_of_the_probe():
    assert len(BAD_BUNDLES) >= 28


def test_the_reference_bundle_itself_loads(tmp_path):
    from edgecnn.runtime.classifier import Classifier

    with Classifier(REFERENCE_BUNDLE, backend="onnxruntime", precision="fp32") as clf:
        assert clf.predict(str(REFERENCE_BUNDLE / SAMPLE)).label == "7"


@pytest.mark.parametrize("kind", sorted(BAD_BUNDLES))
def test_bad_bundle_is_refused_with_one_line(kind, tmp_path, capsys, monkeypatch):
    from edgecnn.runtime.classifier import Classifier

    bundle = _bad_bundle(tmp_path, kind)
    expected = BAD_BUNDLES[kind][1]
    hashed: list[str] = []
    import edgecnn.bundle
    import edgecnn.runtime.tune
    import edgecnn.utils

    real = edgecnn.utils.sha256_file
    for mod in (edgecnn.bundle, edgecnn.runtime.tune, edgecnn.utils):  # tune: the integrity check at load
        monkeypatch.setattr(mod, "sha256_file", lambda p: hashed.append(str(p)) or real(p))
    with pytest.raises(EdgeCNNError) as err:
        Classifier(bundle, backend="onnxruntime", precision="fp32")
    msg = str(err.value)
    assert expected in msg and "\n" not in msg, msg
    if kind.startswith("path-"):  # refused before anything outside the bundle is opened or hashed
        assert not any("elsewhere" in h or "passwd" in h for h in hashed), hashed
    # The CLI: one line, exit 2, no traceback.
    rc = run_cli("classify", bundle, bundle / SAMPLE, "--backend", "onnxruntime", "--precision", "fp32")
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err_lines) == 1 and err_lines[0].startswith("edgecnn: error: "), err_lines
    assert expected in err_lines[0]


# -- item 9: what predict accepts, by the documented rule, and what it refuses ------------------------------

def _digit() -> np.ndarray:
    import cv2

    return cv2.imread(str(REFERENCE_BUNDLE / SAMPLE), cv2.IMREAD_UNCHANGED)  # 20x20 uint8, a real '7'


def _encoded(ext: str) -> bytes:
    import cv2

    ok, buf = cv2.imencode(ext, _digit())
    assert ok
    return buf.tobytes()


ACCEPTED = {  # each is the same '7', handed over another way
    "uint8-HxW": lambda g: g,
    "uint8-HxWx1": lambda g: g[:, :, None],
    "uint8-HxWx3-BGR": lambda g: np.repeat(g[:, :, None], 3, axis=2),
    "uint8-HxWx4": lambda g: np.dstack([g, g, g, np.full_like(g, 255)]),
    "uint8-1xHxW": lambda g: g[None],
    "uint8-3xHxW": lambda g: np.repeat(g[None], 3, axis=0),
    "float32-0-1": lambda g: g.astype(np.float32) / 255,
    "float64-0-1": lambda g: g.astype(np.float64) / 255,
    "float32-0-255": lambda g: g.astype(np.float32),
    "float32-3xHxW-0-1": lambda g: np.repeat(g[None], 3, axis=0).astype(np.float32) / 255,
    "uint16": lambda g: g.astype(np.uint16) * 257,
    "int64-0-255": lambda g: g.astype(np.int64),
    "png-bytes": lambda g: _encoded(".png"),
    "png-bytearray": lambda g: bytearray(_encoded(".png")),
    "bmp-bytes": lambda g: _encoded(".bmp"),
    "path-str": lambda g: str(REFERENCE_BUNDLE / SAMPLE),
    "path-object": lambda g: REFERENCE_BUNDLE / SAMPLE,
}


@pytest.fixture(scope="module")
def ref_clf():
    from edgecnn.runtime.classifier import Classifier

    with Classifier(REFERENCE_BUNDLE, backend="onnxruntime", precision="fp32") as clf:
        yield clf


@pytest.mark.parametrize("kind", sorted(ACCEPTED))
def test_predict_accepts_by_the_documented_rule(kind, ref_clf):
    g = _digit()
    want = ref_clf.predict(g).probs
    got = ref_clf.predict(ACCEPTED[kind](g))
    assert got.label == "7"
    np.testing.assert_allclose(got.probs, want, atol=2e-3)  # the same pixels (float rounding aside)


def _nan_pixel(g):
    x = g.astype(np.float32) / 255
    x[3, 4] = np.nan
    return x


REFUSED = {
    "nan-pixel": (_nan_pixel, "NaN or infinite"),
    "inf-pixel": (lambda g: np.where(g > 0, np.inf, 0).astype(np.float32), "NaN or infinite"),
    "float-negative": (lambda g: g.astype(np.float32) / 255 - 0.5, "must lie in [0, 1] or [0, 255]"),
    "float-above-255": (lambda g: g.astype(np.float32) * 4, "must lie in [0, 1] or [0, 255]"),
    "int-out-of-range": (lambda g: g.astype(np.int32) - 1, "must lie in 0..255"),
    "chw-or-hwc-ambiguous": (lambda g: np.zeros((3, 32, 3), np.uint8), "is ambiguous"),
    "4-d-batch": (lambda g: g[None, None], "image must be HxW"),
    "2-channels": (lambda g: np.zeros((20, 20, 2), np.uint8), "image must be HxW"),
    "empty": (lambda g: np.zeros((0, 20), np.uint8), "image is empty"),
    "bool": (lambda g: g > 0, "unsupported image dtype bool"),
    "complex": (lambda g: g.astype(np.complex64), "unsupported image dtype"),
    "not-an-image-bytes": (lambda g: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3, "bytes given as an image"),
    "empty-bytes": (lambda g: b"", "0 bytes given as an image"),
    "missing-path": (lambda g: "/nonexistent/x.png", "cannot read image: /nonexistent/x.png"),
}


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_predict_refuses_with_one_short_line(kind, ref_clf):
    make, expected = REFUSED[kind]
    with pytest.raises(EdgeCNNError) as err:
        ref_clf.predict(make(_digit()))
    msg = str(err.value)
    assert expected in msg and "\n" not in msg and len(msg) < 300, msg
    assert "\\x" not in msg and "\x89" not in msg  # never the bytes themselves


def test_predict_layout_can_be_said_and_chw_is_read_as_chw(ref_clf):
    g = _digit()
    chw = np.repeat(g[None], 3, axis=0)[:, :, 7:10]  # 3 x 20 x 3: CHW that happens to be 3 wide
    with pytest.raises(EdgeCNNError, match="ambiguous"):
        ref_clf.preprocess(chw)
    np.testing.assert_array_equal(ref_clf.preprocess(chw, layout="CHW"), ref_clf.preprocess(chw.transpose(1, 2, 0)))
    with pytest.raises(EdgeCNNError, match="layout must be one of"):
        ref_clf.predict(g, layout="WHC")


@pytest.mark.parametrize("bad, expected", [
    (np.zeros((32, 32, 1), np.float32), "got shape (32, 32, 1)"),
    (np.zeros((1, 28, 28), np.float32), "must be float32 1 x 32 x 32"),
    (np.zeros((2, 1, 32, 32), np.float32), "got shape (2, 1, 32, 32)"),
    (np.full((1, 32, 32), np.nan, np.float32), "NaN or infinite"),
    (np.zeros((1, 32, 32), np.uint8), "got dtype uint8"),
], ids=["hwc", "wrong-size", "batch-of-2", "nan", "uint8"])
def test_predict_preprocessed_wrong_input_is_one_line(bad, expected, ref_clf):
    with pytest.raises(EdgeCNNError) as err:
        ref_clf.predict_preprocessed(bad)
    assert expected in str(err.value) and "\n" not in str(err.value)
    good = ref_clf.preprocess(_digit())
    assert ref_clf.predict_preprocessed(good).label == ref_clf.predict_preprocessed(good[None]).label == "7"


# -- item 1: labels print and draw whatever the terminal -------------------------------------------------

def test_overlay_never_crashes_on_a_label():
    """cv2.putText segfaulted on a lone surrogate: run it in a child so a crash is a failure, not the end."""
    code = (
        "import numpy as np\n"
        "from edgecnn.runtime.overlay import draw_overlay, drawable\n"
        "labels = ['\\ud800', '\\u732b', 'caf\\u00e9', 'a\\tb\\x00', '\\U0001F600' * 50, '', 'ok']\n"
        "img = draw_overlay(np.zeros((48, 64, 3), np.uint8), [(s, 0.5) for s in labels], fps=30.0)\n"
        "assert img.shape[1] >= 480\n"
        "assert drawable('caf\\u00e9') == 'cafe' and drawable('\\u732b') == '?' and drawable('\\ud800') == '?'\n"
        "print('drawn')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0 and "drawn" in proc.stdout, (proc.returncode, proc.stderr[-500:])


def test_classify_prints_a_non_ascii_label_on_an_ascii_terminal(tmp_path):
    d = tmp_path / "bundle"
    shutil.copytree(REFERENCE_BUNDLE, d)
    m = json.loads((d / "manifest.json").read_text())
    m["classes"][7] = "\u4e03 (seven)"  # valid text, not ASCII
    (d / "manifest.json").write_text(json.dumps(m))
    proc = subprocess.run([sys.executable, "-m", "edgecnn", "classify", str(d), str(d / SAMPLE),
                           "--backend", "onnxruntime", "--precision", "fp32"],
                          capture_output=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONIOENCODING": "ascii",
                               "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-500:]
    assert b"\\u4e03 (seven)" in proc.stdout


# -- item 5: verify without the checkpoint (the normal case on a device) ----------------------------------

def _device_copy(tmp_path: Path, name: str = "bundle") -> Path:
    """The reference bundle as copied to a device: its source checkpoint is not there."""
    d = tmp_path / name
    shutil.copytree(REFERENCE_BUNDLE, d)
    m = json.loads((d / "manifest.json").read_text())
    m["source"]["checkpoint"] = str(tmp_path / "not-on-this-machine" / "best.pt")
    (d / "manifest.json").write_text(json.dumps(m))
    return d


def _shift_class0_bias(d: Path) -> None:
    """A real accuracy drop: the fp32 ONNX now favours class 0 (recorded in the manifest, so it loads)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(d / "model.onnx"))
    bias = [t for t in model.graph.initializer if numpy_helper.to_array(t).shape == (10,)][-1]
    arr = numpy_helper.to_array(bias).copy()
    arr[0] += 20.0
    bias.CopyFrom(numpy_helper.from_array(arr, bias.name))
    m = json.loads((d / "manifest.json").read_text())
    _rewrite_file(m, d, "model.onnx", model.SerializeToString())
    (d / "manifest.json").write_text(json.dumps(m))


def _verify(capsys, *args) -> tuple[int, list[str], str]:
    rc = run_cli("verify", *args)
    out, err = capsys.readouterr()
    return rc, err.strip().splitlines(), out


def test_verify_accuracy_only_fails_on_a_real_drop(tmp_path, capsys):
    good = _device_copy(tmp_path, "good")
    rc, err, out = _verify(capsys, good)
    assert rc == 0 and "measuring accuracy only" in out, err
    rc, err, _ = _verify(capsys, good, "--eval-limit", "300")  # a subset: within the sampling tolerance
    assert rc == 0, err

    bad = _device_copy(tmp_path, "bad")
    _shift_class0_bias(bad)
    rc, err, _ = _verify(capsys, bad)
    assert rc == 2 and len(err) == 1, err  # was: internal error TypeError ... 'NoneType'
    assert err[0].startswith("edgecnn: error: model.onnx: accuracy") and "vs the manifest's recorded 98.20%" in err[0]
    assert "accuracy-only" in err[0]
    rc, err, _ = _verify(capsys, bad, "--eval-limit", "300")
    assert rc == 2 and len(err) == 1 and "sampling tolerance" in err[0], err


def test_verify_accuracy_only_refuses_what_it_cannot_verify(tmp_path, capsys):
    d = _device_copy(tmp_path, "garbage")
    m = json.loads((d / "manifest.json").read_text())
    _rewrite_file(m, d, "model.onnx", np.random.default_rng(1).bytes(5000))  # corrupt, sha256 recorded
    (d / "manifest.json").write_text(json.dumps(m))
    rc, err, _ = _verify(capsys, d)
    assert rc == 2 and len(err) == 1 and "model.onnx: cannot run this model" in err[0], err  # was InvalidProtobuf

    d = _device_copy(tmp_path, "unrecorded")
    m = json.loads((d / "manifest.json").read_text())
    for a in m["artifacts"]:
        a["verified"] = None
    m["source"]["accuracy"] = None
    (d / "manifest.json").write_text(json.dumps(m))
    rc, err, _ = _verify(capsys, d)
    assert rc == 2 and len(err) == 1 and "no recorded accuracy" in err[0], err

    for kind in ("zero-artifacts", "scale-nan"):
        rc, err, _ = _verify(capsys, _bad_bundle(tmp_path / kind, kind))
        assert rc == 2 and len(err) == 1, (kind, err)


# -- item 11: bundles and run folders follow the umask ---------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002], ids=["022", "027", "002"])
def test_staged_directories_and_atomic_files_follow_the_umask(tmp_path, umask):
    from edgecnn.utils import atomic_write_bytes, staged_directory

    old = os.umask(umask)
    try:
        with staged_directory(tmp_path / "b") as stage:
            atomic_write_bytes(stage / "manifest.json", b"{}")
            (stage / "plain.txt").write_text("x")
        atomic_write_bytes(tmp_path / "run" / "metrics.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o777 & ~umask
    for f in (tmp_path / "b" / "manifest.json", tmp_path / "b" / "plain.txt", tmp_path / "run" / "metrics.json"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, f


def test_exported_bundle_and_training_run_are_readable_as_the_umask_says(digits_bundle, digits_ckpt):
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(digits_bundle.stat().st_mode) == 0o777 & ~mask  # (pytest makes the run folder 0700)
    for root in (digits_bundle, digits_ckpt.parent):
        for p in root.rglob("*"):
            want = (0o777 if p.is_dir() else 0o666) & ~mask
            assert stat.S_IMODE(p.stat().st_mode) == want, p
