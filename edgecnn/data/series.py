"""Series datasets (host side): UCR/UEA .ts archives, class folders of CSV recordings or of WAV clips.

Each item is a float array shaped (t, C), samples x channels, what `edgecnn.series.preprocess_series`
takes; `Dataset.kind` is "series". Names:

    ts:DIR    a UCR/UEA archive folder: NAME_TRAIN.ts + NAME_TEST.ts, read by aeon's
              `load_from_ts_file` (the `edgecnn[series]` extra); uni- and multivariate, equal and
              unequal length, missing values ("?" or NaN) kept as NaN; the window length is the longest
              training series (shorter ones padded, longer test ones cut: edgecnn/series.py)
    csv:DIR   class folders of CSV recordings, one column a channel (a header row is skipped), cut in
              windows of `window` samples every `hop` (default: the whole recording when they all have
              one length); recordings, not windows, are split 70/10/20 per class (seed 0) unless DIR holds
              train/ (val/, test/) folders
    wav:DIR   class folders of WAV clips (scipy.io.wavfile; several channels are averaged to mono),
              all at one sample rate: `sample_rate` says which, a clip at another rate is an error unless
              `resample` (scipy.signal.resample_poly); samples scaled to [-1, 1]; the MFCC front end by
              default; split like csv:
"""

from __future__ import annotations

import csv
import math
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EdgeCNNError
from ..series import FRONTEND_DEFAULTS, fit_normalization, series_spec
from .datasets import Dataset, stratified_split

SERIES_SCHEMES = ("ts:", "csv:", "wav:")
SPLIT_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


def is_series_name(name: str) -> bool:
    return any(name.startswith(s) for s in SERIES_SCHEMES)


def _samples(value: Any, sample_rate: float | None, what: str) -> int | None:
    """--window/--hop: an integer number of samples, or a duration ('2s', '250ms') with a sample rate."""
    if value is None:
        return None
    text = str(value).strip()
    m = re.fullmatch(r"([0-9.]+)\s*(ms|s)?", text)
    if not m:
        raise EdgeCNNError(f"--{what} must be a number of samples or a duration like 2s / 250ms, got {text!r}")
    num, unit = float(m.group(1)), m.group(2)
    if unit:
        if not sample_rate:
            raise EdgeCNNError(f"--{what} {text} is a duration: give --sample-rate too (or a number of samples)")
        num = num * sample_rate / (1000.0 if unit == "ms" else 1.0)
    n = int(round(num))
    if n < 1 or (not unit and num != n):
        raise EdgeCNNError(f"--{what} must be a positive whole number of samples, got {text!r}")
    return n


# -- ts: UCR/UEA archives --------------------------------------------------------------------------

def _ts_pair(folder: Path) -> tuple[Path, Path]:
    if folder.is_file() and folder.name.upper().endswith("_TRAIN.TS"):
        folder, name = folder.parent, folder.name[: -len("_TRAIN.ts")]
    else:
        if not folder.is_dir():
            raise EdgeCNNError(f"ts:{folder}: no such folder (a UCR/UEA archive folder with NAME_TRAIN.ts)")
        trains = sorted(p for p in folder.iterdir() if p.name.endswith("_TRAIN.ts")
                        and (folder / p.name.replace("_TRAIN.ts", "_TEST.ts")).is_file())
        names = [p.name[: -len("_TRAIN.ts")] for p in trains if not p.name.endswith("_eq_TRAIN.ts")] \
            or [p.name[: -len("_TRAIN.ts")] for p in trains]
        if not names:
            raise EdgeCNNError(f"ts:{folder}: no NAME_TRAIN.ts + NAME_TEST.ts pair here")
        if len(names) > 1:
            raise EdgeCNNError(f"ts:{folder}: several archives ({', '.join(names)}); name one: "
                               f"ts:{folder / (names[0] + '_TRAIN.ts')}")
        name = names[0]
    train, test = folder / f"{name}_TRAIN.ts", folder / f"{name}_TEST.ts"
    if not test.is_file():
        raise EdgeCNNError(f"ts:{folder}: {train.name} has no {test.name} beside it")
    return train, test


def _header_classes(path: Path) -> list[str] | None:
    """The class labels in the order of the file's @classLabel line (aeon lower-cases its copy)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            low = line.strip().lower()
            if low.startswith("@targetlabel true"):
                raise EdgeCNNError(f"{path}: a regression archive (@targetLabel: numeric targets); edgecnn trains "
                                   "classifiers and needs @classLabel true with class names")
            if low.startswith("@classlabel"):
                parts = line.split()
                return parts[2:] if len(parts) > 2 and parts[1].lower() == "true" else None
            if low.startswith("@data"):
                return None
    return None


def read_ts(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """One .ts file -> (list of float (t, C) arrays, string labels), through aeon's reader."""
    try:
        from aeon.datasets import load_from_ts_file
    except ImportError:
        raise EdgeCNNError("reading .ts files needs aeon: pip install 'edgecnn[series]' (or pip install aeon)") \
            from None
    try:
        X, y = load_from_ts_file(str(path))
    except Exception as e:  # aeon raises IOError/ValueError/IndexError on malformed files
        from ..utils import first_line

        raise EdgeCNNError(f"{path}: not a valid .ts file ({type(e).__name__}: {first_line(e)})") from None
    items = [np.asarray(x, np.float64).T for x in X]  # aeon: (C, t) per case
    if y is None or len(y) != len(items):
        raise EdgeCNNError(f"{path}: has no class labels (@classLabel true ...)")
    return items, np.asarray([str(v) for v in y])


def load_ts(path: str, sample_rate: float | None = None) -> Dataset:
    train_path, test_path = _ts_pair(Path(path).expanduser())
    header_classes = _header_classes(train_path)  # refuses a regression archive before parsing it
    xtr, ytr = read_ts(train_path)
    xte, yte = read_ts(test_path)
    classes = header_classes or sorted(set(ytr.tolist()))
    # aeon lower-cases labels; the header keeps the archive's spelling and order
    index = {c.lower(): i for i, c in enumerate(classes)}
    unknown = sorted({v.lower() for v in (*ytr.tolist(), *yte.tolist())} - set(index))
    if unknown:
        raise EdgeCNNError(f"{train_path}: labels {unknown[:5]} are not in its @classLabel list")
    channels = {x.shape[1] for x in xtr + xte}
    if len(channels) != 1:
        raise EdgeCNNError(f"ts:{path}: cases have different channel counts {sorted(channels)}")
    return _series_dataset(
        f"ts:{path}", classes, channels.pop(), max(len(x) for x in xtr), sample_rate, None,
        {"train": (xtr, np.array([index[v.lower()] for v in ytr], np.int64)),
         "test": (xte, np.array([index[v.lower()] for v in yte], np.int64))})


# -- csv: class folders of recordings ---------------------------------------------------------------

def read_csv_recording(path: Path, channels: int | None = None) -> np.ndarray:
    """A CSV recording -> float (t, C); a header row is skipped; one line naming a bad row otherwise."""
    rows: list[list[float]] = []
    width = channels
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for lineno, row in enumerate(csv.reader(f), 1):
                if not row or all(not c.strip() for c in row):
                    continue
                try:
                    values = [float(c) if c.strip() not in ("", "nan", "NaN", "?") else math.nan for c in row]
                except ValueError:
                    if not rows and lineno == 1:  # a header
                        width = width or len(row)
                        continue
                    raise EdgeCNNError(f"{path}:{lineno}: not a number in {row!r}") from None
                if width is None:
                    width = len(values)
                if len(values) != width:
                    raise EdgeCNNError(f"{path}:{lineno}: {len(values)} columns, expected {width} "
                                       "(one column per channel; a column is missing or extra)")
                rows.append(values)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise EdgeCNNError(f"{path}: cannot read CSV ({e})") from None
    if not rows:
        raise EdgeCNNError(f"{path}: no samples")
    return np.asarray(rows, np.float64)


def _class_files(root: Path, suffix: str, classes: list[str] | None) -> tuple[list[str], list[tuple[Path, int]]]:
    if not root.is_dir():
        raise EdgeCNNError(f"{root}: no such folder (class folders of {suffix} files)")
    names = classes or sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [(f, i) for i, c in enumerate(names) if (root / c).is_dir()
             for f in sorted((root / c).iterdir()) if f.suffix.lower() == suffix]
    if not files:
        raise EdgeCNNError(f"{root}: no class folders with {suffix} files")
    return names, files


def _split_files(root: Path, suffix: str, classes: list[str] | None) -> tuple[list[str], dict, bool]:
    """{split: [(file, label)]}: train/val/test folders when present, else a 70/10/20 per-class split."""
    if (root / "train").is_dir():
        names, _ = _class_files(root / "train", suffix, classes)
        out = {s: _class_files(root / s, suffix, names)[1] for s in ("train", "val", "test") if (root / s).is_dir()}
        return names, out, False
    names, files = _class_files(root, suffix, classes)
    labels = np.array([lab for _, lab in files])
    parts = stratified_split(labels, SPLIT_FRACTIONS, seed=0)
    return names, {k: [files[i] for i in v] for k, v in parts.items()}, True


def cut_windows(rec: np.ndarray, window: int, hop: int) -> list[np.ndarray]:
    """Windows of `window` samples every `hop` (a recording shorter than one window gives none)."""
    return [rec[s : s + window] for s in range(0, len(rec) - window + 1, hop)]


def _windowed(recordings: dict, window: int | None, hop: int | None, what: str) -> tuple[dict, int]:
    lengths = {len(r) for split in recordings.values() for r, _ in split}
    if window is None:
        if len(lengths) != 1:
            raise EdgeCNNError(f"{what}: recordings have different lengths ({min(lengths)}..{max(lengths)} samples); "
                               "cut them in windows with --window N (and --hop)")
        window = lengths.pop()
    hop = hop or window
    out = {}
    for split, recs in recordings.items():
        xs = [(w, lab) for r, lab in recs for w in cut_windows(r, window, hop)]
        out[split] = ([w for w, _ in xs], np.array([lab for _, lab in xs], np.int64))
    if not len(out.get("train", ([], []))[1]):
        raise EdgeCNNError(f"{what}: no training window of {window} samples (recordings shorter than --window?)")
    return out, window


def load_csv(path: str, sample_rate: float | None = None, window: Any = None, hop: Any = None,
             classes: list[str] | None = None) -> Dataset:
    root = Path(path).expanduser()
    names, files, flat = _split_files(root, ".csv", classes)
    recordings: dict[str, list] = {}
    channels = None
    for split, items in files.items():
        recordings[split] = []
        for f, lab in items:
            rec = read_csv_recording(f, channels)
            channels = rec.shape[1]
            recordings[split].append((rec, lab))
    win = _samples(window, sample_rate, "window")
    splits, win = _windowed(recordings, win, _samples(hop, sample_rate, "hop"), f"csv:{path}")
    return _series_dataset(f"csv:{path}", names, int(channels or 1), win, sample_rate, None, splits, flat=flat)


# -- wav: class folders of clips --------------------------------------------------------------------

def read_wav(path: Path, sample_rate: float | None, resample: bool) -> tuple[np.ndarray, int]:
    """A WAV clip -> (mono float samples in [-1, 1], its rate after resampling)."""
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    try:
        rate, data = wavfile.read(str(path))
    except (ValueError, OSError, EOFError) as e:
        raise EdgeCNNError(f"{path}: not a WAV file scipy can read ({e})") from None
    if np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(data.dtype)
        x = (data.astype(np.float64) - (info.min + info.max + 1) / 2) / ((info.max - info.min + 1) / 2)
    else:
        x = data.astype(np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if sample_rate and rate != sample_rate:
        if not resample:
            raise EdgeCNNError(f"{path}: recorded at {rate} Hz, the data set is at {sample_rate:g} Hz; "
                               "pass --resample to resample it (or --sample-rate to choose the rate)")
        frac = Fraction(int(round(sample_rate)), int(rate)).limit_denominator(1000)
        x = resample_poly(x, frac.numerator, frac.denominator)
        rate = int(round(sample_rate))
    return x, int(rate)


def load_wav(path: str, sample_rate: float | None = None, window: Any = None, hop: Any = None,
             resample: bool = False, frontend: Any = "mfcc", classes: list[str] | None = None) -> Dataset:
    root = Path(path).expanduser()
    names, files, flat = _split_files(root, ".wav", classes)
    recordings: dict[str, list] = {}
    rate = sample_rate
    for split, items in files.items():
        recordings[split] = []
        for f, lab in items:
            x, r = read_wav(f, rate, resample)
            rate = rate or r
            recordings[split].append((x[:, None], lab))
    win = _samples(window, rate, "window")
    if win is None:  # clips of one length are one window each; else the longest clip, padded
        lengths = {len(r) for s in recordings.values() for r, _ in s}
        win = max(lengths)
        recordings = {s: [(np.pad(r, ((0, win - len(r)), (0, 0))), lab) for r, lab in v]
                      for s, v in recordings.items()}
    splits, win = _windowed(recordings, win, _samples(hop, rate, "hop"), f"wav:{path}")
    return _series_dataset(f"wav:{path}", names, 1, win, rate, frontend_params(frontend), splits, flat=flat)


def frontend_params(frontend: Any) -> dict | None:
    """--frontend: "mfcc" | "logmel" | "none", or a dict of front end parameters (defaults filled in)."""
    if frontend is None or frontend == "none":
        return None
    if isinstance(frontend, str):
        if frontend not in ("mfcc", "logmel"):
            raise EdgeCNNError(f"--frontend must be mfcc, logmel or none, got {frontend!r}")
        frontend = {"type": frontend}
    return {**FRONTEND_DEFAULTS, **frontend}


# -- the Dataset --------------------------------------------------------------------------------------

def _series_dataset(name: str, classes: list[str], channels: int, length: int, sample_rate: float | None,
                    frontend: dict | None, splits: dict, flat: bool = False) -> Dataset:
    if frontend and sample_rate:
        frontend = dict(frontend, fmax=min(float(frontend["fmax"]), sample_rate / 2))
    spec = series_spec(channels, length, [0.0] * channels, [1.0] * channels, sample_rate)
    mean, std = fit_normalization(splits["train"][0], spec) if len(splits["train"][1]) else ([0.0], [1.0])
    return Dataset(name=name, classes=list(classes), channels=channels, mean=tuple(mean), std=tuple(std),
                   natural=False, splits=splits, flat=flat, kind="series", length=length,
                   sample_rate=sample_rate, frontend=frontend)

