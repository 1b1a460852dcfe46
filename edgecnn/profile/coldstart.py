"""Cold start to first result: a fresh Python process, `Classifier(bundle)` with the cached tune, one predict.

    r = cold_start(bundle_path)   # {"total_ms", "imports_ms", "classifier_ms", "first_predict_ms", "cache_hit", ...}

What `edgecnn run` / a user's script pays before its first answer: interpreter start, `import
edgecnn.runtime`, `Classifier(bundle)` (manifest, plan, cached choice opened and re-checked: a few timed
calls, the runner-up opened only when they break the cached order; one check inference) and the first
`predict` of the bundle's first sample image. Measured in a child process (`sys.executable`), so nothing
this process imported already counts as free; `total_ms` is the parent's wall clock from spawning the
child to reading its answer. No torch here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import EdgeCNNError

_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from edgecnn.runtime import Classifier
t1 = time.perf_counter()
clf = Classifier(sys.argv[1])
t2 = time.perf_counter()
if clf.input_spec.get("kind") == "series":  # a CSV window: read and classified like a sensor window
    from edgecnn.preprocess import load_sample
    pred = clf.predict_series(load_sample(sys.argv[2], clf.input_spec))
else:
    pred = clf.predict(sys.argv[2])
t3 = time.perf_counter()
m = clf.selection.measurement or {}
print(json.dumps({"imports_ms": 1e3 * (t1 - t0), "classifier_ms": 1e3 * (t2 - t1), "first_predict_ms": 1e3 * (t3 - t2),
                  "cache_hit": bool(m.get("hit")), "label": pred.label, "backend": clf.describe()["backend"],
                  "precision": clf.describe()["precision"], "recheck": m.get("revalidation")}))
"""


def cold_start(bundle: str | Path, timeout_s: float = 300.0) -> dict[str, Any]:
    """Measure one cold start of `bundle` in a fresh process (see the module docstring)."""
    path = Path(bundle)
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    samples = [s["file"] for s in manifest.get("samples") or [] if isinstance(s, dict) and s.get("file")]
    if not samples:
        raise EdgeCNNError(f"{path}: no sample image in the bundle to time a first result with")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(path / samples[0])], capture_output=True,
                       text=True, timeout=timeout_s, check=False)
    total = 1e3 * (time.perf_counter() - t0)
    line = next((ln for ln in reversed(r.stdout.splitlines()) if ln.startswith("{")), None)
    if r.returncode != 0 or line is None:
        last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"
        raise EdgeCNNError(f"cold start of {path} failed: {last[:200]}")
    return {"total_ms": total, **json.loads(line)}


def format_cold_start(r: dict[str, Any]) -> str:
    check = r.get("recheck") or {}
    if not r["cache_hit"]:
        how = "measured: no cached tune"
    elif "runner_up_ms" in check:
        how = f"cached tune, re-checked against {check['runner_up']}"
    elif "best_ms" in check:
        how = "cached tune, re-checked: the runner-up not needed"
    else:
        how = "cached tune"
    return (f"cold start to first result: {r['total_ms']:.0f} ms in a fresh process (interpreter + imports "
            f"{r['total_ms'] - r['classifier_ms'] - r['first_predict_ms']:.0f} ms of which edgecnn.runtime "
            f"{r['imports_ms']:.0f} ms, Classifier {r['classifier_ms']:.0f} ms ({how}), first predict "
            f"{r['first_predict_ms']:.1f} ms; {r['backend']} {r['precision']})")
