"""A bundle checks itself on the device: its sample images through the torch-free Classifier. No torch here.

`edgecnn export` writes a few real held-out test items to BUNDLE/samples/, named `<label>_<n>.png`
(images) or `<label>_<n>.csv` (series windows, samples x channels), the label with non-alphanumerics
replaced by '-', and records each one in the manifest's `samples`
with its label and, where known, the source PyTorch model's own prediction (`reference_prediction`).
A sample counts as right when the device predicts its label, or exactly what PyTorch predicted where
PyTorch itself gets it wrong (a model mistake, not a device error). Used by `edgecnn bundle activate`
and by devices/classify_samples.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..bundle import Bundle
from ..errors import EdgeCNNError
from ..preprocess import load_sample
from ..series import is_series


def safe_name(label: str) -> str:
    """The file-name form of a class label (as `edgecnn export` writes it)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-")


@dataclass
class Samples:
    """Each sample image's expected label, and PyTorch's other answer where it has one."""

    expected: dict[Path, str]
    model_says: dict[Path, str] = field(default_factory=dict)


@dataclass
class SampleCheck:
    """The outcome of classifying every sample with one backend and precision."""

    backend: str
    version: str
    artifact: str
    precision: str
    total: int
    wrong: list[str]
    model_mistakes: list[str]

    @property
    def correct(self) -> int:
        return self.total - len(self.wrong) - len(self.model_mistakes)

    @property
    def ok(self) -> bool:
        return not self.wrong


def bundle_samples(bundle: Bundle) -> Samples:
    """The bundle's sample images and their expected labels (file name and manifest must agree)."""
    by_file_name = {safe_name(c) or str(i): c for i, c in enumerate(bundle.classes)}
    pattern = "*.csv" if is_series(bundle.input) else "*.png"
    files = sorted((bundle.path / "samples").glob(pattern))
    if not files:
        raise EdgeCNNError(f"{bundle.path}/samples: no {pattern} samples to check the bundle with")
    expected: dict[Path, str] = {}
    for path in files:
        stem_label = path.stem.rsplit("_", 1)[0]
        if stem_label not in by_file_name:
            raise EdgeCNNError(f"{path.name}: file name does not start with a class label of the bundle")
        expected[path] = by_file_name[stem_label]
    model_says: dict[Path, str] = {}
    for rec in bundle.manifest.get("samples") or []:
        if not isinstance(rec, dict) or not isinstance(rec.get("file"), str):
            continue
        path = bundle.path / rec["file"]
        if path in expected and expected[path] != rec.get("label"):
            raise EdgeCNNError(f"{rec['file']}: manifest label {rec.get('label')!r} != file name label")
        if path in expected and rec.get("reference_prediction") not in (None, rec.get("label")):
            model_says[path] = rec["reference_prediction"]
    return Samples(expected, model_says)


def check_samples(bundle: Bundle, samples: Samples, backend: str = "auto", precision: str = "auto",
                  threads: int | None = None, tune: bool = True) -> SampleCheck:
    """Classify every sample with one backend/precision (the runtime's own path) and compare."""
    from .classifier import Classifier

    with Classifier(bundle, backend=backend, precision=precision, threads=threads, tune=tune) as clf:
        used = clf.describe()
        wrong, model_mistakes = [], []
        series = is_series(clf.input_spec)
        for path, label in samples.expected.items():
            got = (clf.predict_series(load_sample(str(path), clf.input_spec)) if series else clf.predict(str(path))).label
            if got == label:
                continue
            if got == samples.model_says.get(path):
                model_mistakes.append(f"{path.name} -> {got!r}")
            else:
                extra = f" (PyTorch: {samples.model_says[path]!r})" if path in samples.model_says else ""
                wrong.append(f"{path.name}: predicted {got!r}, label {label!r}{extra}")
    return SampleCheck(used["backend"], str(used["version"]), str(used["artifact"]), str(used["precision"]),
                       len(samples.expected), wrong, model_mistakes)
