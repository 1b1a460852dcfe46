"""Series (sensor and audio) input: the ONE preprocessing of a window of samples. numpy only, never torch.

A series bundle's manifest `input` block (`kind: "series"`; image blocks have no kind, or `"image"`):

    kind         "series"
    channels     C: sensor channels of a window (samples x channels); 1 for mono audio
    length       T: samples per window
    sample_rate  samples per second (Hz), or null when the data does not record it (UCR/UEA archives)
    mean, std    per-channel standardization: C values; with a front end, one value per feature (F)
    layout       "NC1T": the model input is float32 [N, C', 1, T'] (NCHW with H=1, so TFLite/TFLM
                 see H=1 NHWC convolutions [N, 1, T', C']); C' x T' = C x T without a front end,
                 features x frames with one
    frontend     null, or the audio front end's parameters (see `FRONTEND_DEFAULTS`)

`preprocess_series(window, spec)` is what training, evaluation, export verification and the device
runtime all call:

1. `window` is float samples shaped (t, C) (or (t,) when C = 1); integer samples are taken as they
   are (sensor counts); t != T is padded at the end with the channel mean or cut to its first T
   samples (unequal-length datasets; a streaming runtime passes exactly T);
2. missing values (NaN) become the channel mean, i.e. 0 after standardization;
3. without a front end: (x - mean) / std per channel, transposed to [C, 1, T];
4. with a front end (mono audio, samples in [-1, 1]): `features(window, frontend)` -> F x frames,
   then (f - mean) / std per feature -> [F, 1, frames].

The front end (`features`): frames of `window_ms` every `hop_ms` (no centring, no padding: frames =
1 + (T - win) // hop), a periodic Hann window, |rFFT|^2 with `n_fft` points, a triangular mel
filterbank (HTK mel scale, `n_mels` bands between `fmin` and `fmax`, unnormalized triangles of peak
1), natural log of (energy + `log_offset`), then for "mfcc" a DCT-II (orthonormal) keeping the first
`n_mfcc` coefficients. docs/sensors.md states the same steps for a C implementation on a TFLM target.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import EdgeCNNError

KIND = "series"
LAYOUT = "NC1T"
FRONTENDS = ("mfcc", "logmel")
# A window longer than this is a corrupt or hostile manifest (1 M samples = 62 s of 16 kHz audio).
MAX_LENGTH = 1 << 20
MAX_CHANNELS = 1024
FRONTEND_DEFAULTS: dict[str, Any] = {
    "type": "mfcc",        # "mfcc" | "logmel"
    "window_ms": 40.0,     # frame length (the KWS DS-CNN recipe: 40 ms frames every 20 ms, 49 frames a second)
    "hop_ms": 20.0,
    "n_fft": 1024,         # FFT points (>= frame samples; a power of two)
    "n_mels": 40,
    "fmin": 20.0,
    "fmax": 4000.0,        # <= sample_rate / 2
    "log_offset": 1e-6,    # log(energy + offset)
    "n_mfcc": 10,          # "mfcc" only: coefficients kept
}


def is_series(spec: Any) -> bool:
    """Is this manifest `input` block a series one (image blocks have no kind or kind "image")?"""
    return isinstance(spec, dict) and spec.get("kind") == KIND


def _fail(where: str, msg: str) -> EdgeCNNError:
    return EdgeCNNError(f"{where}: {msg}")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def frame_geometry(frontend: dict, sample_rate: float) -> tuple[int, int]:
    """(frame length, hop) in samples for a front end at `sample_rate`."""
    win = int(round(frontend["window_ms"] * sample_rate / 1000.0))
    hop = int(round(frontend["hop_ms"] * sample_rate / 1000.0))
    return win, hop


def feature_count(frontend: dict) -> int:
    return int(frontend["n_mfcc"] if frontend["type"] == "mfcc" else frontend["n_mels"])


def model_shape(spec: dict) -> tuple[int, int, int]:
    """The model's per-window input [C', 1, T'] for a series `input` block."""
    fe = spec.get("frontend")
    if not fe:
        return int(spec["channels"]), 1, int(spec["length"])
    win, hop = frame_geometry(fe, float(spec["sample_rate"]))
    return feature_count(fe), 1, 1 + (int(spec["length"]) - win) // hop


def validate_frontend(fe: Any, spec: dict, where: str) -> None:
    if not isinstance(fe, dict):
        raise _fail(where, "frontend must be an object or null")
    if fe.get("type") not in FRONTENDS:
        raise _fail(where, f"frontend.type must be one of {'|'.join(FRONTENDS)}, got {fe.get('type')!r}")
    keys = [k for k in FRONTEND_DEFAULTS if k != "type" and (k != "n_mfcc" or fe["type"] == "mfcc")]
    for k in keys:
        if not _number(fe.get(k)) or fe[k] < 0:
            raise _fail(where, f"frontend.{k} must be a finite number >= 0, got {fe.get(k)!r}")
    if spec["channels"] != 1:
        raise _fail(where, f"an audio front end takes one channel (mono), the input has {spec['channels']}")
    sr = spec.get("sample_rate")
    if not _number(sr) or sr <= 0:
        raise _fail(where, "an audio front end needs sample_rate (Hz)")
    win, hop = frame_geometry(fe, sr)
    if win < 2 or hop < 1:
        raise _fail(where, f"frontend frames of {win} samples every {hop} at {sr:g} Hz are too short")
    n_fft = fe["n_fft"]
    if not isinstance(n_fft, int) or n_fft < win or n_fft & (n_fft - 1):
        raise _fail(where, f"frontend.n_fft must be a power of two >= the frame ({win} samples), got {n_fft!r}")
    if not 0 <= fe["fmin"] < fe["fmax"] <= sr / 2:
        raise _fail(where, f"frontend needs 0 <= fmin < fmax <= sample_rate/2 ({sr / 2:g}), "
                           f"got {fe['fmin']:g}..{fe['fmax']:g}")
    for k in ("n_mels", "n_mfcc") if fe["type"] == "mfcc" else ("n_mels",):
        if not isinstance(fe[k], int) or fe[k] < 1:
            raise _fail(where, f"frontend.{k} must be a positive integer, got {fe[k]!r}")
    if fe["type"] == "mfcc" and fe["n_mfcc"] > fe["n_mels"]:
        raise _fail(where, f"frontend.n_mfcc ({fe['n_mfcc']}) cannot exceed n_mels ({fe['n_mels']})")
    if spec["length"] < win:
        raise _fail(where, f"length {spec['length']} is shorter than one frontend frame ({win} samples)")


def validate_series_input(spec: dict, where: str) -> None:
    """Check a series `input` block (see the module docstring); raise EdgeCNNError naming the field."""
    c, t = spec.get("channels"), spec.get("length")
    if not isinstance(c, int) or isinstance(c, bool) or not 1 <= c <= MAX_CHANNELS:
        raise _fail(where, f"channels must be an integer between 1 and {MAX_CHANNELS}, got {c!r}")
    if not isinstance(t, int) or isinstance(t, bool) or not 1 <= t <= MAX_LENGTH:
        raise _fail(where, f"length must be an integer between 1 and {MAX_LENGTH}, got {t!r}")
    sr = spec.get("sample_rate", "missing")
    if sr is not None and (not _number(sr) or sr <= 0):
        raise _fail(where, f"sample_rate must be a number > 0 (Hz) or null, got {sr!r}")
    if spec.get("layout") != LAYOUT:
        raise _fail(where, f"layout must be '{LAYOUT}' for a series input, got {spec.get('layout')!r}")
    fe = spec.get("frontend", "missing")
    if fe is not None:
        validate_frontend(fe, spec, where)
    n = feature_count(fe) if fe else c
    for k in ("mean", "std"):
        v = spec.get(k)
        if not isinstance(v, list) or len(v) != n or not all(_number(x) for x in v):
            raise _fail(where, f"{k} must list {n} finite numbers ({'one per feature' if fe else 'one per channel'})")
    if not all(abs(x) <= 1e6 for x in spec["mean"]):
        raise _fail(where, "mean values must lie within +-1e6")
    if not all(1e-6 <= x <= 1e6 for x in spec["std"]):
        raise _fail(where, f"std values must lie between 1e-06 and 1e+06, got {spec['std']!r}")
    if model_shape(spec)[2] < 1:
        raise _fail(where, "the window gives no frontend frame")


def series_spec(channels: int, length: int, mean: Any, std: Any, sample_rate: float | None = None,
                frontend: dict | None = None) -> dict:
    """A validated series `input` block."""
    spec = {"kind": KIND, "channels": int(channels), "length": int(length),
            "sample_rate": None if sample_rate is None else float(sample_rate),
            "mean": [float(m) for m in np.ravel(mean)], "std": [float(s) for s in np.ravel(std)],
            "layout": LAYOUT, "frontend": dict(frontend) if frontend else None}
    validate_series_input(spec, "input")
    return spec


def as_window(window: Any, channels: int) -> np.ndarray:
    """A (t, C) float64 array from `window` ((t, C), or (t,) when C = 1); one clear line otherwise."""
    try:
        arr = np.asarray(window)
    except Exception as e:  # ragged lists and the like
        raise EdgeCNNError(f"a series window must be a numeric array (samples x channels): {e}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise EdgeCNNError(f"a series window must be a numeric array (samples x channels), got dtype {arr.dtype}")
    if arr.ndim == 1 and channels == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != channels:
        raise EdgeCNNError(f"a series window must be shaped (samples, {channels}) (samples x channels)"
                           f"{' or (samples,)' if channels == 1 else ''}, got shape {tuple(arr.shape)}")
    if arr.shape[0] < 1:
        raise EdgeCNNError("a series window has no samples")
    arr = arr.astype(np.float64)
    if np.isinf(arr).any():
        raise EdgeCNNError("a series window contains infinite values")
    return arr


def fit_length(arr: np.ndarray, length: int, fill: np.ndarray) -> np.ndarray:
    """Pad a (t, C) window at the end with `fill` (per channel) or cut it to its first `length` samples."""
    if arr.shape[0] >= length:
        return arr[:length]
    pad = np.broadcast_to(fill, (length - arr.shape[0], arr.shape[1]))
    return np.concatenate([arr, pad])


# -- the audio front end ------------------------------------------------------------------------

def hz_to_mel(hz: Any) -> np.ndarray:
    """HTK mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def mel_to_hz(mel: Any) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


def mel_filterbank(sample_rate: float, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) triangular filters on the HTK mel scale, peak 1 (no area normalization)."""
    freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    pts = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lo, mid, hi = pts[:-2, None], pts[1:-1, None], pts[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down)).T


def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_in, n_out) orthonormal DCT-II: coefficient k = sum_n x[n] cos(pi k (2n + 1) / (2 n_in)) * norm."""
    n = np.arange(n_in)[:, None]
    k = np.arange(n_out)[None]
    m = np.cos(np.pi * k * (2 * n + 1) / (2.0 * n_in)) * math.sqrt(2.0 / n_in)
    m[:, 0] /= math.sqrt(2.0)
    return m


def hann(n: int) -> np.ndarray:
    """Periodic Hann window of n samples (what torch.hann_window and librosa's 'hann' give)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def features(audio: Any, frontend: dict, sample_rate: float) -> np.ndarray:
    """Mono samples (t,) -> float64 features (F, frames): log-mel energies or MFCCs (module docstring)."""
    x = np.asarray(audio, np.float64).reshape(-1)
    win, hop = frame_geometry(frontend, sample_rate)
    if len(x) < win:
        raise EdgeCNNError(f"audio of {len(x)} samples is shorter than one frame ({win} samples)")
    n_frames = 1 + (len(x) - win) // hop
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop][:n_frames] * hann(win)
    power = np.abs(np.fft.rfft(frames, n=int(frontend["n_fft"]), axis=1)) ** 2
    fb = mel_filterbank(sample_rate, int(frontend["n_fft"]), int(frontend["n_mels"]),
                        float(frontend["fmin"]), float(frontend["fmax"]))
    logmel = np.log(power @ fb + float(frontend["log_offset"]))
    if frontend["type"] == "mfcc":
        logmel = logmel @ dct_matrix(int(frontend["n_mels"]), int(frontend["n_mfcc"]))
    return logmel.T


def raw_features(window: Any, spec: dict) -> np.ndarray:
    """A window up to (not including) standardization: float64 [C', T'] (what `mean`/`std` are fitted on)."""
    c, t = int(spec["channels"]), int(spec["length"])
    arr = as_window(window, c)
    fe = spec.get("frontend")
    if fe:
        arr = fit_length(np.nan_to_num(arr, nan=0.0), t, np.zeros(1))
        return features(arr[:, 0], fe, float(spec["sample_rate"]))
    mean = np.asarray(spec["mean"], np.float64)
    arr = fit_length(arr, t, mean)
    arr = np.where(np.isnan(arr), mean, arr)  # missing samples: the channel mean
    return arr.T


def preprocess_series(window: Any, spec: dict) -> np.ndarray:
    """One window (t, C) -> the model's float32 input [C', 1, T'] (the module docstring's steps)."""
    if not is_series(spec):
        raise EdgeCNNError("this bundle's input is an image, not a series: pass an image to predict()")
    f = raw_features(window, spec)
    mean = np.asarray(spec["mean"], np.float64)[:, None]
    std = np.asarray(spec["std"], np.float64)[:, None]
    return np.ascontiguousarray(((f - mean) / std)[:, None, :], dtype=np.float32)


def preprocess_series_batch(windows: Any, spec: dict) -> np.ndarray:
    """Several windows -> float32 [N, C', 1, T']."""
    if len(windows) == 0:
        raise EdgeCNNError("empty batch")
    return np.stack([preprocess_series(w, spec) for w in windows])


def fit_normalization(windows: Any, spec: dict) -> tuple[list[float], list[float]]:
    """Per-channel (per-feature with a front end) mean and std over training windows, NaNs ignored.

    Unequal-length windows count the samples they have (no padding enters the statistics).
    """
    probe = dict(spec, mean=[0.0] * len(spec["mean"]), std=[1.0] * len(spec["std"]))
    cols = []
    for w in windows:
        if probe.get("frontend"):
            cols.append(raw_features(w, probe))
        else:
            arr = as_window(w, int(spec["channels"]))[: int(spec["length"])]
            cols.append(arr.T)
    allv = np.concatenate(cols, axis=1)
    mean = np.nanmean(allv, axis=1)
    std = np.nanstd(allv, axis=1)
    std = np.where(np.isfinite(std) & (std > 1e-6), std, 1.0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    return [float(v) for v in mean], [float(v) for v in std]
