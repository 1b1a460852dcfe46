"""REPORT.md: what was measured when a bundle was made, readable without any tool."""

from __future__ import annotations

from pathlib import Path

from ..preprocess import describe_input
from ..utils import atomic_write_text


def format_table(rows: list[dict]) -> str:
    """A plain-text table of artifact verification results (also used in REPORT.md)."""
    header = ["artifact", "format", "precision", "size", "max abs diff", "agreement", "accuracy", "drop (pts)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for a in rows:
        v = a.get("verified") or {}

        def pct(x):
            return "n/a" if x is None else f"{100 * x:.2f}%"

        cells = [
            a["file"],
            a["format"],
            a["precision"],
            f"{a['size_bytes'] / 1024:.1f} KiB",
            "n/a" if v.get("max_abs_diff") is None else f"{v['max_abs_diff']:.3g}",
            pct(v.get("top1_agreement")) if v.get("top1_agreement") is not None or v.get("agreement_with_first") is None
            else f"{pct(v['agreement_with_first'])} (vs {v.get('agreement_with', 'first file')})",
            pct(v.get("accuracy")),
            "n/a" if v.get("drop_points") is None else f"{v['drop_points']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _input_line(inp: dict, src: dict) -> str:
    how = f" (normalization: {src['normalization']})" if src.get("normalization") else ""
    return (f"Input: {describe_input(inp)}{how}. "
            + (f"Note: {src['normalization_note']} " if src.get("normalization_note") else ""))


def render_report(manifest: dict) -> str:
    m, src = manifest["model"], manifest.get("source") or {}
    inp = manifest["input"]
    lines = [
        f"# {manifest['name']}",
        "",
        f"Model `{m['name']}` ("
        + (f"{m['params']:,} parameters, {m['macs']:,} MACs per image" if m.get("params") is not None
           else "parameters not counted") + (f", counted from {m['counted_from'].removeprefix('the ')}"
                                              if m.get("counted_from") and m.get("params") is not None else "")
        + "), "
        f"{len(manifest['classes'])} classes, exported {manifest['created']}.",
        _source_line(src),
        _input_line(inp, src)
        + ("ONNX files take NCHW, TFLite files NHWC; all output logits." if not src.get("imported") else
           "Layout and output kind (logits or probabilities) per file, as read from the file: "
           + ", ".join(f"`{a['file']}` {a['layout']} {a['output'].get('kind', 'logits')}"
                       for a in manifest["artifacts"]) + "."),
        "",
        "## Verification",
        "",
        _verification_text(manifest),
        "",
        format_table(manifest["artifacts"]),
        "",
    ]
    cal = manifest.get("calibration")
    if cal:
        lines += [f"int8 calibration: {cal['samples']} images from the `{cal['dataset']}` {cal['split']} split "
                  "(test images are never used for calibration).", ""]
    quant = [a for a in manifest["artifacts"] if a["input"].get("quant") or a["output"].get("quant")]
    for a in quant:
        qi, qo = a["input"].get("quant"), a["output"].get("quant")
        lines.append(f"`{a['file']}` I/O: input {a['input']['dtype']} {qi}, output {a['output']['dtype']} {qo} "
                     "(real = scale * (q - zero_point)).")
    if quant:
        lines.append("")
    tflm = manifest.get("tflm")
    if tflm:
        from .tflm import table_row

        v = tflm.get("verified") or {}
        lines += ["## TensorFlow Lite Micro", "",
                  f"`{tflm['model']}` runs in the TFLM interpreter (`{v.get('interpreter')}`, the TFLM C++ runtime on "
                  f"the export host): ops {', '.join(tflm['ops'])}; smallest tensor arena {tflm['arena_bytes']:,} bytes "
                  f"(measured), model data {tflm['flash_bytes']:,} bytes of flash. C/C++ sources: "
                  + ", ".join(f"`{f}`" for f in tflm.get("sources", {})) + ".", "",
                  format_table([table_row(tflm)]), ""]
        if tflm.get("fit"):
            from ..devices.mcu import format_fit

            lines += [f"Microcontroller: {format_fit(tflm['fit'])}.", ""]
    trt = manifest.get("tensorrt")
    if trt:
        lines += ["TensorRT: engines are tied to one GPU and TensorRT version, so none is shipped; on the device run "
                  f"`edgecnn build-engine {manifest['name']} [--fp16|--int8]` (builds from `{trt['onnx']}`"
                  + (f", int8 from `{trt['onnx_int8']['file']}`" if trt.get("onnx_int8") else "") + ").", ""]
    lines += ["## Tool versions", ""]
    lines += [f"- {k} {v}" for k, v in manifest.get("tool_versions", {}).items()]
    return "\n".join(lines) + "\n"


def _verification_text(manifest: dict) -> str:
    ver, src = manifest.get("verification") or {}, manifest.get("source") or {}
    if src.get("imported"):
        if not ver.get("accuracy_measured"):
            return ("**Not verified**: imported without `--data`, so no accuracy was measured (no PyTorch model "
                    "exists to compare with). Run `edgecnn verify BUNDLE --data D`.")
        return (f"Each imported file was run through the runtime's own backend (onnxruntime / LiteRT, CPU) on "
                f"{ver.get('samples')} real `{ver.get('dataset')}` test-split images, preprocessed exactly as the "
                "runtime does: top-1 accuracy, and top-1 agreement with the first file when several were imported. "
                "There is no PyTorch model to compare logits with.")
    text = (f"Each artifact was run (onnxruntime / ai_edge_litert, CPU) on {ver.get('samples')} real "
            f"`{ver.get('dataset')}` {ver.get('split')}-split images, preprocessed exactly as the runtime does, and "
            "compared with the PyTorch model on the same inputs: max abs logit difference, top-1 agreement with ")
    if ver.get("accuracy_measured", True):
        return text + ("PyTorch, top-1 accuracy and its drop from PyTorch's accuracy "
                       f"(the export fails above {ver.get('max_drop_points')} points).")
    return text + (f"PyTorch (the export fails if more than {ver.get('max_drop_points')}% of the images change "
                   "class). **Accuracy was not measured**: no labelled test data was given (parity on calibration "
                   "images only).")


def _source_line(src: dict) -> str:
    if src.get("checkpoint"):
        return (f"Source checkpoint: `{Path(src['checkpoint']).name}` (sha256 {str(src.get('sha256', ''))[:16]}...), "
                f"trained on `{src.get('dataset')}`.")
    if src.get("module"):
        return f"Source: the live module `{src['module']}` (weights sha256 {str(src.get('sha256', ''))[:16]}...)."
    if src.get("imported"):
        return f"Source: imported model files {', '.join(f'`{f}`' for f in src['imported'])} (made elsewhere)."
    return "Source: unknown."


def write_report(bundle_dir: str | Path, manifest: dict) -> None:
    atomic_write_text(Path(bundle_dir) / "REPORT.md", render_report(manifest))
