"""Classify a bundle's sample images on this device and check every prediction against its label.

    python devices/classify_samples.py BUNDLE [--backend litert|onnxruntime|tensorrt] [--threads N]

The samples are the real held-out test images that `edgecnn export` writes to BUNDLE/samples/, named
`<label>_<n>.png` (the label as in the manifest's classes, non-alphanumerics replaced by '-'). Each
precision the bundle has for the backend's format (fp32, int8, ...) is run through
`edgecnn.runtime.Classifier`, the same path `edgecnn run` uses. Exit status 0 only if every sample of
every precision is classified as its file name says, except where the manifest records that the
source PyTorch model itself predicts another class for that image (`reference_prediction`, written
by `edgecnn export`): there the device must give exactly the model's answer, and the line says so.
The check itself is `edgecnn.runtime.selfcheck` (also what `edgecnn bundle activate` runs). Used by
devices/check_aarch64.sh (under emulation) and by the setup scripts on a real board; it prints no
timings on purpose.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "litert", "tensorrt"))
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    from edgecnn.bundle import Bundle
    from edgecnn.errors import EdgeCNNError
    from edgecnn.runtime.backends import FORMAT_OF
    from edgecnn.runtime.selfcheck import bundle_samples, check_samples

    try:
        bundle = Bundle.load(args.bundle)
        samples = bundle_samples(bundle)
        if args.backend == "auto":
            precisions = ["auto"]
        else:
            fmt = FORMAT_OF[args.backend]
            precisions = sorted({a.precision for a in bundle.artifacts if a.format == fmt})
            if not precisions:
                raise EdgeCNNError(f"{bundle.path}: no {fmt} artifact for backend {args.backend}")
        failures = 0
        for precision in precisions:
            res = check_samples(bundle, samples, args.backend, precision, args.threads)
            line = (
                f"[classify_samples] {platform.machine()}: {res.backend} {res.version}, "
                f"{res.artifact} ({res.precision}): {res.correct}/{res.total} samples correct"
            )
            if res.model_mistakes:
                line += f"; the source PyTorch model misclassifies the rest identically: {', '.join(res.model_mistakes)}"
            print(line)
            for w in res.wrong:
                print(f"[classify_samples]   WRONG {w}")
            failures += len(res.wrong)
        return 1 if failures else 0
    except EdgeCNNError as e:
        print(f"classify_samples: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
