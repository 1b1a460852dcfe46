"""Make the foreign TFLite test files with TensorFlow's own converter (run once, by hand; CI never needs TF).

    python -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu opencv-python-headless
    PYTHONPATH=. /tmp/tfvenv/bin/python tests/data/foreign/make_models.py

Every model is a small Keras network trained here on REAL data, then converted by
`tf.lite.TFLiteConverter` the way users of TensorFlow do it:

  photos_int8.tflite            CNN, 32x32 RGB photo patches (baboon fur / fruit bowl / circuit board, cut from
                                Debian opencv-doc photos by edgecnn.data.photos, train split only); a Rescaling
                                layer inside, so it takes raw 0-255 pixels; full-integer int8 with int8 I/O: the
                                input quantization comes out scale 1.0 / zero point -128 (int8 = pixel - 128)
  photos_uint8.tflite           CNN trained on [0, 1] pixels; full-integer with uint8 I/O (scale 1/255, zp 0)
  photos_float.tflite           the same [0, 1] network, float32 I/O, no normalization stated anywhere
  teachable/model_unquant.tflite  Teachable-Machine style: float, trained on pixels scaled to [-1, 1];
  teachable/model.tflite          the same, full-integer int8 with int8 I/O (scale ~2/255);
  teachable/labels.txt            "0 animal" lines
  letters_int8.tflite           a 2-D features classifier: the 16 integer features of OpenCV's
                                letter-recognition.data (first 16000 rows) -> 26 letters, int8 I/O
  letters_4d_int8.tflite        the same features standardized and shaped [1, 4, 4, 1] (not an image: its int8
                                range is not a pixel range)
  digits_autoencoder_int8.tflite  a non-classifier: dense autoencoder of the 400 pixels of the embedded digits
"""

from __future__ import annotations

import json
import string
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # the repo: edgecnn's data helpers (numpy + OpenCV, no torch)

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from edgecnn.data import load_dataset  # noqa: E402
from edgecnn.data.photos import make_photo_patches  # noqa: E402

LETTERS = Path("/usr/share/doc/opencv-doc/examples/data/letter-recognition.data")
PHOTO_CLASSES = ["animal", "fruit", "circuit"]


def convert(model: keras.Model, calib: np.ndarray | None, io: str | None) -> bytes:
    """TF's converter: float (calib None), or full-integer int8 with `io` ("int8"|"uint8") I/O."""
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if calib is not None:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([calib[i : i + 1].astype(np.float32)] for i in range(len(calib)))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = {"int8": tf.int8, "uint8": tf.uint8}[io]
    return conv.convert()


def io_of(blob: bytes) -> dict:
    it = tf.lite.Interpreter(model_content=blob)
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    return {"input": [list(map(int, i["shape"])), np.dtype(i["dtype"]).name, list(i["quantization"])],
            "output": [list(map(int, o["shape"])), np.dtype(o["dtype"]).name, list(o["quantization"])]}


def tflite_accuracy(blob: bytes, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 of the converted file, its input fed the way its quantization says."""
    it = tf.lite.Interpreter(model_content=blob)
    it.allocate_tensors()
    d, o = it.get_input_details()[0], it.get_output_details()[0]
    hits = 0
    for xi, yi in zip(x, y):
        v = xi[None].astype(np.float32)
        if d["dtype"] != np.float32:
            s, z = d["quantization"]
            info = np.iinfo(d["dtype"])
            v = np.clip(np.round(v / s) + z, info.min, info.max).astype(d["dtype"])
        it.set_tensor(d["index"], v)
        it.invoke()
        hits += int(it.get_tensor(o["index"])[0].argmax() == yi)
    return hits / len(y)


def cnn(classes: int, shape: tuple, rescale: float | None = None) -> keras.Model:
    inp = keras.Input(shape)
    h = keras.layers.Rescaling(rescale)(inp) if rescale else inp
    for ch in (16, 32):
        h = keras.layers.Conv2D(ch, 3, padding="same", activation="relu")(h)
        h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inp, keras.layers.Dense(classes)(h))


def fit(model: keras.Model, x: np.ndarray, y: np.ndarray, epochs: int, loss: str = "sce") -> keras.Model:
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True) if loss == "sce" else loss)
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, shuffle=True)
    return model


def photos() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train/test RGB uint8 patches (32x32) in PHOTO_CLASSES order, from edgecnn.data.photos (seed 0)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = make_photo_patches(Path(tmp) / "p", size=32, splits=("train", "test"))
        ds = load_dataset(f"folder:{root}")
        order = [ds.classes.index(c) for c in PHOTO_CLASSES]
        out = []
        for split in ("train", "test"):
            images, labels = ds.split(split)
            out += [np.stack(list(images)).astype(np.uint8), np.array([order.index(v) for v in labels])]
    return tuple(out)  # type: ignore[return-value]


def letters() -> tuple[np.ndarray, np.ndarray]:
    rows = [ln.split(",") for ln in LETTERS.read_text().splitlines() if ln.strip()]
    y = np.array([string.ascii_uppercase.index(r[0]) for r in rows])
    x = np.array([[float(v) for v in r[1:]] for r in rows], np.float32)
    return x, y


def main() -> None:
    keras.utils.set_random_seed(0)
    made: dict[str, dict] = {}

    def save(name: str, blob: bytes, x: np.ndarray | None = None, y: np.ndarray | None = None) -> None:
        path = HERE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
        made[name] = {**io_of(blob), "bytes": len(blob)}
        if x is not None:
            made[name]["test_top1"] = round(tflite_accuracy(blob, x, y), 4)
        print(name, made[name], flush=True)

    xtr, ytr, xte, yte = photos()
    (HERE / "photos_labels.txt").write_text("\n".join(PHOTO_CLASSES) + "\n")
    raw = fit(cnn(3, (32, 32, 3), rescale=1 / 255), xtr.astype(np.float32), ytr, 25)
    save("photos_int8.tflite", convert(raw, xtr.astype(np.float32), "int8"), xte.astype(np.float32), yte)
    unit = fit(cnn(3, (32, 32, 3)), xtr / np.float32(255), ytr, 25)
    save("photos_uint8.tflite", convert(unit, xtr / np.float32(255), "uint8"), xte / np.float32(255), yte)
    save("photos_float.tflite", convert(unit, None, None), xte / np.float32(255), yte)
    pm1 = fit(cnn(3, (32, 32, 3)), xtr / np.float32(127.5) - 1, ytr, 25)
    (HERE / "teachable").mkdir(exist_ok=True)
    (HERE / "teachable" / "labels.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(PHOTO_CLASSES)))
    save("teachable/model_unquant.tflite", convert(pm1, None, None), xte / np.float32(127.5) - 1, yte)
    save("teachable/model.tflite", convert(pm1, xtr / np.float32(127.5) - 1, "int8"),
         xte / np.float32(127.5) - 1, yte)

    lx, ly = letters()
    (HERE / "letters_labels.txt").write_text("\n".join(string.ascii_uppercase) + "\n")
    dense = keras.Sequential([keras.Input((16,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(64, activation="relu"), keras.layers.Dense(26)])
    fit(dense, lx[:16000], ly[:16000], 30)
    save("letters_int8.tflite", convert(dense, lx[:2000], "int8"), lx[16000:], ly[16000:])
    mu, sd = lx[:16000].mean(0), lx[:16000].std(0)
    z = ((lx - mu) / sd).reshape(-1, 4, 4, 1).astype(np.float32)
    (HERE / "letters_4d_norm.json").write_text(json.dumps({"mean": mu.tolist(), "std": sd.tolist()}) + "\n")
    conv4 = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(32, 2, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(26)])
    fit(conv4, z[:16000], ly[:16000], 30)
    save("letters_4d_int8.tflite", convert(conv4, z[:2000], "int8"), z[16000:], ly[16000:])

    dx = load_dataset("digits").split("train")[0].reshape(-1, 400).astype(np.float32) / 255
    ae = keras.Sequential([keras.Input((400,)), keras.layers.Dense(32, activation="relu"),
                           keras.layers.Dense(400, activation="sigmoid")])
    fit(ae, dx, dx, 10, loss="mse")
    save("digits_autoencoder_int8.tflite", convert(ae, dx[:300], "int8"))

    (HERE / "MODELS.json").write_text(json.dumps({"tensorflow": tf.__version__, "keras": keras.__version__,
                                                  "files": made}, indent=1) + "\n")


if __name__ == "__main__":
    main()
