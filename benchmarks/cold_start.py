"""Issue 26: cold start to first result with a cached tune, before vs after, alternating in one script.

Each run is a fresh process (`edgecnn.profile.coldstart.cold_start`: interpreter, `import edgecnn.runtime`,
`Classifier(bundle)` with its cached tune, first `predict` of the bundle's first sample), then, as a
second fresh process, `edgecnn run BUNDLE --source SAMPLE --headless --max-frames 1` (spawn to exit: the
CLI, the run's modules, the Classifier, one result printed). "before" is the edgecnn package of an
earlier commit (`git archive`; default cde30d3, before issue 26's work), "after" this checkout. Each side
has its own cache folder (OpenVINO's compiled models), warmed by one untimed run; both read the one tune
record the "after" side measured (same schema and key), so both start the same cached choice. Python
bytecode is cached (PYTHONPYCACHEPREFIX in the scratch folder) as after a pip install. Bundles:
the LeNet-5 reference bundle and MobileNetV2-128 (frame_path.py). Run it with `nice` on a shared
machine: the load average is printed.

    .venv/bin/python benchmarks/cold_start.py [--rounds 5] [--before REV] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from frame_path import build  # noqa: E402

from edgecnn.profile.coldstart import _CHILD  # noqa: E402


def one(tree: Path, cache: Path, bundle: Path, sample: Path) -> dict:
    import time

    env = dict(os.environ, PYTHONPATH=str(tree), EDGECNN_CACHE=str(cache),
               PYTHONPYCACHEPREFIX=str(cache.parent / "pycache"))  # bytecode compiled once, as pip does
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # (set here: every start would compile edgecnn, +25 ms)
    # cwd: the scratch folder, never a checkout (sys.path[0] is the cwd for -c and -m: it would shadow `tree`)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", _CHILD, str(bundle), str(sample)], capture_output=True, text=True,
                       env=env, check=True, cwd=cache.parent)
    total = 1e3 * (time.perf_counter() - t0)
    row = {"total_ms": total, **json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edgecnn", "run", str(bundle), "--source", str(sample), "--headless",
                    "--max-frames", "1"], capture_output=True, text=True, env=env, check=True, cwd=cache.parent)
    return {**row, "run_ms": 1e3 * (time.perf_counter() - t0)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--before", default="cde30d3")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgecnn-cold-"))
    (work / "before").mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", args.before, "edgecnn"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(work / "before")], input=archive, check=True)
    trees = {"before": work / "before", "after": REPO}
    out = {}
    for bundle in (REPO / "export" / "lenet5-digits", build(128)):
        manifest = json.loads((bundle / "manifest.json").read_text())
        sample = bundle / manifest["samples"][0]["file"]
        caches = {k: work / f"cache-{bundle.name}-{k}" for k in trees}
        one(trees["after"], caches["after"], bundle, sample)  # the tune, measured and cached ...
        shutil.copytree(caches["after"] / "tune", caches["before"] / "tune")  # ... one record for both sides
        one(trees["before"], caches["before"], bundle, sample)  # (same schema and key: the same choice)
        rows: dict[str, list[dict]] = {k: [] for k in trees}
        for _ in range(args.rounds):
            for k in trees:
                rows[k].append(one(trees[k], caches[k], bundle, sample))
        fields = ("total_ms", "imports_ms", "classifier_ms", "first_predict_ms", "run_ms")
        med = {k: {f: float(np.median([r[f] for r in v])) for f in fields} for k, v in rows.items()}
        out[bundle.name] = {"median": med, "rows": rows}
        for k in trees:
            m = med[k]
            print(f"{bundle.name:<14} {k:<7} total {m['total_ms']:6.0f} ms  (edgecnn.runtime import "
                  f"{m['imports_ms']:4.0f}, Classifier {m['classifier_ms']:4.0f}, first predict "
                  f"{m['first_predict_ms']:5.1f}); {rows[k][-1]['backend']} {rows[k][-1]['precision']}, "
                  f"cache hit {all(r['cache_hit'] for r in rows[k])}; edgecnn run to exit {m['run_ms']:5.0f} ms",
                  flush=True)
    load = os.getloadavg()
    print(f"load average {load}; medians of {args.rounds} alternating runs")
    if args.json:
        out["load_average_at_end"] = load
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
