"""Every torchvision classification builder through `edgecnn train` (1 epoch) and `edgecnn export`.

    python benchmarks/torchvision_builders.py --out /tmp/tv-sweep            # all builders
    python benchmarks/torchvision_builders.py --out /tmp/tv-sweep --only resnet18,squeezenet1_1
    python benchmarks/torchvision_builders.py --out /tmp/tv-sweep --table    # results -> markdown table
    python benchmarks/torchvision_builders.py --out /tmp/vgg --only vgg11,vgg16 --int8 --max-params 200000000

Per builder, in its own process (1 thread, a time limit each): train one epoch (Adam, lr 1e-3, batch 32,
cosine schedule: stable for every architecture from scratch) on the embedded digits
(real 20x20 handwritten digits, 1 channel, so the stem is adapted) on --train-limit images at the
smallest supported size >= --size, then export ONNX + TFLite fp32 and verify both against PyTorch
on --verify-samples test images. One JSON line per builder in OUT/results.jsonl (resumable: a builder
with a result is not re-run). The status and the reason of a failure are what the run printed (the
last `edgecnn: error` line, or the exception), not a guess. The sweep is ordered by parameter count;
builders above --max-params are recorded as not run (their measured parameter count is the reason).
With --int8 the export also writes int8 ONNX + TFLite (calibrated on 200 digits training images) and
verifies them. Each record carries the builder process's peak resident memory (`peak_rss_mb`, from
getrusage) and the train / export seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def builders_by_size(max_params: int) -> list[tuple[str, int]]:
    import torchvision.models as tvm

    out = []
    for name in tvm.list_models(module=tvm):
        # The published ImageNet parameter count (torchvision's weight metadata): no model is built.
        out.append((name, int(tvm.get_model_weights(name).DEFAULT.meta["num_params"])))
    return sorted(out, key=lambda t: t[1])


def input_side(name: str, size: int) -> int:
    """The side the builder is trained at: --size, or its smallest input when that is larger."""
    from edgecnn.models import get_spec

    return max(size, get_spec(name).min_input_size)


def _peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def run_one(name: str, out: Path, size: int, train_limit: int, verify_samples: int, int8: bool = False,
            lr: float = 1e-3) -> dict:
    """Train + export one builder in this process; returns the result record."""
    import torch

    from edgecnn.cli import main as cli

    torch.set_num_threads(1)
    side = input_side(name, size)
    rec: dict = {"name": name, "size": side, "small_input": False, "lr": lr}
    run = out / "runs" / name
    buf = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(buf):
        rc = cli(["train", name, "--data", "digits", "--epochs", "1", "--img-size", str(side), "--train-limit",
                  str(train_limit), "--threads", "1", "--out", str(run), "--overwrite", "--no-augment",
                  "--batch-size", "32", "--schedule", "cosine", "--optimizer", "adam",
                  "--lr", str(lr)])
    rec["train_s"] = round(time.perf_counter() - t0, 1)
    rec["train_peak_rss_mb"] = _peak_rss_mb()
    if rc not in (0, 3):  # 3: trained, but validation never left chance (one epoch): still exportable
        rec.update(status="train failed", reason=_last_error(buf.getvalue()))
        return rec
    ckpt = torch.load(run / "best.pt", weights_only=True)
    rec["test_acc_1_epoch"] = ckpt["metrics"].get("test_acc")
    t0 = time.perf_counter()
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        # --allow-chance: one epoch on a small subset may leave a model at chance; exportability is the test
        rc = cli(["export", str(run / "best.pt"), "--formats", "onnx,tflite", "--eval-limit",
                  str(verify_samples), "--out", str(out / "bundles" / name), "--force", "--allow-chance",
                  *(["--int8", "--calib", "digits", "--max-drop", "100"] if int8 else [])])
    rec["export_s"] = round(time.perf_counter() - t0, 1)
    rec["peak_rss_mb"] = _peak_rss_mb()
    if rc:
        rec.update(status="export failed", reason=_last_error(buf.getvalue()))
        return rec
    manifest = json.loads((out / "bundles" / name / "manifest.json").read_text())
    rec["artifacts"] = {a["file"]: {"agreement": a["verified"]["top1_agreement"],
                                    "max_abs_diff": a["verified"]["max_abs_diff"], "accuracy": a["verified"]["accuracy"],
                                    "size_bytes": a["size_bytes"]} for a in manifest["artifacts"]}
    rec["status"] = "ok"
    return rec


def _last_error(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.startswith("edgecnn:")]
    return (lines[-1] if lines else (text.strip().splitlines() or ["?"])[-1])[:300]


def render_table(results: list[dict], params: dict[str, int]) -> str:
    rows = ["| builder | params | status | input | 1-epoch test top-1 | ONNX / TFLite agreement | reason |",
            "|---|---:|---|---:|---:|---:|---|"]
    for r in results:
        p = params.get(r["name"])
        arts = r.get("artifacts") or {}
        agree = " / ".join(f"{100 * a['agreement']:.1f}%" for a in arts.values()) if arts else ""
        acc = r.get("test_acc_1_epoch")
        rows.append(f"| {r['name']} | {p / 1e6:.1f}M | {r['status']} | {r.get('size', '')} | "
                    f"{'' if acc is None else f'{100 * acc:.1f}%'} | {agree} | "
                    f"{(r.get('reason') or '').replace('|', '/')} |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", help="comma list of builders")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--train-limit", type=int, default=512)
    ap.add_argument("--verify-samples", type=int, default=200)
    ap.add_argument("--max-params", type=int, default=100_000_000)
    ap.add_argument("--timeout", type=int, default=1200, help="seconds per builder")
    ap.add_argument("--reverse", action="store_true", help="largest first (a second process sharing OUT)")
    ap.add_argument("--table", action="store_true", help="print the markdown table of OUT/results.jsonl")
    ap.add_argument("--int8", action="store_true", help="also export and verify int8 ONNX + TFLite")
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one builder in this process
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / "results.jsonl"
    if a.one:
        rec = run_one(a.one, out, a.size, a.train_limit, a.verify_samples, a.int8, a.lr)
        print("RESULT " + json.dumps(rec), flush=True)
        return 0
    sized = builders_by_size(a.max_params)
    params = dict(sized)
    done = {}
    if results_file.exists():
        for line in results_file.read_text().splitlines():
            rec = json.loads(line)
            done[rec["name"]] = rec
    if a.table:  # every builder, smallest first; those without a result say so
        rows = [done.get(n) or ({"name": n, "status": "not run",
                                 "reason": f"{p / 1e6:.0f}M parameters: above the sweep's {a.max_params / 1e6:.0f}M "
                                           "cap for a 1-thread CPU run"} if p > a.max_params else
                                {"name": n, "status": "not measured yet",
                                 "reason": "no result in this sweep folder (resume it: same command without --table)"})
                for n, p in sized]
        print(render_table(rows, params))
        measured = [r for r in rows if r["status"] not in ("not measured yet", "not run")]
        ok = sum(r["status"] == "ok" for r in measured)
        capped = sum(r["status"] == "not run" for r in rows)
        print(f"\n{ok} of {len(measured)} builders measured pass; {capped} above the parameter cap; "
              f"{len(sized) - len(measured) - capped} of {len(sized)} not measured yet")
        return 0
    only = set(a.only.split(",")) if a.only else None
    for name, n_params in (reversed(sized) if a.reverse else sized):
        if results_file.exists():  # another sweep process may share OUT (e.g. one with --reverse)
            done.update({json.loads(ln)["name"]: json.loads(ln) for ln in results_file.read_text().splitlines()})
        if name in done or (only and name not in only) or (a.reverse and n_params > a.max_params):
            continue
        if n_params > a.max_params:
            rec = {"name": name, "status": "not run",
                   "reason": f"{n_params / 1e6:.0f}M parameters: above the sweep's {a.max_params / 1e6:.0f}M cap "
                             "for a 1-thread CPU run"}
        else:
            t0 = time.perf_counter()
            env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
            try:
                p = subprocess.run([sys.executable, __file__, "--out", str(out), "--size", str(a.size),
                                    "--train-limit", str(a.train_limit), "--verify-samples", str(a.verify_samples),
                                    *(["--int8"] if a.int8 else []), "--lr", str(a.lr), "--one", name], capture_output=True, text=True, timeout=a.timeout, env=env)
                lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
                rec = json.loads(lines[-1][7:]) if lines else {
                    "name": name, "size": input_side(name, a.size), "status": "crashed",
                    "reason": _last_error(p.stderr + p.stdout)}
            except subprocess.TimeoutExpired:
                rec = {"name": name, "size": input_side(name, a.size), "status": "timeout",
                       "reason": f"over {a.timeout} s on 1 thread"}
            rec["total_s"] = round(time.perf_counter() - t0, 1)
        with results_file.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        print(f"{name}: {rec['status']} {rec.get('reason', '')} [{rec.get('total_s', 0)} s]", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
