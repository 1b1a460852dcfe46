"""`edgecnn demo`: the whole pipeline on the embedded digits, offline, in a few minutes.

    train LeNet-5 -> prune (kept only if accuracy holds) -> export ONNX + TFLite, fp32 + int8, verified
    -> profile every artifact -> classify a video of held-out digits (or a camera) with the overlay

Every step writes into one output folder and is skipped when its result is already there, so an
interrupted demo resumes where it stopped (`--fresh` starts over). It ends with one table.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import time
from pathlib import Path

DEFAULT_OUT = "runs/demo"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="the whole pipeline on the embedded digits: train, prune, export, verify, profile, classify a video",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    p.add_argument("--source", default=None,
                   help="what to classify at the end: a camera index (0), a video file, a folder or a URI "
                        "(default: a video made from held-out test digits, with known labels)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the trainer's for digits)")
    p.add_argument("--prune-ratio", type=float, default=0.3, help="structured pruning ratio (default 0.3)")
    p.add_argument("--finetune-epochs", type=int, default=15,
                   help="fine-tune epochs after pruning (default 15: measured, recovers the full accuracy)")
    p.add_argument("--runs", type=int, default=200, help="timed runs per artifact when profiling (default 200)")
    p.add_argument("--max-frames", type=int, default=None, help="stop the video step after N frames")
    p.add_argument("--fresh", action="store_true", help="delete --out first instead of resuming")
    p.set_defaults(func=_demo)


def _step(n: int, title: str) -> None:
    print(f"\n=== [{n}/6] {title}", flush=True)


def _train(out: Path, epochs: int | None) -> Path:
    from .train.trainer import train

    run = out / "train"
    best, last = run / "best.pt", run / "last.pt"
    metrics = run / "metrics.json"
    if best.exists() and metrics.exists() and "test" in json.loads(metrics.read_text()):
        print(f"already trained: {best} (delete it or pass --fresh to retrain)")
        return best
    if last.exists():
        print(f"resuming the interrupted training run from {last}")
        return train("lenet5", "digits", run, epochs=epochs, resume=last)
    return train("lenet5", "digits", run, epochs=epochs, overwrite=True)


def _test_accuracy(ckpt: Path) -> float | None:
    from .train.checkpoint import read_checkpoint

    return (read_checkpoint(ckpt).get("metrics") or {}).get("test_acc")  # trainer and pruner both record it


def _prune(out: Path, best: Path, ratio: float, finetune_epochs: int) -> Path:
    """Prune + fine-tune; keep the pruned model only if it loses at most 1 point of test accuracy."""
    from .compress.prune import PruneSettings, prune_checkpoint

    run = out / "pruned"
    pruned = run / "pruned.pt"
    if not pruned.exists():
        prune_checkpoint(best, PruneSettings(ratio=ratio), finetune_epochs=finetune_epochs, out=run, data="digits")
    else:
        print(f"already pruned: {pruned}")
    before, after = _test_accuracy(best), _test_accuracy(pruned)
    if before is not None and after is not None and 100 * (before - after) > 1.0:
        print(f"pruned model loses {100 * (before - after):.2f} points (> 1.0): exporting the unpruned model")
        return best
    if before is not None and after is not None:
        print(f"pruned model: test top-1 {100 * after:.2f}% vs {100 * before:.2f}% before: exporting it")
    return pruned


def _export(out: Path, ckpt: Path) -> Path:
    from .bundle import Bundle
    from .errors import EdgeCNNError
    from .export.api import export_bundle
    from .utils import sha256_file

    bundle = out / "bundle"
    try:
        existing = Bundle.load(bundle)
        if existing.manifest.get("source", {}).get("sha256") == sha256_file(ckpt):
            print(f"already exported: {bundle}")
            return bundle
    except EdgeCNNError:
        pass
    return export_bundle(ckpt, ("onnx", "tflite"), int8=True, calib="digits", out=bundle, force=True,
                         name="lenet5-digits-demo")


def _profile(out: Path, bundle: Path, runs: int) -> dict:
    from .profile.profiler import profile_bundle
    from .profile.report import console_summary, write_markdown, write_report

    path = out / "profile.json"
    report = profile_bundle(bundle, precision="all", runs=runs)
    write_report(path, report)
    write_markdown(out / "profile.md", report)
    print(console_summary(report))
    print(f"profile report: {path} (and profile.md)")
    return report


def _video(out: Path) -> tuple[str, list[str] | None]:
    from .data import load_dataset
    from .data.video import write_digit_video

    video = out / "digits_test.mp4"
    if not video.exists() or not video.with_suffix(".labels.json").exists():
        write_digit_video(load_dataset("digits"), video, count=100, frames_per_image=3)
    labels = json.loads(video.with_suffix(".labels.json").read_text())["labels"]
    print(f"test video: {video} ({len(labels)} frames of held-out digits the model never saw)")
    return str(video), labels


def _fastest(report: dict) -> dict:
    """The profiled configuration with the lowest p50 (every artifact in the bundle passed verification)."""
    return min(report["results"], key=lambda r: r["latency_ms"]["p50"])


def _classify(out: Path, bundle: Path, source: str, truth: list[str] | None, max_frames: int | None,
              report: dict) -> dict:
    from .runtime import Classifier
    from .runtime.app import RunOptions, run

    # Precision by measurement, not by rule: int8 is not faster for every model on every CPU.
    best = _fastest(report)
    print(f"using the fastest artifact measured in step 4: {best['artifact']} on {best['backend']} "
          f"(p50 {best['latency_ms']['p50']:.3f} ms)")
    clf = Classifier(bundle, backend=best["backend"], precision=best["precision"])
    d = clf.describe()
    print("runtime: " + ", ".join(f"{k}={v}" for k, v in d.items() if not isinstance(v, (dict, list))))
    stream = io.StringIO()
    opts = RunOptions(source=source, headless=True, save=str(out / "annotated.mp4"),
                      report=str(out / "run_summary.json"), max_frames=max_frames, top_k=3)
    summary = run(clf, opts, stdout=stream)
    frames = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    (out / "predictions.jsonl").write_text(stream.getvalue())
    if truth is not None and frames:
        hits = sum(f["top"][0]["label"] == truth[f["frame"]] for f in frames if f["frame"] < len(truth))
        summary["video_accuracy"] = hits / len(frames)
        print(f"video: {hits}/{len(frames)} frames classified correctly ({100 * hits / len(frames):.1f}%)")
    print(f"annotated video: {out / 'annotated.mp4'}; per-frame predictions: {out / 'predictions.jsonl'}")
    return summary


def _final_table(bundle: Path, report: dict) -> str:
    from .bundle import Bundle

    # One row per artifact: its format's usual backend (OpenVINO rows run the same ONNX files).
    timing = {r["artifact"]: r for r in report["results"] if r.get("threads") == report["results"][0].get("threads")
              and r["backend"] in ("onnxruntime", "litert")}
    header = ["format", "precision", "size KB", "test top-1", "agreement", "p50 ms", "p90 ms", "FPS"]
    rows = []
    for a in Bundle.load(bundle).artifacts:
        v = a.info.get("verified") or {}
        t = timing.get(a.info["file"])
        lat = t["latency_ms"] if t else None
        rows.append([
            a.format, a.precision, f"{a.info['size_bytes'] / 1024:.1f}",
            f"{100 * v['accuracy']:.2f}%" if "accuracy" in v else "-",
            f"{100 * v['top1_agreement']:.2f}%" if "top1_agreement" in v else "-",
            f"{lat['p50']:.3f}" if lat else "-", f"{lat['p90']:.3f}" if lat else "-",
            f"{1000 / lat['mean']:.0f}" if lat else "-",  # FPS = 1000 / mean ms, as in every table
        ])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).rjust(w) for c, w in zip(r, widths)) for r in [header, *rows]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _demo(args: argparse.Namespace) -> int:
    from .errors import EdgeCNNError

    out = Path(args.out)
    if not 0 < args.prune_ratio < 1:
        raise EdgeCNNError(f"--prune-ratio must be in (0, 1), got {args.prune_ratio}")
    if args.source is not None:  # fail now, not after minutes of training, if the source cannot be opened
        from .runtime.sources import open_source

        open_source(args.source).close()
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    _step(1, "train LeNet-5 on the embedded real digits (3,600 train / 400 val / 1,000 test)")
    best = _train(out, args.epochs)
    _step(2, f"structured pruning ({args.prune_ratio:.0%} of channels) + fine-tuning, with measured latency")
    chosen = _prune(out, best, args.prune_ratio, args.finetune_epochs)
    _step(3, "export ONNX + TFLite, fp32 + int8 (calibrated on the training split), verified against PyTorch")
    bundle = _export(out, chosen)
    print(f"bundle: {bundle}")
    _step(4, "profile every artifact (warm-up, then percentiles)")
    report = _profile(out, bundle, args.runs)
    _step(5, "the classification source")
    if args.source is None:
        source, truth = _video(out)
    else:
        source, truth = args.source, None
        print(f"source: {source}")
    _step(6, "classify it in real time with the torch-free runtime (overlay saved to a video)")
    summary = _classify(out, bundle, source, truth, args.max_frames, report)
    print(f"\nedgecnn demo finished in {time.perf_counter() - t0:.0f} s; everything is in {out}/")
    print(_final_table(bundle, report))
    if "video_accuracy" in summary:
        print(f"live video: {summary.get('frames', '?')} frames, top-1 {100 * summary['video_accuracy']:.1f}% "
              f"against the known labels")
    return 0
