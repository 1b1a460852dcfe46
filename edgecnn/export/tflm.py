"""TensorFlow Lite Micro target: compatibility check, measured arena, verification in the TFLM interpreter.

The TFLM model is the bundle's full-integer int8 TFLite file itself (litert-torch + torchao pt2e,
see export/tflite.py): int8 input and output, int8/int32 tensors only. Here it is

- checked: every op must have a TFLM kernel (`TFLM_OPS`, the builtin operators that
  `tflite::MicroMutableOpResolver` can add) and no tensor may be float (TFLM on an MCU without an
  FPU, and the int8 kernels, want full-integer models); a failure names the ops;
- measured: the smallest tensor arena the TFLM interpreter (`tflite-micro` on PyPI, the real TFLM
  C++ runtime compiled for this host) allocates the model in, found by bisection, plus the
  interpreter's own allocation report;
- verified: the model runs in that interpreter on the test split, and its logits are compared
  with PyTorch's like every other artifact (`export.metrics.measure`).

Arena sizes are measured on this 64-bit host: TFLM's persistent bookkeeping structs hold pointers,
so a 32-bit MCU needs the same activation buffers and slightly less bookkeeping.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import EdgeCNNError
from .metrics import check_drop, measure
from .tflm_ops import TFLM_OPS, quantize_input  # noqa: F401 (quantize_input: re-exported)

INTEGER_TYPES = ("INT8", "INT16", "INT32", "INT64", "BOOL")
ARENA_ALIGN = 16  # TFLM aligns arena allocations to 16 bytes; the bisection works in these steps
MICRO_EXTRA = "pip install 'edgecnn[micro]'"


def _runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise EdgeCNNError(f"the tflm target needs tflite-micro (the TFLM interpreter) on this host: {MICRO_EXTRA}") \
            from None
    return runtime


def tflm_version() -> str | None:
    try:
        from tflite_micro.python.tflite_micro import _version
    except ImportError:
        return None
    return str(_version.__version__)


@contextlib.contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """TFLM's C++ side prints (allocation report, errors) straight to file descriptor 2: collect it."""
    sys.stderr.flush()
    saved = os.dup(2)
    out: list[str] = []
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            out.append(held.read().decode(errors="replace"))


def model_ops(path: str | Path) -> tuple[list[str], dict[str, list[str]]]:
    """(builtin op names in first-use order, {op: [tensor types it touches]}) of a .tflite file."""
    runtime = _runtime()
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    model = runtime.convert_bytearray_to_object(bytearray(Path(path).read_bytes()))
    op_names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
    ops: list[str] = []
    types: dict[str, list[str]] = {}
    for sg in model.subgraphs:
        for op in sg.operators if sg.operators is not None else []:
            code = model.operatorCodes[op.opcodeIndex]
            builtin = runtime.get_builtin_code_from_operator_code(code)
            name = op_names.get(builtin, f"BUILTIN_{builtin}")
            if name == "CUSTOM":
                name = f"CUSTOM:{(code.customCode or b'?').decode(errors='replace')}"
            if name not in types:
                ops.append(name)
                types[name] = []
            for t in [*(op.inputs if op.inputs is not None else []), *(op.outputs if op.outputs is not None else [])]:
                if t >= 0:
                    tname = type_names.get(sg.tensors[t].type, str(sg.tensors[t].type))
                    if tname not in types[name]:
                        types[name].append(tname)
    return ops, types


def check_tflm_model(path: str | Path, inp: dict, out: dict, file: str) -> list[str]:
    """Raise one EdgeCNNError unless the model is full-integer int8 with TFLM kernels for every op.

    `inp`/`out` are the artifact's manifest I/O blocks. Returns the ops in first-use order.
    """
    ops, types = model_ops(path)
    missing = [op for op in ops if op not in TFLM_OPS]
    if missing:
        raise EdgeCNNError(f"{file}: TensorFlow Lite Micro has no kernel for op(s) {', '.join(missing)} "
                           f"(the model uses {', '.join(ops)}); replace those layers to target a microcontroller")
    floats = [op for op in ops if any(t not in INTEGER_TYPES for t in types[op])]
    if floats or inp["dtype"] != "int8" or out["dtype"] != "int8":
        what = f"op(s) {', '.join(floats)} compute in float" if floats else \
            f"input {inp['dtype']} / output {out['dtype']} are not int8"
        raise EdgeCNNError(f"{file}: not a full-integer int8 model ({what}); TFLM needs int8 in, int8 out and "
                           "integer kernels throughout")
    return ops


def _interpreter(model: bytes, arena: int):
    runtime = _runtime()
    return runtime.Interpreter.from_bytes(model, arena_size=int(arena))


def _allocates_here(model: bytes, arena: int) -> bool:
    with _captured_stderr():
        try:
            _interpreter(model, arena)
        except RuntimeError:
            return False
    return True


def _allocates(model: bytes, arena: int) -> bool:
    """Does AllocateTensors succeed in an arena of `arena` bytes?

    Tried in a forked child: with an arena a few bytes short, tflite-micro's Python interpreter can
    crash the process instead of failing (a [1, 640] dense autoencoder: SIGSEGV at 13,872 bytes,
    failure at 13,856, success at 13,888). A child killed by a signal counts as "does not allocate".
    """
    if not hasattr(os, "fork"):
        return _allocates_here(model, arena)
    sys.stdout.flush()
    sys.stderr.flush()
    with warnings.catch_warnings():
        # Python warns that JAX (imported by litert-torch) has threads; the child touches none of their
        # state: it only builds a TFLM interpreter, with its stderr sent to /dev/null, and exits.
        warnings.filterwarnings("ignore", message=r".*os\.fork\(\) was called", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message=r".*use of fork\(\) may lead to deadlocks", category=DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # child: answer with the exit status only, never return into the caller's code
        code = 1
        try:
            import faulthandler

            faulthandler.disable()  # a crash here is an answer ("too small"), not a traceback to print
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            _interpreter(model, arena)
            code = 0
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _parse_report(text: str) -> dict:
    """The RecordingMicroAllocator's 'Arena allocation total/head/tail N bytes' lines."""
    found = {k: int(v) for k, v in re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", text)}
    if "total" not in found:
        raise EdgeCNNError("the TFLM interpreter printed no allocation report (unexpected tflite-micro version?)")
    return {"total_bytes": found["total"], "head_bytes": found.get("head"), "tail_bytes": found.get("tail")}


def measure_arena(model: bytes, input_dtype=np.int8) -> dict:
    """The smallest tensor arena (bytes) the TFLM interpreter allocates this model in, and its report.

    Upper bound: the interpreter's recorded total after one invoke on a generous arena; then a
    bisection between 0 and that bound, in ARENA_ALIGN steps, on "AllocateTensors succeeds".
    """
    generous = max(len(model) * 10, 1 << 20)
    while True:
        with _captured_stderr() as err:
            try:
                it = _interpreter(model, generous)
                break
            except RuntimeError:
                pass
        if generous > (1 << 31):
            raise EdgeCNNError(f"the TFLM interpreter cannot allocate this model ({err[0].strip()[:300]})")
        generous *= 4
    details = it.get_input_details(0)
    it.set_input(np.zeros(details["shape"], dtype=details["dtype"]), 0)
    with _captured_stderr() as err:
        it.invoke()
    with _captured_stderr() as report:
        it.print_allocations()
    report_block = _parse_report(report[0])
    hi = -(-report_block["total_bytes"] // ARENA_ALIGN) * ARENA_ALIGN + ARENA_ALIGN
    while not _allocates(model, hi):  # the recorded total excludes the arena's start alignment
        hi *= 2
    lo = 0  # lo never allocates, hi always does
    while hi - lo > ARENA_ALIGN:
        mid = (lo + hi) // 2 // ARENA_ALIGN * ARENA_ALIGN
        if mid <= lo:
            break
        if _allocates(model, mid):
            hi = mid
        else:
            lo = mid
    return {"arena_bytes": int(hi), "allocation_report": report_block}




def run_tflm(model: bytes, x_nchw: np.ndarray, arena: int, inp: dict, out: dict,
             progress: Callable[[int], None] | None = None, layout: str = "NHWC") -> np.ndarray:
    """float32 logits of the TFLM interpreter on float32 NCHW input (NHWC int8 in, int8 out, dequantized).

    layout "ND" (a features bundle): the input is already in the model's own shape, no transpose."""
    with _captured_stderr() as err:
        try:
            it = _interpreter(model, arena)
        except RuntimeError as e:
            raise EdgeCNNError(f"the TFLM interpreter failed to load the model ({e}; {err[0].strip()[:300]})") from None
    qi, qo = inp["quant"], out["quant"]
    x = x_nchw if layout == "ND" else x_nchw.transpose(0, 2, 3, 1)
    x_all = quantize_input(np.ascontiguousarray(x), qi["scale"], qi["zero_point"])
    y = _invoke_all(it, x_all, progress).astype(np.float32)
    return ((y - qo["zero_point"]) * qo["scale"]).astype(np.float32)


def _invoke_all(it, x_all: np.ndarray, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Raw int8 outputs for a batch of int8 NHWC inputs, one invoke per image (TFLM models have batch 1)."""
    ys = []
    for i in range(len(x_all)):
        it.set_input(x_all[i : i + 1], 0)
        it.invoke()
        ys.append(np.array(it.get_output(0), dtype=np.int8).reshape(1, -1))
        if progress is not None:
            progress(i + 1)
    return np.concatenate(ys)


def sample_pixels(image: np.ndarray, spec: dict) -> np.ndarray:
    """A dataset image (RGB or grey uint8) after the colour conversion and resize of the runtime: uint8 HxWxC."""
    from ..preprocess import _convert_color, resize, to_uint8_image

    arr, order = to_uint8_image(image, "RGB")
    arr = resize(_convert_color(arr, order, spec["color"]), spec["height"], spec["width"], spec["resize"],
                 spec["interpolation"])
    return arr.reshape(spec["height"], spec["width"], spec["channels"])


def build_tflm(stage: Path, rec: dict, *, spec: dict, classes: list[str], x_test: np.ndarray, y_test: np.ndarray,
               reference: np.ndarray | None, dataset: str, max_drop: float, sample: tuple[np.ndarray, str] | None,
               source: str, log: Callable[[str], None] = print) -> dict:
    """The manifest `tflm` block for the int8 TFLite artifact `rec` of a bundle being staged in `stage`.

    Checks TFLM compatibility, measures the arena, verifies the model in the TFLM interpreter on
    (x_test, y_test) and writes the C/C++ sources into stage/tflm/. Raises EdgeCNNError on failure.
    """
    from ..utils import sha256_file
    from .tflm_sources import write_sources

    file = rec["file"]
    model = (stage / file).read_bytes()
    ops = check_tflm_model(stage / file, rec["input"], rec["output"], file)
    arena = measure_arena(model)
    qi, qo = rec["input"]["quant"], rec["output"]["quant"]
    raw = quantize_input(np.ascontiguousarray(x_test.transpose(0, 2, 3, 1)), qi["scale"], qi["zero_point"])
    with _captured_stderr():
        it = _interpreter(model, arena["arena_bytes"])
    tflm_out = _invoke_all(it, raw)
    logits = ((tflm_out.astype(np.float32) - qo["zero_point"]) * qo["scale"]).astype(np.float32)
    from .tflm_compare import compare_with_litert, litert_line

    cmp, _ = compare_with_litert(stage / file, raw, tflm_out)  # the same int8 inputs in LiteRT, both kernel sets
    verified = {**measure(logits, y_test, reference, dataset=dataset, split="test"),
                "interpreter": f"tflite-micro {tflm_version()}", "litert": cmp}
    litert = rec.get("verified") or {}
    if litert.get("samples") == verified["samples"]:
        verified["accuracy_vs_litert_points"] = round(100.0 * (verified["accuracy"] - litert["accuracy"]), 3)
    check_drop(f"{file} in the TFLM interpreter", verified, max_drop)
    expected = pixels = label = None
    if sample is not None and spec.get("kind") == "series":
        from ..series import preprocess_series, raw_features

        label = sample[1]
        q = quantize_input(preprocess_series(sample[0], spec).transpose(1, 2, 0), rec["input"]["quant"]["scale"],
                           rec["input"]["quant"]["zero_point"])  # 1 x T' x C' (NHWC without N)
        # main.cc gets the raw window (its C code standardizes and quantizes) or, with a front end, q itself
        pixels = q if spec.get("frontend") else raw_features(sample[0], spec).T.astype(np.float32)
        with _captured_stderr():
            it = _interpreter(model, arena["arena_bytes"])
        expected = classes[int(_invoke_all(it, q[None]).argmax(1)[0])]
    elif sample is not None:
        pixels, label = sample_pixels(sample[0], spec), sample[1]
        from .tflm_sources import pixel_lut

        lut = pixel_lut(spec, rec["input"]["quant"])
        q = lut[np.arange(spec["channels"])[None, None, :], pixels]  # HxWxC int8 via the LUT, as main.cc does
        with _captured_stderr():
            it = _interpreter(model, arena["arena_bytes"])
        expected = classes[int(_invoke_all(it, q[None]).argmax(1)[0])]
    (stage / "tflm").mkdir(exist_ok=True)
    names = write_sources(stage / "tflm", model=model, file=file, sha256=rec["sha256"], ops=ops, spec=spec,
                          classes=classes, inp=rec["input"], out=rec["output"], arena_bytes=arena["arena_bytes"],
                          tflm_version=tflm_version(), source=source, sample=pixels, sample_label=label,
                          expected=expected)
    block = {
        "model": file,
        "sha256": rec["sha256"],
        "ops": ops,
        "arena_bytes": arena["arena_bytes"],
        "allocation_report": arena["allocation_report"],
        "flash_bytes": len(model),
        "arena_measured_on": "x86-64 host, tflite-micro Python interpreter (the TFLM C++ runtime)",
        "sources": {f"tflm/{n}": sha256_file(stage / "tflm" / n) for n in names},
        "verified": verified,
    }
    v = verified
    log(f"tflm: {file} in the TFLM interpreter: accuracy {100 * v['accuracy']:.2f}%"
        + (f", agreement {100 * v['top1_agreement']:.2f}% with PyTorch" if v.get("top1_agreement") is not None else "")
        + f"; arena {arena['arena_bytes']:,} B, model data {len(model):,} B flash; ops {', '.join(ops)}")
    log(f"tflm: {litert_line(cmp)}")
    return block


def table_row(block: dict) -> dict:
    """The TFLM model as a row of export.verify.format_table."""
    return {"file": block["model"], "format": "tflm", "precision": "int8", "size_bytes": block["flash_bytes"],
            "verified": block.get("verified")}


def verify_tflm_block(bundle_dir: Path, manifest: dict, x_nchw: np.ndarray, labels: np.ndarray,
                      reference: np.ndarray | None, dataset: str, log: Callable[[str], None] = print) -> dict | None:
    """Re-run a bundle's TFLM model in the TFLM interpreter (with its recorded arena); None without tflite-micro."""
    from ..utils import sha256_file

    block = manifest["tflm"]
    try:
        _runtime()
    except EdgeCNNError:
        log(f"tflm: tflite-micro (the TFLM interpreter) is not installed on this host, so {block['model']} was NOT "
            f"re-verified for TensorFlow Lite Micro ({MICRO_EXTRA})")
        return None
    root = Path(bundle_dir).resolve()
    for file, digest in {block["model"]: block["sha256"], **block.get("sources", {})}.items():
        path = root / file
        if root not in path.resolve().parents:
            raise EdgeCNNError(f"{bundle_dir}: the manifest's tflm block names {file!r}, outside the bundle")
        if not path.is_file():
            raise EdgeCNNError(f"{path}: missing (the manifest's tflm block lists it)")
        if sha256_file(path) != digest:
            raise EdgeCNNError(f"{path}: sha256 does not match the manifest (file corrupt or replaced)")
    rec = next((a for a in manifest["artifacts"] if a["file"] == block["model"]), None)
    if rec is None:
        raise EdgeCNNError(f"{bundle_dir}: the tflm model {block['model']} is not among the manifest's artifacts")
    model = (bundle_dir / block["model"]).read_bytes()
    logits = run_tflm(model, x_nchw, block["arena_bytes"], rec["input"], rec["output"], layout=rec["layout"])
    out = {**measure(logits, labels, reference, dataset=dataset, split="test"),
           "interpreter": f"tflite-micro {tflm_version()}"}
    old = block.get("verified") or {}
    if reference is None and old.get("reference_accuracy") is not None and old.get("dataset") == dataset \
            and old.get("samples") == out["samples"]:  # same data as at export: the PyTorch accuracy still holds
        out["reference_accuracy"] = old["reference_accuracy"]
        out["drop_points"] = round(100.0 * (old["reference_accuracy"] - out["accuracy"]), 3)
    return out
