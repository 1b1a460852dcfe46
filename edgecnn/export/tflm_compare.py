"""TFLM against LiteRT on the same int8 inputs: reference kernels and default kernels (numpy + ai_edge_litert).

LiteRT's reference kernels (`OpResolverType.BUILTIN_REF`) compute with the same fixed-point
requantization as TFLM's reference kernels; its default kernels (`AUTO`: optimized builtins and
XNNPACK, what the runtime uses) round differently, so their outputs may differ by a few more int8
steps. Both comparisons are recorded; docs/microcontrollers.md says what to expect.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

KERNELS = (("reference_kernels", "BUILTIN_REF"), ("default_kernels", "AUTO"))


def litert_raw(path: Path, raw: np.ndarray, resolver: str) -> np.ndarray:
    """Raw outputs (N, -1) of LiteRT on raw inputs in the file's own dtype/layout, one invoke per sample."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path), num_threads=1,
                     experimental_op_resolver_type=getattr(OpResolverType, resolver))
    it.allocate_tensors()
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    outs = []
    for k in range(len(raw)):
        it.set_tensor(i, raw[k : k + 1])
        it.invoke()
        outs.append(it.get_tensor(o).reshape(1, -1))
    return np.concatenate(outs)


def compare_with_litert(path: Path, raw: np.ndarray, tflm_out: np.ndarray) -> tuple[dict, dict[str, np.ndarray]]:
    """TFLM's int8 outputs against LiteRT's reference and default kernels; also LiteRT's raw outputs by name."""
    rec, outs = {}, {}
    for name, resolver in KERNELS:
        y = litert_raw(path, raw, resolver)
        d = np.abs(tflm_out.astype(np.int32) - y.astype(np.int32))
        rec[name] = {"op_resolver": resolver, "samples": int(len(raw)),
                     "top1_agreement": round(float((tflm_out.argmax(1) == y.argmax(1)).mean()), 6),
                     "max_abs_diff_steps": int(d.max()), "mean_abs_diff_steps": round(float(d.mean()), 4),
                     "identical_outputs": round(float((d == 0).all(1).mean()), 6)}
        outs[name] = y
    return rec, outs


def litert_line(cmp: dict) -> str:
    r, d = cmp["reference_kernels"], cmp["default_kernels"]
    return (f"against LiteRT's reference kernels: top-1 agreement {100 * r['top1_agreement']:.2f}%, output within "
            f"{r['max_abs_diff_steps']} int8 steps (mean {r['mean_abs_diff_steps']:.2f}); against its default "
            f"kernels: {100 * d['top1_agreement']:.2f}%, within {d['max_abs_diff_steps']} steps "
            f"(mean {d['mean_abs_diff_steps']:.2f}), on {r['samples']} inputs")
