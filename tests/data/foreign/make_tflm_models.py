"""Make the small int8 .tflite files of the TFLM / profile tests with TensorFlow's own converter.

Run once, in a separate venv with tensorflow-cpu (CI never needs TensorFlow; the files are committed):

    python -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu
    /tmp/tfvenv/bin/python tests/data/foreign/make_tflm_models.py

Files (full-integer int8, int8 input and output, TFLiteConverter + representative dataset):
  profile_autoencoder.tflite  dense autoencoder [1, 640] -> [1, 640] (MLPerf Tiny AD01's shape; a non-classifier).
                              Trained a few epochs on synthetic smooth spectra: it is for `edgecnn profile`,
                              not for its reconstruction quality.
  profile_kws_dscnn.tflite    DS-CNN keyword spotter on [1, 49, 10, 1] MFCC-like features, 12 classes
                              (MLPerf Tiny KWS's shape). No speech data here: a few steps on random features,
                              calibrated on features in a typical MFCC range. For profiling and TFLM only.
  tflm_digits_int8.tflite     small CNN on [1, 20, 20, 1], 10 classes, trained on the embedded real digits
                              (edgecnn/data/assets/digits.npz, edgecnn's own train split), input [0, 1] pixels.
                              The TFLM verification with --data digits uses it.
  tflm_gelu_op.tflite         the digits CNN with a GELU activation: an op TensorFlow Lite Micro has no kernel
                              for (the bad-input test of --formats tflm).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

HERE = Path(__file__).resolve().parent
DIGITS = HERE.parents[2] / "edgecnn" / "data" / "assets" / "digits.npz"
tf.keras.utils.set_random_seed(0)


def stratified_split(labels: np.ndarray, fractions: dict[str, float], seed: int = 0) -> dict[str, np.ndarray]:
    """Copy of edgecnn.data.datasets.stratified_split (this venv has no edgecnn deps): the same digits split."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {k: [] for k in fractions}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        start = 0
        names = list(fractions)
        for i, k in enumerate(names):
            n = len(idx) - start if i == len(names) - 1 else int(round(fractions[k] * len(idx)))
            out[k].append(idx[start : start + n])
            start += n
    return {k: np.sort(np.concatenate(v)) for k, v in out.items()}


def int8_tflite(model: tf.keras.Model, calib: np.ndarray, path: Path) -> None:
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([calib[i : i + 1].astype(np.float32)] for i in range(len(calib)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    data = conv.convert()
    path.write_bytes(data)
    it = tf.lite.Interpreter(model_content=data)
    ops = sorted({d["op_name"] for d in it._get_ops_details()})
    print(f"{path.name}: {len(data):,} bytes, in {it.get_input_details()[0]['shape']} "
          f"{it.get_input_details()[0]['quantization']}, ops {ops}")


def autoencoder_model(batch: int | None) -> tf.keras.Model:
    inp = tf.keras.Input((640,), batch_size=batch)
    h = inp
    for n in (32, 32, 8, 32, 32):
        h = tf.keras.layers.Dense(n)(h)
        h = tf.keras.layers.BatchNormalization()(h)
        h = tf.keras.layers.ReLU()(h)
    return tf.keras.Model(inp, tf.keras.layers.Dense(640)(h))


def trained_batch1(build, x: np.ndarray, y: np.ndarray, loss, epochs: int, **compile_kw) -> tuple:
    """Train `build(None)` (any batch), copy its weights into `build(1)`: TFLM models have batch 1, fixed shapes."""
    train = build(None)
    train.compile("adam", loss, **compile_kw)
    train.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    model = build(1)
    model.set_weights(train.get_weights())
    return model, train


def autoencoder() -> None:
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 640, dtype=np.float32)
    x = np.stack([np.sin(2 * np.pi * (f * t + p)) * a for f, p, a in
                  zip(rng.uniform(1, 8, 2000), rng.uniform(0, 1, 2000), rng.uniform(0.5, 2, 2000))])
    x = (x + 0.1 * rng.standard_normal(x.shape)).astype(np.float32)
    model, _ = trained_batch1(autoencoder_model, x, x, "mse", 3)
    int8_tflite(model, x[:200], HERE / "profile_autoencoder.tflite")


def kws_model(batch: int | None) -> tf.keras.Model:
    inp = tf.keras.Input((49, 10, 1), batch_size=batch)
    h = tf.keras.layers.Conv2D(64, (10, 4), strides=(2, 2), padding="same", use_bias=False)(inp)
    h = tf.keras.layers.ReLU()(tf.keras.layers.BatchNormalization()(h))
    for _ in range(4):
        h = tf.keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(h)
        h = tf.keras.layers.ReLU()(tf.keras.layers.BatchNormalization()(h))
        h = tf.keras.layers.Conv2D(64, 1, use_bias=False)(h)
        h = tf.keras.layers.ReLU()(tf.keras.layers.BatchNormalization()(h))
    h = tf.keras.layers.GlobalAveragePooling2D()(h)
    return tf.keras.Model(inp, tf.keras.layers.Dense(12, activation="softmax")(h))


def kws_dscnn() -> None:
    rng = np.random.default_rng(1)
    x = np.clip(rng.normal(-30, 25, (256, 49, 10, 1)), -120, 30).astype(np.float32)
    y = rng.integers(0, 12, 256)
    model, _ = trained_batch1(kws_model, x, y, "sparse_categorical_crossentropy", 1)
    int8_tflite(model, x[:100], HERE / "profile_kws_dscnn.tflite")


def digits_cnn(activation: str, batch: int | None) -> tf.keras.Model:
    inp = tf.keras.Input((20, 20, 1), batch_size=batch)
    h = tf.keras.layers.Conv2D(8, 3, padding="same", activation=activation)(inp)
    h = tf.keras.layers.MaxPooling2D()(h)
    h = tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu")(h)
    h = tf.keras.layers.MaxPooling2D()(h)
    h = tf.keras.layers.Flatten()(h)
    return tf.keras.Model(inp, tf.keras.layers.Dense(10)(h))


def digits() -> None:
    with np.load(DIGITS) as z:
        images, labels = z["images"], z["labels"].astype(np.int64)
    parts = stratified_split(labels, {"train": 0.72, "val": 0.08, "test": 0.20}, seed=0)
    x = (images.astype(np.float32) / 255.0)[..., None]
    xtr, ytr, xte, yte = x[parts["train"]], labels[parts["train"]], x[parts["test"]], labels[parts["test"]]
    for activation, name, epochs in (("relu", "tflm_digits_int8.tflite", 12), ("gelu", "tflm_gelu_op.tflite", 1)):
        model, train = trained_batch1(lambda b, a=activation: digits_cnn(a, b), xtr, ytr,
                                      tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), epochs,
                                      metrics=["accuracy"])
        print(f"{name}: float test accuracy {train.evaluate(xte, yte, verbose=0)[1]:.4f} on {len(yte)} digits")
        int8_tflite(model, xtr[:200], HERE / name)


if __name__ == "__main__":
    autoencoder()
    kws_dscnn()
    digits()
