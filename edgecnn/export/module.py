"""`export_model`: any live `nn.Module` -> verified bundle, with the machinery of `export_bundle`.

    import edgecnn
    edgecnn.export_model(model, "export/mynet", input_size=(1, 28, 28), classes=names,
                         mean=[0.286], std=[0.353], calib="fashion-mnist", test="fashion-mnist", int8=True)

`calib` / `test` take a dataset name (`digits`, `fashion-mnist`, `folder:PATH`, ...: its train /
test split) or numpy arrays: uint8 images (N x H x W, or N x H x W x C in RGB order) with labels,
as `(images, labels)`; calibration needs no labels, so `images` alone also works there. Without
`test` the artifacts are verified for parity with PyTorch on the calibration images and the manifest
records that accuracy was not measured.

Series models (a Conv1d network on sensor windows; docs/sensors.md):

    edgecnn.export_model(net, "export/mynet", input_size=(6, 100), kind="series", classes=names,
                         mean=per_channel_mean, std=per_channel_std, sample_rate=10, test="ts:DIR")

`input_size` is (channels, length); the module takes (N, C, T) (it is wrapped to take the bundle's
[N, C, 1, T]) or already [N, C, 1, T]; `calib`/`test` are a ts:/csv:/wav: dataset or
`(windows, labels)` with float windows shaped (T, C).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..data import Dataset, load_dataset, preprocessed
from ..errors import EdgeCNNError
from ..train.program import input_spec
from .api import (
    DEFAULT_CALIB_SIZE,
    SAMPLES_PER_CLASS,
    _check_out_dir,
    _check_tflm_request,
    _write_samples,
    build_bundle,
    parse_formats,
)

DataArg = Any  # str | (images, labels) | images


def as_dataset(data: DataArg, split: str, classes: list[str], channels: int, *, what: str,
               need_labels: bool, data_root: str | None = None, spec: dict | None = None) -> tuple[Dataset, str]:
    """A dataset name or numpy arrays -> (Dataset holding `split`, the name to record)."""
    if spec is not None and spec.get("kind") == "series" and not isinstance(data, (str, Path)):
        return _series_arrays(data, split, classes, spec, what=what, need_labels=need_labels)
    if isinstance(data, (str, Path)):
        name = str(data)
        ds = load_dataset(name, data_root, input_spec=spec)
        if ds.channels != channels:
            raise EdgeCNNError(f"{what} dataset '{name}' has {ds.channels}-channel images; the model takes {channels}")
        if need_labels and len(ds.classes) != len(classes):
            raise EdgeCNNError(f"{what} dataset '{name}' has {len(ds.classes)} classes; `classes` lists {len(classes)}")
        return ds, ds.name
    labels = None
    if isinstance(data, (tuple, list)) and len(data) == 2 and not isinstance(data[0], (int, float)):
        images, labels = data
    else:
        images = data
    if labels is None and need_labels:
        raise EdgeCNNError(f"{what}: give (images, labels), or a dataset name")
    try:
        images = [np.asarray(im) for im in images]
    except TypeError:
        raise EdgeCNNError(f"{what} must be a dataset name, (images, labels) or an array of images") from None
    if not images:
        raise EdgeCNNError(f"{what}: no images")
    for im in images[:1]:
        if im.dtype != np.uint8 or im.ndim not in (2, 3) or (im.ndim == 3 and im.shape[2] not in (1, 3)):
            raise EdgeCNNError(f"{what}: images must be uint8 HxW or HxWxC (C = 1 or 3), got {im.dtype} "
                               f"{'x'.join(map(str, im.shape))}")
    c = 1 if images[0].ndim == 2 or images[0].shape[2] == 1 else 3
    if c != channels:
        raise EdgeCNNError(f"{what}: {c}-channel images; the model takes {channels}")
    if labels is None:
        y = np.zeros(len(images), np.int64)
    else:
        y = np.asarray(labels).astype(np.int64).reshape(-1)
        if len(y) != len(images):
            raise EdgeCNNError(f"{what}: {len(images)} images but {len(y)} labels")
        if len(y) and (y.min() < 0 or y.max() >= len(classes)):
            raise EdgeCNNError(f"{what}: labels must be in 0..{len(classes) - 1} (one per class name)")
    zeros = (0.0,) * channels
    ds = Dataset(name="arrays", classes=list(classes), channels=channels, mean=zeros, std=(1.0,) * channels,
                 natural=False, splits={split: (images, y)})
    return ds, "arrays"


def _series_arrays(data: DataArg, split: str, classes: list[str], spec: dict, *, what: str,
                   need_labels: bool) -> tuple[Dataset, str]:
    """(windows, labels) or windows: float arrays shaped (T, C) -> a series Dataset."""
    from ..series import as_window

    if isinstance(data, (tuple, list)) and len(data) == 2 and not np.isscalar(data[0]) and \
            np.asarray(data[1]).ndim == 1 and len(data[1]) == len(data[0]) and np.asarray(data[0][0]).ndim >= 1:
        windows, labels = data
    else:
        windows, labels = data, None
    if labels is None and need_labels:
        raise EdgeCNNError(f"{what}: give (windows, labels), or a dataset name (ts:DIR, csv:DIR, wav:DIR)")
    items = [as_window(w, int(spec["channels"])) for w in windows]
    if not items:
        raise EdgeCNNError(f"{what}: no windows")
    y = np.zeros(len(items), np.int64) if labels is None else np.asarray(labels).astype(np.int64).reshape(-1)
    if len(y) != len(items) or (len(y) and (y.min() < 0 or y.max() >= len(classes))):
        raise EdgeCNNError(f"{what}: {len(items)} windows need {len(items)} labels in 0..{len(classes) - 1}")
    c = int(spec["channels"])
    return Dataset(name="arrays", classes=list(classes), channels=c, mean=(0.0,) * c, std=(1.0,) * c,
                   natural=False, splits={split: (items, y)}, kind="series", length=int(spec["length"]),
                   sample_rate=spec.get("sample_rate"), frontend=spec.get("frontend")), "arrays"


def series_module(model, spec: dict):
    """A module for the bundle's [N, C', 1, T'] input: `model` itself when it takes that, else `model` after
    dropping the H = 1 axis (a Conv1d network on (N, C, T)). litert-torch lays the Conv1d layers out as
    H = 1 NHWC CONV_2D / DEPTHWISE_CONV_2D (checked in tests/test_series_tflm.py)."""
    import torch
    from torch import nn

    from ..preprocess import model_input_shape

    c, _, t = model_input_shape(spec)
    with torch.no_grad():
        try:
            model(torch.zeros(2, c, t))
        except Exception:
            return model  # not a (N, C, T) module: export_program says what it does take
    class SeriesInput(nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x.squeeze(2))

    return SeriesInput(model).eval()


def weights_sha256(model) -> str:
    """A fingerprint of the module's weights (the bundle's source when there is no checkpoint file)."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _first_image(ds: Dataset | None, classes: list[str]) -> tuple[np.ndarray, str] | None:
    """The first labelled test image, embedded in the TFLM example firmware (None without test data)."""
    if ds is None:
        return None
    images, labels = ds.split("test")
    return (np.asarray(images[0]), classes[int(np.asarray(labels)[0])]) if len(labels) else None


def export_model(model, out: str | Path, *, input_size: Sequence[int], classes: Sequence[str],
                 mean: Sequence[float], std: Sequence[float], color: str | None = None, resize: str = "stretch",
                 calib: DataArg = None, test: DataArg = None, formats: str | Iterable[str] = ("onnx", "tflite"),
                 int8: bool = False, fp16: bool = False, max_drop: float = 1.0, calib_size: int = DEFAULT_CALIB_SIZE,
                 data_root: str | None = None, name: str | None = None, force: bool = False,
                 device: str | None = None, log: Callable[[str], None] = print, kind: str = "image",
                 sample_rate: float | None = None, frontend: dict | None = None) -> Path:
    """Export any classification nn.Module (float logits out) to a verified bundle; returns its path.

    Same artifacts, verification, manifest, REPORT.md and atomic staging as `edgecnn export`
    (formats may include "tflm" with int8; `device` names an MCU profile to check the fit on).
    `kind="series"`: `input_size` is (channels, length) of a sensor window (module docstring).
    """
    from torch import nn

    if not isinstance(model, nn.Module):
        raise EdgeCNNError(f"export_model takes a torch.nn.Module, got {type(model).__name__} "
                           "(for a checkpoint file use edgecnn.export.api.export_bundle or `edgecnn export`)")
    fmts = parse_formats(formats)
    classes = [str(c) for c in classes]
    if not classes:
        raise EdgeCNNError("classes must name at least one class")
    if int8 and calib is None:
        raise EdgeCNNError("int8 needs calibration data: pass calib= (a dataset name or uint8 images)")
    if calib is None and test is None:
        raise EdgeCNNError("export_model needs test= (labelled data, measures accuracy) or calib= (parity only) "
                           "to verify the export")
    if max_drop < 0:
        raise EdgeCNNError(f"max_drop must be >= 0, got {max_drop}")
    if "tflm" in fmts or device:
        _check_tflm_request(fmts, int8, device)
    if kind not in ("image", "series"):
        raise EdgeCNNError(f"kind must be image or series, got {kind!r}")
    model = model.eval()
    if kind == "series":
        from ..series import series_spec

        if len(input_size) != 2:
            raise EdgeCNNError(f"a series model's input_size is (channels, length), got {tuple(input_size)}")
        spec = series_spec(int(input_size[0]), int(input_size[1]), mean, std, sample_rate, frontend)
        model = series_module(model, spec)
    else:
        spec = input_spec(input_size, mean, std, color, resize)
    from ..train.program import export_program

    export_program(model, spec, len(classes))  # one clear error for a module that does not trace
    out = Path(out)
    sha = weights_sha256(model)
    _check_out_dir(out, sha, force, log)

    x_calib = calib_name = None
    if calib is not None:
        cds, calib_name = as_dataset(calib, "train", classes, spec["channels"], what="calib", need_labels=False,
                                     data_root=data_root, spec=spec)
        x_calib, _ = preprocessed(cds, "train", spec, calib_size)
        log(f"calibration: {len(x_calib)} images from {calib_name}")
    if test is not None:
        tds, test_name = as_dataset(test, "test", classes, spec["channels"], what="test", need_labels=True,
                                    data_root=data_root, spec=spec)
        x_test, y_test = preprocessed(tds, "test", spec)
        verification = {"dataset": test_name, "split": "test"}
    else:
        log("no test data: verifying parity with PyTorch on the calibration images; accuracy is not measured")
        tds, x_test, y_test = None, x_calib, None
        verification = {"dataset": calib_name, "split": "train"}

    def samples(stage: Path) -> list[dict]:
        if tds is None:
            return []
        from .verify import torch_logits

        return _write_samples(stage, tds, classes, SAMPLES_PER_CLASS, lambda x: torch_logits(model, x), spec)

    return build_bundle(
        model, out, fmts, fp16=fp16, int8=int8, spec=spec, classes=classes, x_test=x_test, y_test=y_test,
        x_calib=x_calib, verification=verification, max_drop=max_drop, name=name, log=log, samples=samples,
        model_block={"name": type(model).__name__, "kwargs": {}},
        source={"checkpoint": None, "module": f"{type(model).__module__}.{type(model).__qualname__}",
                "sha256": sha, "dataset": verification["dataset"] if y_test is not None else None,
                "accuracy": None},
        calibration={"dataset": calib_name, "split": "train", "samples": int(len(x_calib))}
        if x_calib is not None else None,
        device=device, tflm_sample=_first_image(tds, classes), source_name=type(model).__name__,
    )
