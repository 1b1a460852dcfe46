"""REPORT.md: what was measured when a bundle was made, readable without any tool."""

from __future__ import annotations

from pathlib import Path

from ..utils import atomic_write_text
from .verify import format_table


def render_report(manifest: dict) -> str:
    m, src = manifest["model"], manifest.get("source") or {}
    ver = manifest.get("verification") or {}
    inp = manifest["input"]
    lines = [
        f"# {manifest['name']}",
        "",
        f"Model `{m['name']}` ({m['params']:,} parameters, {m['macs']:,} MACs per image), "
        f"{len(manifest['classes'])} classes, exported {manifest['created']}.",
        f"Source checkpoint: `{Path(src.get('checkpoint', '?')).name}` (sha256 {str(src.get('sha256', ''))[:16]}...), "
        f"trained on `{src.get('dataset')}`.",
        f"Input: {inp['channels']}x{inp['height']}x{inp['width']} {inp['color']}, resize {inp['resize']} "
        f"({inp['interpolation']}), x*{inp['scale']:.6g}, mean {inp['mean']}, std {inp['std']}. "
        "ONNX files take NCHW, TFLite files NHWC; all output logits.",
        "",
        "## Verification",
        "",
        f"Each artifact was run (onnxruntime / ai_edge_litert, CPU) on {ver.get('samples')} real "
        f"`{ver.get('dataset')}` {ver.get('split')}-split images, preprocessed exactly as the runtime does, and "
        "compared with the PyTorch model on the same inputs: max abs logit difference, top-1 agreement with "
        "PyTorch, top-1 accuracy and its drop from PyTorch's accuracy "
        f"(the export fails above {ver.get('max_drop_points')} points).",
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


def write_report(bundle_dir: str | Path, manifest: dict) -> None:
    atomic_write_text(Path(bundle_dir) / "REPORT.md", render_report(manifest))
