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
    input:  {height, width, channels (1|3), color ("GRAY"|"RGB"|"BGR"), resize ("stretch"|"center_crop"),
             interpolation ("area"|"linear"), scale (multiplier to [0,1]), mean[list], std[list]}
    artifacts: [{file, format ("onnx"|"tflite"), precision ("fp32"|"fp16"|"int8"),
                 layout ("NCHW"|"NHWC"), sha256, size_bytes,
                 input:  {name, dtype ("float32"|"float16"|"int8"|"uint8"), quant {scale, zero_point}|null},
                 output: {name, dtype, quant {scale, zero_point}|null, kind: "logits"|"probs"},
                 verified: {dataset, samples, max_abs_diff, top1_agreement, accuracy,
                            reference_accuracy} | null}]
    source: {checkpoint, sha256, dataset, accuracy}
    tool_versions: {package: version}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import EdgeCNNError
from .utils import atomic_write_json, atomic_write_text, sha256_file

SCHEMA = "edgecnn.bundle/1"
MANIFEST = "manifest.json"
LABELS = "labels.txt"

FORMATS = ("onnx", "tflite")
PRECISIONS = ("fp32", "fp16", "int8")
LAYOUTS = ("NCHW", "NHWC")
COLORS = ("GRAY", "RGB", "BGR")  # BGR: an imported model that expects OpenCV channel order
RESIZES = ("stretch", "center_crop")
INTERPOLATIONS = ("area", "linear")
DTYPES = ("float32", "float16", "int8", "uint8")


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


def _validate_quant(q: Any, where: str) -> None:
    if q is None:
        return
    if not isinstance(q, dict):
        raise _fail(where, "quant must be an object {scale, zero_point} or null")
    _require(q, "scale", where, (int, float))
    _require(q, "zero_point", where, int)


def validate_manifest(m: Any, where: str = MANIFEST) -> dict:
    """Check a manifest dict against schema edgecnn.bundle/1; raise EdgeCNNError naming the field."""
    if not isinstance(m, dict):
        raise _fail(where, "not a JSON object")
    schema = m.get("schema")
    if schema != SCHEMA:
        raise _fail(where, f"schema must be '{SCHEMA}', got {schema!r} (not an edgecnn bundle, or a newer one)")
    _require(m, "name", where, str)
    classes = _require(m, "classes", where, list)
    if not classes or not all(isinstance(c, str) for c in classes):
        raise _fail(where, "classes must be a non-empty list of strings")
    inp = _require(m, "input", where, dict)
    w = f"{where}: input"
    for k in ("height", "width"):
        if _require(inp, k, w, int) <= 0:
            raise _fail(w, f"{k} must be positive")
    channels = _require(inp, "channels", w, int, (1, 3))
    _require(inp, "color", w, str, COLORS)
    if (channels == 1) != (inp["color"] == "GRAY"):
        raise _fail(w, f"color {inp['color']} does not match channels={channels}")
    _require(inp, "resize", w, str, RESIZES)
    _require(inp, "interpolation", w, str, INTERPOLATIONS)
    _require(inp, "scale", w, (int, float))
    for k in ("mean", "std"):
        v = _require(inp, k, w, list)
        if len(v) != channels or not all(isinstance(x, (int, float)) for x in v):
            raise _fail(w, f"{k} must list {channels} numbers")
    if any(s == 0 for s in inp["std"]):
        raise _fail(w, "std must not contain 0")
    arts = _require(m, "artifacts", where, list)
    for i, a in enumerate(arts):
        wa = f"{where}: artifacts[{i}]"
        _require(a, "file", wa, str)
        _require(a, "format", wa, str, FORMATS)
        _require(a, "precision", wa, str, PRECISIONS)
        _require(a, "layout", wa, str, LAYOUTS)
        _require(a, "sha256", wa, str)
        _require(a, "size_bytes", wa, int)
        for io in ("input", "output"):
            d = _require(a, io, wa, dict)
            _require(d, "name", f"{wa}.{io}", str)
            _require(d, "dtype", f"{wa}.{io}", str, DTYPES)
            _validate_quant(d.get("quant"), f"{wa}.{io}")
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
        if check_files:
            for a in bundle.artifacts:
                if not a.path.is_file():
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
