"""The streaming bar of issue 28, measured: BasicMotions' 40 test recordings concatenated into one CSV stream
(a fixed shuffle, seed 0: 29 changes of activity), classified by `edgecnn run` in sliding windows and
smoothed; the smoothed label in force at the end of each recording must be right for >= 95 % of them.

    python benchmarks/series_stream.py [--seeds 0 1 2] [--epochs 15] [--out docs/benchmarks/series-stream]

Per seed: `edgecnn train cnn1d --data ts:BasicMotions --sample-rate 10 --epochs E --seed S`, `edgecnn export
--formats onnx`, then `edgecnn run BUNDLE --source csv:STREAM --headless` with each (--hop, --average) asked
for. Writes results.json (per seed and setting: segments right, smoothed and raw, detections, windows a
second) and, for the first seed at the default setting, timeline.png (truth, each window's top-1, the
smoothed label, detections).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SEGMENT = 100


def stream_csv(folder: Path, path: Path) -> list[str]:
    from aeon.datasets import load_from_ts_file

    x, y = load_from_ts_file(str(folder / "BasicMotions_TEST.ts"))
    order = np.random.default_rng(0).permutation(len(x))
    np.savetxt(path, np.concatenate([x[i].T for i in order]), delimiter=",",
               header="acc_x,acc_y,acc_z,gyr_x,gyr_y,gyr_z", comments="", fmt="%.6f")
    return [str(y[i]).lower() for i in order]


def edgecnn(*args: str) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "edgecnn", *map(str, args)], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"edgecnn {' '.join(map(str, args))} failed:\n{res.stderr[-2000:]}")
    return res


def at_segment_ends(records: list[dict], key: str, segments: int) -> list[str | None]:
    out = []
    for k in range(segments):
        end = (k + 1) * SEGMENT
        last = max((r for r in records if r["samples"][1] <= end), key=lambda r: r["samples"][1], default=None)
        label = None if last is None else last["smoothed"]["label"] if key == "smoothed" else last["top"][0]["label"]
        out.append(label.lower() if label else None)
    return out


def timeline(records: list[dict], truth: list[str], classes: list[str], hop: int, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = dict(zip([c.lower() for c in classes], plt.cm.tab10.colors))
    fig, ax = plt.subplots(figsize=(11, 2.8), dpi=110)
    for k, t in enumerate(truth):
        ax.broken_barh([(k * SEGMENT / 10, SEGMENT / 10)], (2.1, 0.8), color=colors[t])
    for r in records:
        end = r["samples"][1] / 10
        ax.broken_barh([(end - hop / 10, hop / 10)], (1.1, 0.8), color=colors[r["top"][0]["label"].lower()])
        if r["smoothed"]["label"]:
            ax.broken_barh([(end - hop / 10, hop / 10)], (0.1, 0.8), color=colors[r["smoothed"]["label"].lower()])
        if r["detected"]:
            ax.plot([end], [-0.25], marker="^", color=colors[r["detected"].lower()], markersize=5)
    ax.set_yticks([2.5, 1.5, 0.5, -0.25], ["recording", "window top-1", "smoothed", "detections"])
    ax.set_xlabel("stream time (s, 10 Hz)")
    ax.set_xlim(0, len(truth) * SEGMENT / 10)
    ax.set_ylim(-0.6, 3.0)
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=colors[c.lower()]) for c in classes], labels=classes,
              ncol=len(classes), loc="upper center", bbox_to_anchor=(0.5, 1.32), frameon=False)
    ax.set_title(title, fontsize=9, pad=26)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--settings", nargs="+", default=["25:3", "10:3", "25:1", "25:5"],
                    help="HOP:AVERAGE pairs to stream with (the first is the figure's)")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/series-stream"))
    args = ap.parse_args()
    import aeon

    folder = Path(aeon.__file__).parent / "datasets" / "data" / "BasicMotions"
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"stream": "BasicMotions TEST, 40 recordings x 100 samples, shuffled with seed 0",
                     "epochs": args.epochs, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        csv = work / "stream.csv"
        truth = stream_csv(folder, csv)
        results["changes"] = sum(a != b for a, b in zip(truth, truth[1:]))
        for seed in args.seeds:
            run, bundle = work / f"run{seed}", work / f"bundle{seed}"
            edgecnn("train", "cnn1d", "--data", f"ts:{folder}", "--sample-rate", "10", "--epochs", args.epochs,
                    "--seed", seed, "--out", run)
            edgecnn("export", run / "best.pt", "--formats", "onnx", "--out", bundle)
            classes = (bundle / "labels.txt").read_text().split()
            for i, setting in enumerate(args.settings):
                hop, average = (int(v) for v in setting.split(":"))
                t0 = time.perf_counter()
                res = edgecnn("run", bundle, "--source", f"csv:{csv}", "--headless", "--hop", hop, "--average",
                              average, "--backend", "onnxruntime", "--precision", "fp32", "--report",
                              work / "report.json")
                wall = time.perf_counter() - t0
                records = [json.loads(x) for x in res.stdout.splitlines()]
                report = json.loads((work / "report.json").read_text())
                smoothed = at_segment_ends(records, "smoothed", len(truth))
                raw = at_segment_ends(records, "top", len(truth))
                row = {"seed": seed, "hop": hop, "average": average, "windows": len(records),
                       "segments": len(truth), "smoothed_right": sum(a == b for a, b in zip(smoothed, truth)),
                       "raw_right": sum(a == b for a, b in zip(raw, truth)), "detections": report["detections"],
                       "windows_per_s": round(report["wps"], 1), "process_wall_s": round(wall, 2),
                       "wrong": [k for k, (a, b) in enumerate(zip(smoothed, truth)) if a != b]}
                results["runs"].append(row)
                print(json.dumps(row), flush=True)
                if seed == args.seeds[0] and i == 0:
                    timeline(records, truth, classes, hop, args.out / "timeline.png",
                             f"cnn1d seed {seed}, windows of 100 samples every {hop}, mean of {average}: "
                             f"{row['smoothed_right']}/{len(truth)} recordings right at their end")
    results["machine"] = f"{os.cpu_count()} CPUs"
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out / 'results.json'} and {args.out / 'timeline.png'}")


if __name__ == "__main__":
    main()
