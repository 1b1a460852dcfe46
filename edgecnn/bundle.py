"""The bundle: the one contract between host (export) and device (runtime). No torch here.

A bundle is a directory:

    manifest.json   schema "edgecnn.bundle/1" (validated on read, written atomically)
    labels.txt      one class name per line
    model*.onnx / model*.tflite
    calib.npz       a few preprocessed real samples (calibration for TensorRT int8, sanity checks)
    REPORT.md       what was measured when the bundle was made

Manifest fields (see `validate_manifest` for the exact rules):

    schema, name, task="classification", classes[list[str]], created (ISO 8601),
    model:  {name, params, macs, kwargs}
    input:  {kind "image" (the default when absent), height, width, channels (1|3), color ("GRAY"|"RGB"|"BGR"),
             resize ("stretch"|"center_crop"), interpolation ("area"|"linear"), scale (pixel multiplier),
             mean[list], std[list]}
            or, for sensor/audio windows, {kind: "series", channels, length, sample_rate, mean, std,
             layout: "NC1T", frontend} (edgecnn/series.py)
            or {kind "features", shape[list]: one sample's tensor (an imported model's non-image input)}
    artifacts: [{file, format ("onnx"|"tflite"), precision ("fp32"|"fp16"|"int8"),
                 layout ("NCHW"|"NHWC"|"ND": features, the file's own shape), sha256, size_bytes,
                 input:  {name, dtype ("float32"|"float16"|"int8"|"uint8"), quant {scale, zero_point}|null},
                 output: {name, dtype, quant {scale, zero_point}|null, kind: "logits"|"probs"},
                 verified: {dataset, samples, max_abs_diff, top1_agreement, accuracy,
                            reference_accuracy} | null}]
    source: {checkpoint, sha256, dataset, accuracy}
    tool_versions: {package: version}

Beyond types, `validate_manifest` refuses what would load and then misbehave: labels that are empty,
duplicated, not encodable text or with control characters; input sides outside 1..MAX_INPUT_SIDE;
scale/std not finite within [NORM_MIN, NORM_MAX]; int8 quant scales that are not finite > 0; no artifacts;
artifact paths that are absolute or contain '..' (and `Bundle.load` refuses any that resolve outside
the bundle through a symlink). The model itself is checked against the manifest by the runtime
(`edgecnn/runtime/checks.py`) once it is loaded.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import EdgeCNNError
from .series import KIND as KIND_SERIES
from .series import validate_series_input
from .utils import atomic_write_json, atomic_write_text, sha256_file

SCHEMA = "edgecnn.bundle/1"
MANIFEST = "manifest.json"
LABELS = "labels.txt"

FORMATS = ("onnx", "tflite")
PRECISIONS = ("fp32", "fp16", "int8")
LAYOUTS = ("NCHW", "NHWC", "ND")  # ND: a features tensor in the file's own shape, fed as is
INPUT_KINDS = ("image", KIND_SERIES, "features")  # no kind: an image (bundles made before kinds existed)
MAX_FEATURES = 1 << 24  # values per sample of a features input
COLORS = ("GRAY", "RGB", "BGR")  # BGR: an imported model that expects OpenCV channel order
RESIZES = ("stretch", "center_crop")
INTERPOLATIONS = ("area", "linear")
DTYPES = ("float32", "float16", "int8", "uint8")
# A classifier's input side; larger is a corrupt or hostile manifest (100000x100000 would allocate 10 GB).
MAX_INPUT_SIDE = 4096
MAX_LABEL_CHARS = 256
# scale/std/mean outside these bounds make the normalized input overflow float32 or lose all precision.
NORM_MIN, NORM_MAX = 1e-6, 1e6
QUANT_RANGE = {"int8": (-128, 127), "uint8": (0, 255)}
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _fail(where: str, msg: str) -> EdgeCNNError:
    return EdgeCNNError(f"{where}: {msg}")


def _require(d: dict, key: str, where: str, types: type | tuple, choices: tuple | None = None) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise _fail(where, f"missing field '{key}'")
    value = d[key]
    if not isinstance(value, types) or isinstance(value, bool) and bool not in (
        types if isinstance(types, tuple) else (types,)
    ):
        raise _fail(where, f"field '{key}' has the wrong type ({type(value).__name__})")
    if choices is not None and value not in choices:
        raise _fail(where, f"{key} must be one of {'|'.join(choices)}, got {value!r}")
    return value


def _finite_in(value: float, lo: float, hi: float) -> bool:
    return math.isfinite(value) and lo <= value <= hi


def _validate_quant(q: Any, where: str, dtype: str) -> None:
    if q is None:
        return
    if not isinstance(q, dict):
        raise _fail(where, "quant must be an object {scale, zero_point} or null")
    scale = _require(q, "scale", where, (int, float))
    if not (math.isfinite(scale) and scale > 0):
        raise _fail(where, f"quant scale must be a finite number > 0, got {scale!r}")
    zp = _require(q, "zero_point", where, int)
    lo, hi = QUANT_RANGE.get(dtype, (-(2**31), 2**31 - 1))
    if not lo <= zp <= hi:
        raise _fail(where, f"quant zero_point {zp} is outside the {dtype} range {lo}..{hi}")


def label_problem(label: Any) -> str | None:
    """Why `label` cannot be a class name (None if it can): text that prints, encodes and draws."""
    if not isinstance(label, str):
        return f"must be a string, got {type(label).__name__}"
    if not label.strip():
        return "is empty"
    if len(label) > MAX_LABEL_CHARS:
        return f"is {len(label)} characters long (at most {MAX_LABEL_CHARS})"
    for ch in label:
        cat = unicodedata.category(ch)
        if cat == "Cs":
            return f"contains a lone surrogate U+{ord(ch):04X} (not encodable text)"
        if cat in ("Cc", "Zl", "Zp"):  # control characters and line breaks: labels.txt is one per line
            return f"contains the control character U+{ord(ch):04X}"
    return None


def validate_classes(classes: Any, where: str = MANIFEST) -> list[str]:
    """Class labels: a non-empty list of distinct, printable, UTF-8-encodable strings."""
    if not isinstance(classes, list) or not classes:
        raise _fail(where, "classes must be a non-empty list of strings")
    seen: dict[str, int] = {}
    for i, c in enumerate(classes):
        problem = label_problem(c)
        if problem:
            raise _fail(where, f"classes[{i}] {ascii(c)[:80]} {problem}")
        if c in seen:
            raise _fail(where, f"classes[{i}] {ascii(c)[:80]} duplicates classes[{seen[c]}]")
        seen[c] = i
    return classes


def check_relative_path(file: str, where: str) -> None:
    """A file named in the manifest: relative, inside the bundle (no absolute path, no '..')."""
    if not file or "\x00" in file or "\\" in file:
        raise _fail(where, f"file {ascii(file)[:120]} is not a relative path inside the bundle")
    p = PurePosixPath(file)
    if p.is_absolute() or ".." in p.parts or re.match(r"^[A-Za-z]:", file):
        raise _fail(where, f"file {ascii(file)[:120]} must be a relative path inside the bundle "
                           "(no absolute path, no '..')")


def _validate_features(inp: dict, w: str) -> None:
    shape = _require(inp, "shape", w, list)
    if not shape or len(shape) > 6 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape):
        raise _fail(w, f"shape must list 1 to 6 positive integers (one sample, no batch), got {shape!r}")
    if math.prod(shape) > MAX_FEATURES:
        raise _fail(w, f"shape {shape} holds more than {MAX_FEATURES} values per sample")


def _validate_input(inp: dict, w: str) -> None:
    kind = inp.get("kind", "image")
    if kind not in INPUT_KINDS:
        raise _fail(w, f"kind must be one of {'|'.join(INPUT_KINDS)}, got {kind!r}")
    if kind == KIND_SERIES:
        validate_series_input(inp, w)
        return
    if kind == "features":
        _validate_features(inp, w)
        return
    for k in ("height", "width"):
        v = _require(inp, k, w, int)
        if not 1 <= v <= MAX_INPUT_SIDE:
            raise _fail(w, f"{k} must be between 1 and {MAX_INPUT_SIDE}, got {v}")
    channels = _require(inp, "channels", w, int, (1, 3))
    _require(inp, "color", w, str, COLORS)
    if (channels == 1) != (inp["color"] == "GRAY"):
        raise _fail(w, f"color {inp['color']} does not match channels={channels}")
    _require(inp, "resize", w, str, RESIZES)
    _require(inp, "interpolation", w, str, INTERPOLATIONS)
    scale = _require(inp, "scale", w, (int, float))
    if not _finite_in(scale, NORM_MIN, NORM_MAX):
        raise _fail(w, f"scale must be a finite number between {NORM_MIN:g} and {NORM_MAX:g}, got {scale!r}")
    for k in ("mean", "std"):
        v = _require(inp, k, w, list)
        if len(v) != channels or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            raise _fail(w, f"{k} must list {channels} numbers")
    if not all(math.isfinite(x) and abs(x) <= NORM_MAX for x in inp["mean"]):
        raise _fail(w, f"mean must hold finite numbers within +-{NORM_MAX:g}, got {inp['mean']!r}")
    if not all(_finite_in(x, NORM_MIN, NORM_MAX) for x in inp["std"]):
        raise _fail(w, f"std must hold finite numbers between {NORM_MIN:g} and {NORM_MAX:g}, got {inp['std']!r}")


def validate_input(spec: Any, where: str) -> dict:
    """Check one manifest `input` block (what export_model builds before any bundle exists)."""
    if not isinstance(spec, dict):
        raise _fail(where, "input must be an object")
    _validate_input(spec, f"{where}: input")
    return spec


def validate_manifest(m: Any, where: str = MANIFEST) -> dict:
    """Check a manifest dict against schema edgecnn.bundle/1; raise EdgeCNNError naming the field."""
    if not isinstance(m, dict):
        raise _fail(where, "not a JSON object")
    schema = m.get("schema")
    if schema != SCHEMA:
        raise _fail(where, f"schema must be '{SCHEMA}', got {schema!r} (not an edgecnn bundle, or a newer one)")
    _require(m, "name", where, str)
    validate_classes(_require(m, "classes", where, list), where)
    _validate_input(_require(m, "input", where, dict), f"{where}: input")
    arts = _require(m, "artifacts", where, list)
    if not arts:
        raise _fail(where, "artifacts is empty: the bundle has no model file")
    for i, a in enumerate(arts):
        wa = f"{where}: artifacts[{i}]"
        check_relative_path(_require(a, "file", wa, str), wa)
        _require(a, "format", wa, str, FORMATS)
        _require(a, "precision", wa, str, PRECISIONS)
        _require(a, "layout", wa, str, LAYOUTS)
        if (a["layout"] == "ND") != (m["input"].get("kind") == "features"):
            raise _fail(wa, f"layout {a['layout']} does not fit an input of kind {m['input'].get('kind', 'image')} "
                            "(features: ND; images: NCHW or NHWC)")
        if not _SHA256.fullmatch(_require(a, "sha256", wa, str)):
            raise _fail(wa, "sha256 must be 64 lowercase hex digits")
        if _require(a, "size_bytes", wa, int) <= 0:
            raise _fail(wa, f"size_bytes must be positive, got {a['size_bytes']}")
        for io in ("input", "output"):
            d = _require(a, io, wa, dict)
            _require(d, "name", f"{wa}.{io}", str)
            dtype = _require(d, "dtype", f"{wa}.{io}", str, DTYPES)
            _validate_quant(d.get("quant"), f"{wa}.{io}", dtype)
    for i, smp in enumerate(m.get("samples") or []):
        if isinstance(smp, dict) and isinstance(smp.get("file"), str):
            check_relative_path(smp["file"], f"{where}: samples[{i}]")
    return m


@dataclass
class Artifact:
    """One model file of a bundle, with the bundle directory it lives in."""

    bundle_dir: Path
    info: dict

    @property
    def path(self) -> Path:
        return self.bundle_dir / self.info["file"]

    @property
    def format(self) -> str:
        return self.info["format"]

    @property
    def precision(self) -> str:
        return self.info["precision"]

    @property
    def layout(self) -> str:
        return self.info["layout"]


class Bundle:
    """A validated bundle directory. `Bundle.load(path)` raises EdgeCNNError with one clear line."""

    def __init__(self, path: Path, manifest: dict):
        self.path = path
        self.manifest = manifest

    @classmethod
    def load(cls, path: str | Path, check_files: bool = True) -> Bundle:
        path = Path(path)
        if path.is_file() and path.name == MANIFEST:
            path = path.parent
        if not path.exists():
            raise EdgeCNNError(f"bundle not found: {path}")
        if not path.is_dir():
            raise EdgeCNNError(f"{path}: not a bundle directory (expected a folder with {MANIFEST})")
        mpath = path / MANIFEST
        if not mpath.is_file():
            raise EdgeCNNError(f"{path}: no {MANIFEST} here; not an edgecnn bundle")
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise EdgeCNNError(f"{mpath}: not valid JSON ({e})") from None
        validate_manifest(manifest, str(mpath))
        bundle = cls(path, manifest)
        root = path.resolve()
        for a in bundle.artifacts:
            # Symlinks are followed here, before anything opens or hashes the file.
            if not a.path.resolve().is_relative_to(root):
                raise EdgeCNNError(f"{mpath}: artifact {a.info['file']} resolves outside the bundle "
                                   f"({a.path.resolve()}); only files inside the bundle directory are used")
            if check_files and not a.path.is_file():
                raise EdgeCNNError(f"{mpath}: artifact file missing: {a.info['file']}")
        return bundle

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def classes(self) -> list[str]:
        return self.manifest["classes"]

    @property
    def input(self) -> dict:
        return self.manifest["input"]

    @property
    def artifacts(self) -> list[Artifact]:
        return [Artifact(self.path, a) for a in self.manifest["artifacts"]]

    def find(self, format: str | None = None, precision: str | None = None) -> list[Artifact]:
        return [
            a
            for a in self.artifacts
            if (format in (None, "auto") or a.format == format)
            and (precision in (None, "auto") or a.precision == precision)
        ]

    def check_integrity(self) -> None:
        """Compare each artifact's sha256 with the manifest (a corrupt copy fails here)."""
        for a in self.artifacts:
            if sha256_file(a.path) != a.info["sha256"]:
                raise EdgeCNNError(f"{a.path}: sha256 does not match the manifest (file corrupt or replaced)")


def write_manifest(bundle_dir: str | Path, manifest: dict) -> None:
    """Validate, then write manifest.json and labels.txt atomically."""
    bundle_dir = Path(bundle_dir)
    validate_manifest(manifest, str(bundle_dir / MANIFEST))
    atomic_write_text(bundle_dir / LABELS, "\n".join(manifest["classes"]) + "\n")
    atomic_write_json(bundle_dir / MANIFEST, manifest)


def artifact_record(bundle_dir: str | Path, file: str, **fields: Any) -> dict:
    """An artifact entry with sha256 and size filled in from the file on disk."""
    p = Path(bundle_dir) / file
    return {"file": file, **fields, "sha256": sha256_file(p), "size_bytes": p.stat().st_size}
