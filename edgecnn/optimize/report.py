"""The end of a search: the choice and why, the table, the Pareto plot, the JSON report, the bundle.

The rule: among trials measured on the target whose accuracy is within --max-drop points of the
input checkpoint (PyTorch fp32 on the same test images), the one with the lowest p50 latency wins
(ties: higher accuracy). If none is within budget, the closest (smallest drop, then fastest) is named and
the command fails (exit 2) after writing everything measured.

Outputs in OUT/: optimize.json (schema edgecnn.optimize/1), optimize.md, pareto.png, trials.jsonl (all
trials), bundle/ (the chosen artifact alone, its manifest recording the chosen backend and threads).
"""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from ..bundle import MANIFEST, Bundle, write_manifest
from ..errors import EdgeCNNError
from ..labels import threads_label
from ..profile.report import markdown_table, text_table
from ..profile.stats import format_ms
from ..utils import atomic_write_json, atomic_write_text, staged_directory
from .trials import settings_label

SCHEMA = "edgecnn.optimize/1"
HEADER = ["", "trial", "test top-1", "drop pts", "p50 ms", "p90 ms", "size KB", "speed-up"]


def p50(t: dict) -> float:
    return float(t["latency_ms"]["p50"])


def choose(trials: Sequence[dict], max_drop: float) -> tuple[dict | None, list[dict]]:
    """(fastest trial within budget or None, trials within budget sorted fastest first)."""
    within = sorted((t for t in trials if t["drop_points"] <= max_drop + 1e-9), key=lambda t: (p50(t), -t["accuracy"]))
    return (within[0] if within else None), within


def closest(trials: Sequence[dict]) -> dict | None:
    return min(trials, key=lambda t: (t["drop_points"], p50(t))) if trials else None


def plain_baseline(trials: Sequence[dict]) -> dict | None:
    """The plain fp32 ONNX export of the unpruned checkpoint on onnxruntime, at its best thread count."""
    plain = [t for t in trials if not t["ratio"] and t["variant"] == "float" and t["format"] == "onnx"
             and t["precision"] == "fp32" and t["backend"] == "onnxruntime"]
    return min(plain, key=p50) if plain else None


def pareto_front(trials: Sequence[dict]) -> list[dict]:
    """Trials no other trial beats on both latency and accuracy, fastest first."""
    front, best = [], -1.0
    for t in sorted(trials, key=lambda t: (p50(t), -t["accuracy"])):
        if t["accuracy"] > best:
            front.append(t)
            best = t["accuracy"]
    return front


def _row(t: dict, mark: str, base: dict | None) -> list[str]:
    speed = f"{p50(base) / p50(t):.2f}x" if base else "-"
    return [mark, settings_label(t), f"{100 * t['accuracy']:.2f}%", f"{t['drop_points']:+.2f}",
            format_ms(p50(t)), format_ms(t["latency_ms"]["p90"]), f"{t['size_bytes'] / 1024:.1f}", speed]


def table_rows(trials: Sequence[dict], chosen: dict | None, base: dict | None, max_drop: float) -> list[list[str]]:
    rows = []
    for t in sorted(trials, key=p50):
        mark = "*" if t is chosen else ("" if t["drop_points"] <= max_drop + 1e-9 else "x")
        rows.append(_row(t, mark, base))
    return rows


def why(chosen: dict, within: list[dict], trials: Sequence[dict], base: dict | None, max_drop: float) -> str:
    faster = [t for t in trials if p50(t) < p50(chosen)]
    parts = [f"fastest of the {len(within)} measured trial(s) within the {max_drop:g}-point budget: "
             f"{settings_label(chosen)}, p50 {format_ms(p50(chosen))} ms, test top-1 {100 * chosen['accuracy']:.2f}% "
             f"({chosen['drop_points']:+.2f} points)"]
    if base is not None and base is not chosen:
        parts.append(f"{p50(base) / p50(chosen):.2f}x faster than the plain fp32 ONNX export on onnxruntime "
                     f"({format_ms(p50(base))} ms at its best thread count, {threads_label(base['threads'])})")
    if len(within) > 1:
        nxt = within[1]
        parts.append(f"runner-up {settings_label(nxt)} at {format_ms(p50(nxt))} ms")
    if faster:
        worst = min(faster, key=p50)
        parts.append(f"{len(faster)} faster trial(s) lose too much accuracy (fastest: {settings_label(worst)}, "
                     f"{format_ms(p50(worst))} ms, {worst['drop_points']:+.2f} points)")
    return "; ".join(parts)


def shown_trials(trials: Sequence[dict], chosen: dict | None, base: dict | None) -> list[dict]:
    """The Pareto front plus the chosen trial and the plain baseline, fastest first (the report's short table)."""
    front = pareto_front(trials)
    return [t for t in sorted(trials, key=p50) if t in front or t is chosen or t is base]


def pareto_figure(trials: Sequence[dict], chosen: dict | None, base: dict | None, base_acc: float, max_drop: float,
                  title: str) -> Any:
    """Left: test top-1 vs p50 of every trial, the front, baseline and budget lines. Right (when the plain
    fp32 ONNX export was measured): the speed-up of the short table's trials over it, linear bars."""
    from ..profile.plots import _plain_log_ticks, accuracy_axis, pyplot, ratio_bars

    plt = pyplot()
    if base is None:
        fig, ax = plt.subplots(figsize=(8, 5.2))
    else:
        fig, (ax, ax_r) = plt.subplots(1, 2, figsize=(15, 5.6), gridspec_kw={"width_ratios": [3, 2]})
    colors = {"onnx": "tab:blue", "tflite": "tab:orange"}
    markers = {"fp32": "o", "fp16": "s", "int8": "^"}
    for fmt in sorted({t["format"] for t in trials}):
        for prec in sorted({t["precision"] for t in trials}):
            pts = [t for t in trials if t["format"] == fmt and t["precision"] == prec]
            if pts:
                ax.scatter([p50(t) for t in pts], [100 * t["accuracy"] for t in pts], s=22, alpha=0.55,
                           c=colors.get(fmt, "tab:gray"), marker=markers.get(prec, "o"), label=f"{fmt} {prec}")
    front = pareto_front(trials)
    ax.plot([p50(t) for t in front], [100 * t["accuracy"] for t in front], "-", c="black", lw=1, alpha=0.6,
            label="Pareto front")
    budget = 100 * base_acc - max_drop
    ax.axhline(100 * base_acc, ls=":", c="grey", lw=1, label=f"baseline (PyTorch fp32) {100 * base_acc:.2f}%")
    ax.axhline(budget, ls="--", c="tab:red", lw=1, label=f"budget: baseline - {max_drop:g} pt")
    if base is not None:
        ax.scatter([p50(base)], [100 * base["accuracy"]], s=120, facecolors="none", edgecolors="black",
                   label="plain fp32 ONNX")
    if chosen is not None:
        ax.scatter([p50(chosen)], [100 * chosen["accuracy"]], s=260, marker="*", c="gold", edgecolors="black",
                   zorder=5, label=f"chosen: {settings_label(chosen)}")
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("p50 latency, ms (log scale)")
    accuracy_axis(ax, [100 * t["accuracy"] for t in trials], [100 * base_acc, budget], label="test top-1, %")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3)  # below: never over a point
    if base is not None:
        shown = shown_trials(trials, chosen, base)
        ratio_bars(ax_r, [settings_label(t) for t in shown], [p50(base) / p50(t) for t in shown],
                   reference="plain fp32 ONNX", title="speed-up (p50): Pareto front + plain export, chosen gold",
                   highlight=next((i for i, t in enumerate(shown) if t is chosen), None))
        ax_r.title.set_fontsize(10)
    return fig


def pareto_plot(trials: Sequence[dict], chosen: dict | None, base: dict | None, base_acc: float, max_drop: float,
                path: Path, title: str) -> Path:
    from ..profile.plots import save_figure

    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(pareto_figure(trials, chosen, base, base_acc, max_drop, title), path)


def write_chosen_bundle(out: Path, chosen: dict, summary: dict) -> Path:
    """OUT/bundle: the chosen artifact alone (plus labels and samples), checked after it is written."""
    src_file = out / chosen["artifact"]
    src_dir = src_file.parent
    source = Bundle.load(src_dir)
    manifest = dict(source.manifest)
    keep = [a for a in manifest["artifacts"] if a["file"] == src_file.name]
    if not keep:
        raise EdgeCNNError(f"{src_file}: the chosen artifact is not in its bundle's manifest")
    manifest["artifacts"] = keep
    manifest["name"] = f"{manifest['name']}-optimized"
    manifest["optimized"] = summary
    dest = out / "bundle"
    with staged_directory(dest) as stage:
        shutil.copy2(src_file, stage / src_file.name)
        if (src_dir / "samples").is_dir():
            shutil.copytree(src_dir / "samples", stage / "samples")
        from ..export.report import write_report

        write_report(stage, manifest)
        write_manifest(stage, manifest)
        Bundle.load(stage).check_integrity()
    return dest


def final_check(bundle_dir: Path, chosen: dict, x, y) -> dict[str, Any]:
    """Re-run the chosen bundle through the chosen backend (when installed here) on the test images."""
    import numpy as np

    from ..runtime.backends import available_backends, open_backend

    b = Bundle.load(bundle_dir)
    b.check_integrity()
    art = b.artifacts[0]
    if not available_backends().get(chosen["backend"]):
        return {"integrity": "ok", "accuracy": None, "reason": f"{chosen['backend']} is not installed here"}
    engine = open_backend(art, chosen["backend"], chosen["threads"])
    try:
        logits = np.concatenate([engine.infer(x[i : i + 64]) for i in range(0, len(x), 64)])
    finally:
        engine.close()
    return {"integrity": "ok", "backend": chosen["backend"], "accuracy": float((logits.argmax(1) == y).mean()),
            "images": int(len(y))}


def finish(state: dict, log: Callable[[str], None] = print) -> dict:
    """Choose, write optimize.{json,md}, pareto.png and bundle/; raise if no trial meets the budget."""
    run, target = state["run"], state["target"]
    out = Path(run.out)
    all_trials = list(state["trials"].trials.values())
    trials = [t for t in all_trials if t.get("status") == "ok" and t.get("target") == target.name]
    failed = [t for t in all_trials if t.get("status") == "failed" and t.get("target") == target.name]
    if not trials:
        raise EdgeCNNError(f"no trial could be measured on {target.label}"
                           + (f" (first failure: {failed[0]['reason']})" if failed else ""))
    chosen, within = choose(trials, run.max_drop)
    base = plain_baseline(trials)
    near = None if chosen else closest(trials)
    reason = why(chosen, within, trials, base, run.max_drop) if chosen else (
        f"no trial is within {run.max_drop:g} point(s) of the baseline {100 * state['baseline_accuracy']:.2f}%; "
        f"closest: {settings_label(near)} at {100 * near['accuracy']:.2f}% ({near['drop_points']:+.2f} points), "
        f"p50 {format_ms(p50(near))} ms")
    title = (f"{state['model']} on {state['dataset']}: test top-1 vs p50 on {target.label} "
             f"({len(trials)} trials)")
    plot = pareto_plot(trials, chosen, base, state["baseline_accuracy"], run.max_drop, out / "pareto.png", title)
    summary = None
    if chosen is not None:
        summary = {k: chosen[k] for k in ("ratio", "finetune_epochs", "variant", "qat_epochs", "format", "precision",
                                          "backend", "threads", "target", "accuracy", "drop_points")}
        summary.update(p50_ms=p50(chosen), speedup_vs_plain_fp32_onnx=(p50(base) / p50(chosen)) if base else None,
                       why=reason)
        bundle_dir = write_chosen_bundle(out, chosen, summary)
        from ..data import load_dataset, preprocessed

        spec = Bundle.load(bundle_dir).input
        ds = load_dataset(run.data, run.data_root, input_spec=spec)
        x, y = preprocessed(ds, "test", spec, run.test_limit)
        summary["final_check"] = final_check(bundle_dir, chosen, x, y)
    result = {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": str(Path(run.checkpoint).resolve()), "model": state["model"], "dataset": state["dataset"],
        "target": {"name": target.name, "label": target.label, "backends": target.backends, "cpus": target.cpus},
        "baseline_accuracy": state["baseline_accuracy"], "test_images": state["test_images"],
        "max_drop_points": run.max_drop, "settings": state["settings"],
        "threads": state["threads"], "backends": state["backends"],
        "trials_measured": len(trials), "trials_failed": len(failed), "trials_resumed": state["trials"].resumed,
        "elapsed_s": round(state["elapsed_s"], 1), "stopped": state["stopped"], "notes": state["notes"],
        "chosen": summary, "closest": near, "plain_fp32_onnx": base, "why": reason,
        "pareto_front": [settings_label(t) for t in pareto_front(trials)],
        "files": {"trials": "trials.jsonl", "plot": plot.name, "bundle": "bundle" if chosen else None},
    }
    atomic_write_json(out / "optimize.json", result)
    rows = table_rows(shown_trials(trials, chosen, base), chosen, base, run.max_drop)
    md = [f"# edgecnn optimize: {state['model']} on {state['dataset']}", "",
          f"- target: {target.label} ({', '.join(f'{k} {v}' for k, v in target.backends.items())}; "
          f"{target.cpus} cores); tried {', '.join(threads_label(t) for t in state['threads'])}",
          f"- baseline: PyTorch fp32 {100 * state['baseline_accuracy']:.2f}% on {state['test_images']} test images; "
          f"budget {run.max_drop:g} point(s)",
          f"- {len(trials)} trials measured ({state['trials'].resumed} from an earlier run), {len(failed)} failed, "
          f"{state['elapsed_s'] / 60:.1f} min" + (f"; stopped: {state['stopped']}" if state["stopped"] else ""),
          f"- **{'chosen' if chosen else 'no trial within budget'}**: {reason}", "",
          "Pareto front (speed-up vs the plain fp32 ONNX export; * chosen, x over budget):", "",
          markdown_table(HEADER, rows), "", "All trials, fastest first:", "",
          markdown_table(HEADER, table_rows(trials, chosen, base, run.max_drop))]
    if state["notes"]:
        md += ["", "Notes:", ""] + [f"- {n}" for n in state["notes"]]
    if failed:
        md += ["", "Failed trials:", ""] + [f"- {settings_label(t)}: {t.get('reason')}" for t in failed]
    atomic_write_text(out / "optimize.md", "\n".join(md) + "\n")
    log("")
    log(text_table(HEADER, rows))
    log("")
    log(("chosen: " if chosen else "") + reason)
    if state["stopped"]:
        log(f"stopped early: {state['stopped']} (run again with a larger --budget-min to continue)")
    log(f"wrote {out / 'optimize.json'}, {out / 'optimize.md'}, {plot}"
        + (f", {out / 'bundle'} (verified: {MANIFEST} + sha256; test top-1 "
           f"{100 * summary['final_check']['accuracy']:.2f}% through {chosen['backend']})"
           if chosen and summary["final_check"].get("accuracy") is not None else ""))
    if chosen is None:
        raise EdgeCNNError(reason + f"; every trial is in {out / 'trials.jsonl'}")
    return result
