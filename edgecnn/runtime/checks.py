"""Does the loaded model agree with its manifest? Checked once when a `Classifier` opens a bundle.

`validate_manifest` (edgecnn/bundle.py) checks the manifest alone; this checks it against the model
file the backend loaded, so a wrong manifest fails at load with one line naming the mismatch instead
of an IndexError in `predict` or a raw engine error on the first frame:

- the model's input shape (where the engine reports it) is the manifest's C x H x W in the artifact's layout;
- one inference on a neutral input (zeros after normalization, i.e. the dataset-mean image) runs;
- that inference gives one finite logit per class label.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import EdgeCNNError
from ..preprocess import model_input_shape
from ..utils import first_line


def expected_input_shape(input_spec: dict, layout: str) -> tuple[int, int, int]:
    """The manifest's per-sample input shape in the artifact's layout (no batch dimension)."""
    c, h, w = model_input_shape(input_spec)
    return (h, w, c) if layout == "NHWC" else (c, h, w)


def check_model_matches_manifest(backend: Any, classes: list[str], input_spec: dict) -> None:
    """Raise EdgeCNNError (one line) when the backend's model disagrees with the manifest."""
    art = backend.artifact
    file = art.info["file"]
    features = input_spec.get("kind") == "features"
    want = model_input_shape(input_spec) if features else expected_input_shape(input_spec, art.layout)
    shape = getattr(backend, "input_shape", None)
    if shape is not None and len(shape) == len(want) + 1:
        got = tuple(shape[1:])
        if any(g > 0 and g != e for g, e in zip(got, want)):
            shown = "x".join("?" if g <= 0 else str(g) for g in got)
            raise EdgeCNNError(
                f"{file}: the model takes {art.layout} input {shown}, the manifest says "
                f"{'x'.join(map(str, want))} (input block or layout does not match this model)"
            )
    elif shape is not None:
        raise EdgeCNNError(f"{file}: the model's input has shape {tuple(shape)}, not "
                           + (f"a batch of {list(want)} features" if features else "a 4-D image batch"))
    probe = np.zeros((1, *model_input_shape(input_spec)), np.float32)
    shown_in = "x".join(map(str, probe.shape[1:]))
    try:
        logits = backend.infer(probe)
    except EdgeCNNError:
        raise
    except Exception as e:  # engines raise their own types; report them as one line
        raise EdgeCNNError(
            f"{file}: the model does not run on the manifest's input {shown_in} ({type(e).__name__}: "
            f"{first_line(e)})"
        ) from None
    n = int(np.asarray(logits).reshape(1, -1).shape[1])
    if n != len(classes):
        raise EdgeCNNError(f"{file}: the model outputs {n} values per {'sample' if features else 'image'}, "
                           f"the manifest lists {len(classes)} classes")
    if not np.isfinite(logits).all():
        raise EdgeCNNError(f"{file}: the model's output on a neutral input is not finite (NaN/inf weights?)")


def check_preprocessed(x: Any, input_spec: dict, batched: bool) -> np.ndarray:
    """A caller's already-preprocessed input: float CHW (or NCHW when `batched`), finite; else one line."""
    c, h, w = model_input_shape(input_spec)
    want = f"{'N x ' if batched else ''}{c} x {h} x {w}"
    arr = np.asarray(x)
    if batched and arr.ndim == 3:
        arr = arr[None]
    ok_shape = arr.shape[-3:] == (c, h, w) and arr.ndim == (4 if batched else 3)
    if not batched and arr.ndim == 4 and arr.shape[0] == 1 and arr.shape[1:] == (c, h, w):
        arr, ok_shape = arr[0], True
    if not ok_shape:
        raise EdgeCNNError(f"model input must be float32 {want} (channels x height x width, from "
                           f"preprocess()), got shape {tuple(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise EdgeCNNError(f"model input must be float32 {want}, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise EdgeCNNError("model input contains NaN or infinite values")
    return np.ascontiguousarray(arr, dtype=np.float32)
