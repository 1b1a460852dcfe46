"""Bar (issue 15): transfer learning from a local weights file beats training from scratch on the
same small subset, offline and on real data.

1. Pre-train LeNet-5 on Fashion-MNIST (Debian's /usr/share/datasets/fashion-mnist, 55,000 training
   images; --pre-epochs, default 3) with `edgecnn train`; its best.pt is the weights file.
2. On N real digits (the embedded set, seeded subsets `--train-limit N`), train LeNet-5 twice with
   the same defaults: from scratch, and with `--weights fashion/best.pt` (backbone copied, classifier
   replaced: other classes). Both are measured on the 1,000 held-out test digits in eval mode.

    .venv/bin/python benchmarks/transfer_small.py [--sizes 50,200] [--seeds 0,1,2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from edgecnn.train.trainer import train


def run(out: Path, **kw) -> dict:
    t0 = time.perf_counter()
    train("lenet5", out=out, overwrite=True, progress=False, threads=1, **kw)
    s = json.loads((out / "metrics.json").read_text())
    return {"test_top1": s["test"]["top1"], "seconds": round(time.perf_counter() - t0, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="50,200", help="digits training subsets (images)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, help="fine-tune/scratch epochs (default: edgecnn's, 40 for small sets)")
    ap.add_argument("--pre-epochs", type=int, default=3)
    ap.add_argument("--work", default="/tmp/edgecnn-transfer-small")
    ap.add_argument("--json")
    a = ap.parse_args()
    work = Path(a.work)
    pre = work / "fashion"
    if not (pre / "best.pt").exists():
        r = run(pre, data="fashion-mnist", epochs=a.pre_epochs, seed=0)
        print(f"pre-trained on Fashion-MNIST: test top-1 {r['test_top1']:.4f} ({r['seconds']} s)", flush=True)
    rows = []
    for n in [int(v) for v in a.sizes.split(",")]:
        for seed in [int(v) for v in a.seeds.split(",")]:
            for mode in ("scratch", "weights"):
                extra = {"weights": pre / "best.pt"} if mode == "weights" else {}
                r = run(work / f"digits{n}-s{seed}-{mode}", data="digits", train_limit=n, seed=seed,
                        epochs=a.epochs, **extra)
                rows.append({"train_images": n, "seed": seed, "start": mode, **r})
                print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'digits':>7} {'scratch (mean, runs)':>32} {'--weights fashion (mean, runs)':>40} {'gain':>7}")
    ok = True
    for n in sorted({r["train_images"] for r in rows}):
        s = [r["test_top1"] for r in rows if r["train_images"] == n and r["start"] == "scratch"]
        w = [r["test_top1"] for r in rows if r["train_images"] == n and r["start"] == "weights"]
        gain = statistics.mean(w) - statistics.mean(s)
        ok = ok and gain > 0
        print(f"{n:>7} {statistics.mean(s):>8.4f} {str([round(v, 3) for v in s]):>23} "
              f"{statistics.mean(w):>8.4f} {str([round(v, 3) for v in w]):>31} {100 * gain:>+6.1f}pt")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
