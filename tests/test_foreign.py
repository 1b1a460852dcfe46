"""Models made elsewhere: TFLite files made by TensorFlow's own converter (tests/data/foreign/make_models.py,
committed; no TensorFlow here), imported with nothing but their labels.

The photo models were trained on the train split of `make_photo_patches(size=32, splits=("train", "test"))`
(seed 0): the same call here gives the same held-out test patches (90 real photo patches, 3 classes).
"""

from __future__ import annotations

import json
import shutil
import string
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_cli

from edgecnn.errors import EdgeCNNError
from edgecnn.export.importer import import_model

FOREIGN = Path(__file__).resolve().parent / "data" / "foreign"
LETTERS = Path("/usr/share/doc/opencv-doc/examples/data/letter-recognition.data")
PHOTO_LABELS = FOREIGN / "photos_labels.txt"


@pytest.fixture(scope="module")
def patches(tmp_path_factory) -> Path:
    from edgecnn.data.photos import make_photo_patches

    return make_photo_patches(tmp_path_factory.mktemp("foreign") / "p32", size=32, splits=("train", "test"))


def _test_images(root: Path) -> tuple[list[Path], np.ndarray]:
    classes = PHOTO_LABELS.read_text().split()
    files = sorted((root / "test").glob("*/*.png"))
    return files, np.array([classes.index(f.parent.name) for f in files])


def _litert_top1(model: Path, files: list[Path], to_float) -> np.ndarray:
    """The hand-written loop: RGB pixels -> the float range the file's input quantization states -> int."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(model))
    it.allocate_tensors()
    d, o = it.get_input_details()[0], it.get_output_details()[0]
    scale, zero = d["quantization"]
    info = np.iinfo(d["dtype"])
    out = []
    for f in files:
        rgb = cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB).astype(np.float32)
        q = np.clip(np.round(to_float(rgb) / scale) + zero, info.min, info.max).astype(d["dtype"])
        it.set_tensor(d["index"], q[None])
        it.invoke()
        out.append(int(it.get_tensor(o["index"])[0].argmax()))
    return np.array(out)


# file -> how its quantization says pixels are fed (int8 scale ~1 / zp -128: raw 0..255; uint8 scale 1/255: 0..1;
# int8 scale 1/128 / zp 0: -1..1)
INT8_FILES = {
    "photos_int8.tflite": lambda p: p,
    "photos_uint8.tflite": lambda p: p / 255.0,
    "teachable/model.tflite": lambda p: p / 127.5 - 1.0,
}


def test_int8_files_without_flags_give_the_handwritten_litert_loops_top1(patches, tmp_path):
    from edgecnn.runtime import Classifier

    files, labels = _test_images(patches)
    assert len(files) >= 20
    for name, to_float in INT8_FILES.items():
        model = FOREIGN / name
        labels_file = model.parent / "labels.txt" if "teachable" in name else PHOTO_LABELS
        out = import_model([model], tmp_path / name.replace("/", "_"), labels=labels_file, log=lambda s: None)
        with Classifier(out, backend="litert", precision="int8", tune=False) as clf:
            ours = np.array([clf.predict(f).index for f in files])
        theirs = _litert_top1(model, files, to_float)
        assert (ours == theirs).all(), (name, int((ours != theirs).sum()))
        assert (ours == labels).mean() >= 0.7, (name, (ours == labels).mean())  # measured 0.74-0.99
        if name == "photos_int8.tflite":  # what was silently done before: [0, 1] pixels into a raw-pixel model
            wrong = _litert_top1(model, files, lambda p: p / 255.0)
            assert (wrong == labels).mean() < 0.5 and len(set(wrong)) == 1


def test_a_normalization_that_contradicts_the_quantization_is_refused(tmp_path, capsys):
    out = tmp_path / "b"
    rc = run_cli("import-model", FOREIGN / "photos_uint8.tflite", "--labels", PHOTO_LABELS,
                 "--mean", "0.5", "--std", "0.5", "--out", out)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and not out.exists()
    assert len(err) == 1 and "--mean 0.5 --std 0.5" in err[0] and "represents [0, 0.9961]" in err[0], err
    assert run_cli("import-model", FOREIGN / "photos_int8.tflite", "--labels", PHOTO_LABELS,
                   "--scale", "0.00392157", "--out", out) == 2 and not out.exists()
    assert "photos_int8.tflite: --scale 0.00392157 feeds pixels as [0, 1]" in capsys.readouterr().err
    # A preset is a statement too: Keras MobileNet's -1..1 into a raw-pixel file is refused, EfficientNet's 0..255 fits.
    assert run_cli("import-model", FOREIGN / "photos_int8.tflite", "--labels", PHOTO_LABELS,
                   "--preset", "keras-mobilenet", "--out", out) == 2 and not out.exists()
    assert "--preset keras-mobilenet feeds pixels as [-1, 1]" in capsys.readouterr().err
    assert run_cli("import-model", FOREIGN / "photos_int8.tflite", "--labels", PHOTO_LABELS,
                   "--preset", "keras-efficientnet", "--out", out) == 0
    assert json.loads((out / "manifest.json").read_text())["source"]["normalization"] == "preset keras-efficientnet"


def test_a_non_classifier_is_refused_with_that_reason(tmp_path, capsys):
    out = tmp_path / "ae"
    rc = run_cli("import-model", FOREIGN / "digits_autoencoder_int8.tflite", "--labels", PHOTO_LABELS, "--out", out)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and not out.exists()
    assert len(err) == 1 and "not a classifier" in err[0] and "[1, 400]" in err[0], err


def test_float_input_gets_a_note_and_presets_name_known_conventions(tmp_path):
    said: list[str] = []
    out = import_model([FOREIGN / "photos_float.tflite"], tmp_path / "f", labels=PHOTO_LABELS, log=said.append)
    m = json.loads((out / "manifest.json").read_text())
    assert m["source"]["normalization"] == "assumed" and "--preset" in m["source"]["normalization_note"]
    assert any(s.startswith("note: float input and no normalization stated") for s in said)
    assert "Note: float input" in (out / "REPORT.md").read_text()
    out = import_model([FOREIGN / "photos_float.tflite"], tmp_path / "r", labels=PHOTO_LABELS, preset="keras-resnet",
                       log=lambda s: None)
    inp = json.loads((out / "manifest.json").read_text())["input"]
    assert (inp["color"], inp["scale"], inp["mean"], inp["std"]) == ("BGR", 1.0, [103.939, 116.779, 123.68], [1.0] * 3)
    with pytest.raises(EdgeCNNError, match="--preset or --mean/--std, not both"):
        import_model([FOREIGN / "photos_float.tflite"], tmp_path / "x", labels=PHOTO_LABELS, preset="keras-vgg",
                     mean=[0.5], std=[0.5], log=lambda s: None)


def _letters() -> tuple[np.ndarray, np.ndarray]:
    rows = [ln.split(",") for ln in LETTERS.read_text().splitlines() if ln.strip()]
    x = np.array([[float(v) for v in r[1:]] for r in rows], np.float32)
    return x[16000:], np.array([string.ascii_uppercase.index(r[0]) for r in rows])[16000:]  # held out


def test_features_models_import_as_features_and_classify_from_npy(tmp_path, capsys):
    from ai_edge_litert.interpreter import Interpreter

    from edgecnn.runtime import Classifier

    x, y = _letters()
    np.savez(tmp_path / "letters.npz", x=x, y=y)
    out = import_model([FOREIGN / "letters_int8.tflite"], tmp_path / "letters", labels=FOREIGN / "letters_labels.txt",
                       data=str(tmp_path / "letters.npz"), log=lambda s: None)
    m = json.loads((out / "manifest.json").read_text())
    assert m["input"] == {"kind": "features", "shape": [16]} and m["artifacts"][0]["layout"] == "ND"
    assert m["artifacts"][0]["verified"]["samples"] == 4000 and m["artifacts"][0]["verified"]["accuracy"] >= 0.88

    it = Interpreter(model_path=str(FOREIGN / "letters_int8.tflite"))  # the hand-written loop
    it.allocate_tensors()
    d, o = it.get_input_details()[0], it.get_output_details()[0]
    (s, z), theirs = d["quantization"], []
    for row in x[:200]:
        it.set_tensor(d["index"], np.clip(np.round(row / s) + z, -128, 127).astype(np.int8)[None])
        it.invoke()
        theirs.append(int(it.get_tensor(o["index"])[0].argmax()))
    with Classifier(out) as clf:
        assert [clf.predict_features(row).index for row in x[:200]] == theirs
        with pytest.raises(EdgeCNNError, match="takes features, not images"):
            clf.predict(np.zeros((16, 16, 3), np.uint8))
        with pytest.raises(EdgeCNNError, match=r"shape \[16\]"):
            clf.predict_features(np.zeros(15))

    np.save(tmp_path / "three.npy", x[:3])
    capsys.readouterr()
    assert run_cli("classify", out, tmp_path / "three.npy") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split(": ")[1][0] for ln in lines] == [string.ascii_uppercase[i] for i in theirs[:3]]
    assert run_cli("verify", out, "--data", tmp_path / "letters.npz") == 0
    assert run_cli("run", out, "--source", tmp_path, "--max-frames", "1") == 2  # frames: refused in one line
    assert "takes features, not frames" in capsys.readouterr().err

    # A 4-D int8 input whose range is not a pixel range is features too; image flags on features are refused.
    out4 = import_model([FOREIGN / "letters_4d_int8.tflite"], tmp_path / "l4", labels=FOREIGN / "letters_labels.txt",
                        log=lambda s: None)
    assert json.loads((out4 / "manifest.json").read_text())["input"]["shape"] == [4, 4, 1]
    # The keyword-spotting case: [1, 49, 10, 1] int8, scale 0.588 / zero point 76, is not a grey image.
    (tmp_path / "kws.txt").write_text("".join(f"word{i}\n" for i in range(12)))
    kws = import_model([FOREIGN / "profile_kws_dscnn.tflite"], tmp_path / "kws", labels=tmp_path / "kws.txt",
                       log=lambda s: None)
    assert json.loads((kws / "manifest.json").read_text())["input"] == {"kind": "features", "shape": [49, 10, 1]}
    with pytest.raises(EdgeCNNError, match=r"represents \[-4.745, 4.783\], not a pixel range edgecnn knows"):
        import_model([FOREIGN / "letters_4d_int8.tflite"], tmp_path / "no", labels=FOREIGN / "letters_labels.txt",
                     kind="image", log=lambda s: None)
    with pytest.raises(EdgeCNNError, match="image options, but the input is features"):
        import_model([FOREIGN / "letters_int8.tflite"], tmp_path / "no", labels=FOREIGN / "letters_labels.txt",
                     mean=[0.5], std=[0.5], log=lambda s: None)


def test_verify_on_an_imported_bundle_and_int8_once_measured(patches, tmp_path, capsys):
    from edgecnn.runtime import Classifier

    tm = FOREIGN / "teachable"
    out = import_model([tm / "model_unquant.tflite", tm / "model.tflite"], tmp_path / "tm", labels=tm / "labels.txt",
                       log=lambda s: None)
    with Classifier(out) as clf:  # nothing measured: int8 is not a candidate, and why says so
        assert clf.describe()["precision"] == "fp32"
        assert "int8 not considered: model.tflite was imported without measured accuracy" in clf.describe()["why"]
    assert run_cli("verify", out, "--data", f"folder:{patches}", "--write") == 0
    table = capsys.readouterr().out
    assert "| model.tflite | tflite | int8 |" in table and "(vs model_unquant.tflite)" in table
    m = json.loads((out / "manifest.json").read_text())
    v = [a["verified"] for a in m["artifacts"]]
    assert [r["samples"] for r in v] == [90, 90] and min(r["accuracy"] for r in v) >= 0.9
    assert v[1]["agreement_with_first"] >= 0.95 and v[1]["reference"] == "model_unquant.tflite"

    from edgecnn.bundle import Bundle
    from edgecnn.runtime.tune import plan

    assert "litert int8" in {c.selection.label for c in plan(Bundle.load(out))[0]}  # measured: in the race
    assert run_cli("verify", out, "--data", f"folder:{patches}") == 0  # against the recorded figures

    m["input"]["mean"] = [0.1] * 3  # a drifted manifest: no checkpoint, the recorded accuracy catches it
    (out / "manifest.json").write_text(json.dumps(m))
    capsys.readouterr()
    assert run_cli("verify", out, "--data", f"folder:{patches}") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "recorded 98.89%" in err[0], err


def test_import_data_on_a_flat_folder_measures_every_image(tmp_path):
    from edgecnn.data.photos import make_photo_patches

    flat = make_photo_patches(tmp_path / "flat", size=32, layout="flat", splits=("test",), counts={"test": 4})
    out = import_model([FOREIGN / "photos_uint8.tflite"], tmp_path / "b", labels=PHOTO_LABELS,
                       data=f"folder:{flat}", log=lambda s: None)
    v = json.loads((out / "manifest.json").read_text())["artifacts"][0]["verified"]
    assert (v["samples"], v["split"]) == (12, "all")


def test_verify_fails_on_a_drifted_input_block_with_the_checkpoint_here(digits_bundle, tmp_path, capsys):
    b = tmp_path / "drifted"
    shutil.copytree(digits_bundle, b)
    m = json.loads((b / "manifest.json").read_text())
    m["input"]["mean"] = [0.6]  # was 0.1323
    (b / "manifest.json").write_text(json.dumps(m))
    capsys.readouterr()
    assert run_cli("verify", b, "--data", "digits", "--eval-limit", "50") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "input.mean is [0.6]" in err[0] and "[0.1323]" in err[0], err
