"""`Classifier`: a bundle, one backend, and the manifest's preprocessing. numpy + OpenCV only.

    clf = Classifier("export/lenet5-digits")             # backend/precision "auto"
    result = clf.predict(frame)                          # an OpenCV BGR frame, any size
    result.top          # [("7", 0.98), ("1", 0.01), ...]   top-k (label, probability)
    result.probs        # float32 probabilities of every class
    result.timings      # {"preprocess": ms, "inference": ms, "postprocess": ms}

Images may be BGR (OpenCV) or RGB arrays (pass color_order="RGB"), greyscale HxW, HxWx4, CxHxW,
PIL images, file paths or encoded image bytes (PNG/JPEG/...). Float arrays follow one rule: values in
[0, 1] are scaled x255, values up to 255 are read as 0-255, anything else (and NaN/inf) is refused; see
`edgecnn.preprocess.to_uint8_image` and docs/runtime.md.

Preprocessing: `predict`/`predict_batch` take a frame straight to the artifact's own input (dtype and
layout) through the fast frame path (`edgecnn.runtime.frame.FramePath`: one resize pyramid on uint8,
one lookup-table pass for colour order, normalization, quantization and layout), then make ONE backend
call. `preprocessing="exact"` uses the reference instead: `edgecnn.preprocess.preprocess` with the
manifest's `input` block (the function the export verified the artifacts with) and `Backend.prepare`;
`Classifier.preprocess` is always the reference. The two agree bit for bit unless a large frame is
shrunk with area interpolation (docs/runtime.md gives the agreement measured on real video).
Everything that can be checked once is checked at load; a call checks only what the caller passed.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..bundle import Bundle
from ..errors import EdgeCNNError
from ..preprocess import input_kind, model_input_shape, preprocess, preprocess_features, softmax
from ..series import is_series, preprocess_series
from ..utils import first_line
from .backends import Backend, Selection
from .checks import check_model_matches_manifest, check_preprocessed
from .frame import FramePath
from .tune import choose

PREPROCESSING = ("fast", "exact")
_FEW_CLASSES = 64  # up to this many classes, predict's softmax and top-k run on Python floats (see _top1)
_F32 = np.dtype(np.float32)


@dataclass
class Prediction:
    """Top-k labels with probabilities, every class's probability, and stage timings in ms."""

    top: list[tuple[str, float]]
    probs: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.top[0][0]

    @property
    def confidence(self) -> float:
        return self.top[0][1]

    @property
    def index(self) -> int:
        return int(np.argmax(self.probs))

    # Behaves like the list of (label, prob) pairs it wraps.
    def __iter__(self) -> Iterator[tuple[str, float]]:
        return iter(self.top)

    def __getitem__(self, i: int) -> tuple[str, float]:
        return self.top[i]

    def __len__(self) -> int:
        return len(self.top)

    def to_dict(self) -> dict[str, Any]:
        return {
            "top": [{"label": lab, "prob": round(p, 6)} for lab, p in self.top],
            "ms": {k: round(v, 3) for k, v in self.timings.items()},
        }


class Classifier:
    """Image classification with a bundle on this device's best (or the named) backend."""

    def __init__(self, bundle: str | Path | Bundle, backend: str = "auto", precision: str = "auto",
                 threads: int | None = None, top_k: int = 5, check_integrity: bool = True,
                 tune: bool | str = True, preprocessing: str = "fast", **backend_options: Any):
        """backend/precision "auto" (default): the fastest candidate measured on this device within the
        bundle's accuracy budget, cached (`edgecnn.runtime.tune`); `describe()["why"]` says what was
        measured. Explicit backend + precision (+ threads) are used as given. tune=False: the rule
        `select` instead of a measurement; tune="fresh": measure again, ignoring the cache.
        preprocessing: "fast" (default, `edgecnn.runtime.frame`) or "exact" (the reference path)."""
        if top_k < 1:
            raise EdgeCNNError(f"top_k must be at least 1, got {top_k}")
        if preprocessing not in PREPROCESSING:
            raise EdgeCNNError(f"preprocessing must be fast or exact, got {preprocessing!r}")
        b = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
        self.bundle: Bundle = b
        self.selection: Selection
        self.backend: Backend
        self.selection, self.backend = choose(b, backend, precision, threads, tune=tune,
                                              check_integrity=check_integrity, backend_options=backend_options)
        self.classes: list[str] = list(b.classes)
        self.input_spec: dict = dict(b.input)
        try:  # the manifest against the model just loaded: class count, input shape, finite output
            check_model_matches_manifest(self.backend, self.classes, self.input_spec)
        except BaseException:
            self.backend.close()
            raise
        self.top_k = min(top_k, len(self.classes))
        self.preprocessing = preprocessing
        # Once, at load: what each call would otherwise look up or check again.
        self._chw = model_input_shape(self.input_spec)
        self._image = input_kind(self.input_spec) == "image"
        be = self.backend
        self._float_nchw = be.layout == "NCHW" and be.input_dtype == _F32 and be.input_quant is None
        self._infer_prepared = be.infer_prepared
        self._local = threading.local()  # per thread: a FramePath (it keeps buffers) and predict's input buffer
        # An engine that normalizes inside (Backend.frame_input) compiles its pixel-input model in the
        # background, started by a thread's second frame: a one-off classification never waits for that
        # second compilation (+50 ms for MobileNetV2 even from OpenVINO's blob cache, and at exit), and
        # a stream's frames take the artifact route until it is ready.
        self._engine_due = preprocessing == "fast" and self._image and type(be).frame_input is not Backend.frame_input
        self._engine_frames = False  # set once the engine's pixel input is ready
        self._engine_error: str | None = None
        self._engine_thread: threading.Thread | None = None
        self._engine_lock = threading.Lock()

    def _ready_engine_frames(self) -> None:
        try:
            self._engine_frames = self.backend.frame_input(self.input_spec) is not None
        except Exception as e:  # noqa: BLE001 - an engine that cannot build it keeps the artifact route
            self._engine_error = first_line(e)  # describe() says why

    def _fast(self) -> tuple[FramePath, np.ndarray, Callable[[np.ndarray], Any] | None]:
        """This thread's fast route: its frame path, the path's output buffer, and the engine's pixel-input
        call (`Backend.frame_input`; None: the frame path writes the artifact's own input)."""
        local = self._local
        fast = getattr(local, "fast", None)
        if fast is not None and (fast[2] is not None or not (self._engine_frames or self._engine_due)):
            return fast
        if fast is not None and self._engine_due:  # this thread's second frame: start the engine's compile
            with self._engine_lock:
                if self._engine_due:
                    self._engine_due = False
                    self._engine_thread = threading.Thread(target=self._ready_engine_frames,
                                                           name="edgecnn-frame-input")
                    self._engine_thread.start()
            return fast
        if not self._image:  # the reference's one line: a features or series bundle takes no images
            preprocess(None, self.input_spec)
        run = self.backend.frame_input(self.input_spec) if self._engine_frames else None
        path = FramePath.pixels(self.input_spec) if run else FramePath.for_backend(self.input_spec, self.backend)
        local.fast = (path, np.empty(path.shape, path.dtype), run)
        return local.fast

    def _artifact_path(self) -> FramePath:
        """This thread's frame path into the artifact's own input (batches: one backend call for all)."""
        local = self._local
        try:
            return local.artifact_path
        except AttributeError:
            local.artifact_path = FramePath.for_backend(self.input_spec, self.backend)
            return local.artifact_path

    # -- the three stages, usable on their own -------------------------------------------------
    def preprocess(self, image: Any, color_order: str = "BGR", layout: str = "auto") -> np.ndarray:
        """One image -> float32 CHW model input (the manifest's preprocessing)."""
        return preprocess(image, self.input_spec, color_order, layout=layout)

    def prepare(self, image: Any, color_order: str = "BGR", layout: str = "auto",
                out: np.ndarray | None = None) -> np.ndarray:
        """One image -> what `infer_prepared` takes: the artifact's own input, shape (1, ...) in its layout and
        dtype; or, where the engine normalizes inside (`Backend.frame_input`: OpenVINO), the image's uint8
        pixels (1, H, W, C), BGR.

        The fast frame path, or the reference path (always the artifact's input) with preprocessing="exact".
        A new array each call unless `out` (a C-contiguous array of that shape and dtype) is given: safe to
        hand to another thread.
        """
        if self.preprocessing == "exact":
            x = self.backend.prepare(preprocess(image, self.input_spec, color_order, layout=layout)[None])
            if out is None:
                return x
            out[...] = x
            return out
        return self._fast()[0](image, color_order, layout, out)

    def infer_prepared(self, x: np.ndarray) -> np.ndarray:
        """Input from `prepare` (batch first) -> float32 logits (N, classes)."""
        if x.dtype == np.uint8 and self.backend.input_dtype != np.uint8:  # pixels for the engine's own step
            path, _, run = self._fast()
            if run is None or x.shape != path.shape:
                raise EdgeCNNError(f"infer_prepared takes prepare's output ({self.backend.input_dtype} input), "
                                   f"got uint8 {tuple(x.shape)}")
            return self.backend.finish(run(x))
        return self._infer_prepared(x)

    def _checked(self, x: Any, batched: bool, given: Any = None) -> np.ndarray:
        """A caller's float32 NCHW input: the common case checked in a few cheap tests, anything else in full."""
        if type(x) is np.ndarray and x.dtype == _F32 and x.ndim == 4 and x.shape[1:] == self._chw \
                and x.flags.c_contiguous and (batched or len(x) == 1):
            # One pass without a temporary; only a non-finite result (NaN/inf, or an overflow) looks closer.
            # Small inputs take a dot product (a third of sum's fixed cost; BLAS stays single-threaded
            # below 10,000 elements), large ones a sum.
            flat = x.ravel()
            if math.isfinite(flat.dot(flat) if flat.size <= 8192 else flat.sum()) or np.isfinite(x).all():
                return x
            raise EdgeCNNError("model input contains NaN or infinite values")
        x = check_preprocessed(x if given is None else given, self.input_spec, batched=batched)
        return x if batched else x[None]

    def infer_preprocessed(self, x_nchw: np.ndarray) -> np.ndarray:
        """float32 NCHW batch (from `preprocess`) -> float32 logits (N, classes) through the backend."""
        x = self._checked(x_nchw, True)
        return self._infer_prepared(x if self._float_nchw else self.backend.prepare(x))

    def postprocess(self, logits: np.ndarray) -> tuple[np.ndarray, list[list[tuple[str, float]]]]:
        """Logits (N, classes) -> probabilities and top-k (label, prob) lists."""
        probs = softmax(logits.astype(np.float32))
        order = np.argsort(-probs, axis=1)[:, : self.top_k]
        tops = [[(self.classes[j], float(p[j])) for j in row] for p, row in zip(probs, order)]
        return probs, tops

    def top_of(self, probs: np.ndarray) -> list[tuple[str, float]]:
        """Top-k of one probability vector (e.g. after temporal smoothing)."""
        order = np.argsort(-probs)[: self.top_k]
        return [(self.classes[j], float(probs[j])) for j in order]

    # -- one call ------------------------------------------------------------------------------
    def predict(self, image: Any, color_order: str = "BGR", layout: str = "auto") -> Prediction:
        """Classify one image; timings are this call's stages in milliseconds.

        `layout` ("auto" | "HWC" | "CHW") says how a 3-D array is ordered; "auto" refuses a shape
        that could be either (e.g. 3x32x3) rather than guess.
        """
        if input_kind(self.input_spec) == "features":
            raise EdgeCNNError(f"{self.bundle.path}: this bundle takes features, not images: use "
                               "predict_features(array) (or `edgecnn classify BUNDLE x.npy`)")
        t0 = time.perf_counter()
        run = None
        if self.preprocessing == "fast":
            path, buffer, run = self._fast()
            x = path(image, color_order, layout, buffer)
        else:
            x = self.prepare(image, color_order, layout)
        t1 = time.perf_counter()
        logits = self.backend.finish(run(x)) if run is not None else self._infer_prepared(x)
        t2 = time.perf_counter()
        probs, top = self._top1(logits)
        t3 = time.perf_counter()
        timings = {"preprocess": 1e3 * (t1 - t0), "inference": 1e3 * (t2 - t1), "postprocess": 1e3 * (t3 - t2)}
        return Prediction(top, probs, timings)

    def _top1(self, logits: np.ndarray) -> tuple[np.ndarray, list[tuple[str, float]]]:
        """One row of logits -> probabilities and its top-k (`postprocess` for a batch of one, fewer steps)."""
        z = logits[0]
        k = self.top_k
        if len(z) <= _FEW_CLASSES:
            # Right after the backend call numpy's code is out of cache: each distinct numpy call costs
            # ~5 us there, and plain Python floats reach the same result in a third of the time.
            vals = z.tolist()
            m = max(vals)
            e = [math.exp(v - m) for v in vals]
            total = sum(e)
            probs = np.array([v / total for v in e], np.float32)
            p = probs.tolist()
            order = sorted(range(len(p)), key=p.__getitem__, reverse=True)[:k]
            return probs, [(self.classes[j], p[j]) for j in order]
        e = np.exp(z - z.max())
        probs = (e / e.sum()).astype(np.float32, copy=False)
        order = np.argsort(-probs)[:k] if k > 1 else (int(probs.argmax()),)
        return probs, [(self.classes[j], float(probs[j])) for j in order]

    def predict_features(self, x: Any) -> Prediction:
        """Classify one sample of a features bundle (manifest `input.kind` "features", e.g. an imported model
        whose input is not an image): an array of the model's input shape, values in its float domain."""
        if input_kind(self.input_spec) != "features":
            raise EdgeCNNError(f"{self.bundle.path}: this bundle takes {input_kind(self.input_spec)} input, not features")
        t0 = time.perf_counter()
        batch = preprocess_features(x, self.input_spec)
        if len(batch) != 1:
            raise EdgeCNNError(f"predict_features takes one sample of shape {list(self.input_spec['shape'])}, "
                               f"got a batch of {len(batch)}")
        return self._infer_one(batch, t0)

    def predict_series(self, window: Any) -> Prediction:
        """Classify one window of a series bundle: samples x channels, shape (T, C) or (T,) for one channel.

        Preprocessing is `edgecnn.series.preprocess_series` with the manifest's input block (padding or
        cutting to its length, standardization, the audio front end), as at training and export.
        """
        if not is_series(self.input_spec):
            raise EdgeCNNError(f"{self.bundle.name} is an image bundle: use predict(image), not predict_series")
        t0 = time.perf_counter()
        return self._infer_one(preprocess_series(window, self.input_spec)[None], t0)

    def _infer_one(self, x: np.ndarray, t0: float) -> Prediction:
        """One float32 sample (batch of 1) through the backend; `t0`: when its preprocessing began."""
        t1 = time.perf_counter()
        logits = self.backend.infer(x)
        t2 = time.perf_counter()
        probs, tops = self.postprocess(logits)
        t3 = time.perf_counter()
        timings = {"preprocess": 1e3 * (t1 - t0), "inference": 1e3 * (t2 - t1), "postprocess": 1e3 * (t3 - t2)}
        return Prediction(tops[0], probs[0], timings)

    def predict_preprocessed(self, x_chw: np.ndarray) -> Prediction:
        """`predict` minus image preprocessing: one float32 CHW input (from `preprocess`) -> result."""
        t1 = time.perf_counter()
        x = self._checked(x_chw[None] if type(x_chw) is np.ndarray and x_chw.ndim == 3 else x_chw, False, x_chw)
        logits = self._infer_prepared(x if self._float_nchw else self.backend.prepare(x))
        t2 = time.perf_counter()
        probs, tops = self.postprocess(logits)
        t3 = time.perf_counter()
        return Prediction(tops[0], probs[0], {"inference": 1e3 * (t2 - t1), "postprocess": 1e3 * (t3 - t2)})

    def predict_batch(self, images: Sequence[Any], color_order: str = "BGR") -> list[Prediction]:
        """Classify several images in one backend call; each result carries the per-image share of the timings."""
        if len(images) == 0:
            return []
        t0 = time.perf_counter()
        if self.preprocessing == "fast":
            path = self._artifact_path()
            x = np.empty((len(images), *path.shape[1:]), path.dtype)
            for i, im in enumerate(images):
                path(im, color_order, "auto", x[i : i + 1])
        else:
            x = self.backend.prepare(np.stack([preprocess(im, self.input_spec, color_order) for im in images]))
        t1 = time.perf_counter()
        logits = self._infer_prepared(x)
        t2 = time.perf_counter()
        probs, tops = self.postprocess(logits)
        t3 = time.perf_counter()
        n = len(images)
        timings = {"preprocess": 1e3 * (t1 - t0) / n, "inference": 1e3 * (t2 - t1) / n,
                   "postprocess": 1e3 * (t3 - t2) / n}
        return [Prediction(t, p, dict(timings)) for t, p in zip(tops, probs)]

    def describe(self) -> dict[str, Any]:
        route = self.preprocessing
        if route == "fast" and self._engine_frames:
            route = "fast, normalized in the engine"
        elif route == "fast" and self._engine_error:
            route = f"fast (the engine's pixel input failed: {self._engine_error})"
        return {"bundle": str(self.bundle.path), "name": self.bundle.name, **self.backend.describe(),
                "why": self.selection.reason, "preprocessing": route}

    def wait_ready(self) -> None:
        """Wait for what this Classifier prepares in the background (an engine's pixel-input model, started
        by the second frame) to be ready; results meanwhile come from the artifact route, the same up to
        float rounding. Benchmarks call it so that every timed call takes one route."""
        if self._engine_thread is not None:
            self._engine_thread.join()

    def close(self) -> None:
        self.wait_ready()  # not while it compiles: the engine is released below
        self.backend.close()

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
