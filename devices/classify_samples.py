"""Classify a bundle's sample images on this device and check every prediction against its label.

    python devices/classify_samples.py BUNDLE [--backend litert|onnxruntime|tensorrt] [--threads N]

The samples are the real held-out test images that `edgecnn export` writes to BUNDLE/samples/, named
`<label>_<n>.png` (the label as in the manifest's classes, non-alphanumerics replaced by '-'). Each
precision the bundle has for the backend's format (fp32, int8, ...) is run through
`edgecnn.runtime.Classifier`, the same path `edgecnn run` uses. Exit status 0 only if every sample of
every precision is classified as its file name says, except where the manifest records that the
source PyTorch model itself predicts another class for that image (`reference_prediction`, written
by `edgecnn export`): there the device must give exactly the model's answer, and the line says so.
Used by devices/check_aarch64.sh (under emulation) and by the setup scripts on a real board; it
prints no timings on purpose.
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
from pathlib import Path


def safe_name(label: str) -> str:
    """The file-name form of a class label (as edgecnn export writes it)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "litert", "tensorrt"))
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    from edgecnn.bundle import Bundle
    from edgecnn.errors import EdgeCNNError
    from edgecnn.runtime import Classifier
    from edgecnn.runtime.backends import FORMAT_OF

    try:
        bundle = Bundle.load(args.bundle)
        by_file_name = {safe_name(c) or str(i): c for i, c in enumerate(bundle.classes)}
        samples = sorted((bundle.path / "samples").glob("*.png"))
        if not samples:
            raise EdgeCNNError(f"{bundle.path}/samples: no *.png sample images")
        expected = {}
        for path in samples:
            stem_label = path.stem.rsplit("_", 1)[0]
            if stem_label not in by_file_name:
                raise EdgeCNNError(f"{path.name}: file name does not start with a class label of the bundle")
            expected[path] = by_file_name[stem_label]
        # The manifest records each sample's label too (both must agree), and PyTorch's prediction.
        model_says = {}
        for rec in bundle.manifest.get("samples") or []:
            path = bundle.path / rec["file"]
            if path in expected and expected[path] != rec["label"]:
                raise EdgeCNNError(f"{rec['file']}: manifest label {rec['label']!r} != file name label")
            if path in expected and rec.get("reference_prediction") not in (None, rec["label"]):
                model_says[path] = rec["reference_prediction"]

        if args.backend == "auto":
            precisions = ["auto"]
        else:
            fmt = FORMAT_OF[args.backend]
            precisions = sorted({a.precision for a in bundle.artifacts if a.format == fmt})
            if not precisions:
                raise EdgeCNNError(f"{bundle.path}: no {fmt} artifact for backend {args.backend}")
        failures = 0
        for precision in precisions:
            with Classifier(bundle, backend=args.backend, precision=precision, threads=args.threads) as clf:
                used = clf.describe()
                wrong, model_mistakes = [], []
                for path, label in expected.items():
                    got = clf.predict(str(path)).label
                    if got == label:
                        continue
                    if got == model_says.get(path):
                        model_mistakes.append(f"{path.name} -> {got!r}")
                    else:
                        extra = f" (PyTorch: {model_says[path]!r})" if path in model_says else ""
                        wrong.append(f"{path.name}: predicted {got!r}, label {label!r}{extra}")
                correct = len(expected) - len(wrong) - len(model_mistakes)
                line = (
                    f"[classify_samples] {platform.machine()}: {used['backend']} {used['version']}, "
                    f"{used['artifact']} ({used['precision']}): {correct}/{len(expected)} samples correct"
                )
                if model_mistakes:
                    line += f"; the source PyTorch model misclassifies the rest identically: {', '.join(model_mistakes)}"
                print(line)
                for w in wrong:
                    print(f"[classify_samples]   WRONG {w}")
                failures += len(wrong)
        return 1 if failures else 0
    except EdgeCNNError as e:
        print(f"classify_samples: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
