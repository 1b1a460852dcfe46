"""TensorFlow Lite Micro for any full-integer int8 TFLite file: an imported one, or a bundle's own.

    edgecnn import-model theirs.tflite --labels labels.txt --formats tflm --device cortex-m7 --out B
    edgecnn export B --formats tflm --device cortex-m4 [--test DATA]     # a bundle that exists

There is no PyTorch model behind an imported file, so the TFLM interpreter is compared with LiteRT
running the same file on the same int8 inputs, twice:

- LiteRT's *reference* kernels (`OpResolverType.BUILTIN_REF`): plain C++ loops with the same
  fixed-point arithmetic as TFLM's reference kernels; the comparison that should match closely;
- LiteRT's *default* kernels (`OpResolverType.AUTO`, what the runtime uses: optimized builtin kernels
  and XNNPACK), whose int8 requantization rounds differently (docs/microcontrollers.md).

Both are recorded (`verified.litert`: top-1 agreement, max and mean |difference| in int8 output
steps); the gate is the reference kernels: with labelled data (`--data`/`--test`), the accuracy drop
against them; without, the share of inputs whose class changes (on seeded random int8 inputs).
Everything is built in a staging directory: a failure leaves the bundle (or --out) as it was.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from ..bundle import MANIFEST, Artifact, Bundle, write_manifest
from ..errors import EdgeCNNError
from .metrics import check_drop, measure
from .tflm_compare import compare_with_litert, litert_line

PARITY_INPUTS = 64  # seeded random int8 inputs compared without --data


def check_request(device: str | None) -> None:
    """Fail before anything is done: tflite-micro installed, the MCU profile known."""
    from .tflm import _runtime

    _runtime()
    if device:
        from ..devices.mcu import load_mcu_profile

        load_mcu_profile(device)


def tflm_artifact(artifacts: list[dict], where: str) -> dict:
    """The artifact TFLM runs: the int8 TFLite file (int8 in and out preferred)."""
    cands = [a for a in artifacts if a["format"] == "tflite" and a["precision"] == "int8"]
    cands.sort(key=lambda a: (a["input"]["dtype"] != "int8") + (a["output"]["dtype"] != "int8"))
    if not cands:
        have = ", ".join(f"{a['file']} ({a['format']} {a['precision']})" for a in artifacts) or "none"
        raise EdgeCNNError(f"{where}: no int8 TFLite file to run on a microcontroller (TensorFlow Lite Micro runs "
                           f"full-integer int8 .tflite models; artifacts: {have})")
    return cands[0]


def _dequantize(q: np.ndarray, quant: dict) -> np.ndarray:
    return ((q.astype(np.float32) - np.float32(quant["zero_point"])) * np.float32(quant["scale"])).astype(np.float32)


def _raw_inputs(stage: Path, rec: dict, x: np.ndarray | None, shape: list[int]) -> tuple[np.ndarray, str]:
    """The int8 inputs all three engines get: the runtime's own preparation of `x`, else seeded random int8."""
    if x is not None:
        from ..runtime.backends.litert import LiteRTBackend

        be = LiteRTBackend(Artifact(stage, rec), threads=1)
        try:
            return be.prepare(x), "data"
        finally:
            be.close()
    rng = np.random.default_rng(0)
    return rng.integers(-128, 128, size=(PARITY_INPUTS, *shape[1:]), dtype=np.int8), \
        f"{PARITY_INPUTS} seeded random int8 inputs"


def stage_tflm(stage: Path, manifest: dict, *, x: np.ndarray | None, y: np.ndarray | None, dataset: str | None,
               split: str | None, max_drop: float, device: str | None, sample: tuple[np.ndarray, str] | None,
               source: str, log: Callable[[str], None] = print) -> dict:
    """The manifest `tflm` block of the bundle staged in `stage`; writes stage/tflm/. EdgeCNNError on failure.

    x: float32 inputs as the runtime's backends take them (None: parity on random int8 inputs);
    y: their labels (None: no accuracy); sample: (raw image, label) embedded in main.cc for image inputs.
    """
    from ..utils import sha256_file
    from .tflm import (
        _captured_stderr,
        _interpreter,
        _invoke_all,
        check_tflm_model,
        measure_arena,
        sample_pixels,
        tflm_version,
    )
    from .tflm_sources import is_image, pixel_lut, write_sources

    rec = tflm_artifact(manifest["artifacts"], str(stage))
    file, spec, classes = rec["file"], manifest["input"], list(manifest["classes"])
    ops = check_tflm_model(stage / file, rec["input"], rec["output"], file)
    model = (stage / file).read_bytes()
    arena = measure_arena(model)
    with _captured_stderr():
        it = _interpreter(model, arena["arena_bytes"])
    shape = [int(v) for v in it.get_input_details(0)["shape"]]
    raw, inputs = _raw_inputs(stage, rec, x, shape)
    tflm_out = _invoke_all(it, raw)
    cmp, outs = compare_with_litert(stage / file, raw, tflm_out)
    logits, ref = _dequantize(tflm_out, rec["output"]["quant"]), _dequantize(outs["reference_kernels"],
                                                                            rec["output"]["quant"])
    if y is not None:
        v = measure(logits, y, ref, dataset=str(dataset), split=str(split))
        v["litert_default_accuracy"] = round(float((outs["default_kernels"].argmax(1) == y).mean()), 6)
    else:
        v = measure(logits, ref.argmax(1), ref, dataset=dataset or inputs, split=split or "parity")
        v.update(accuracy=None, reference_accuracy=None, drop_points=None, accuracy_measured=False)
    v.update(reference="LiteRT reference kernels (OpResolverType.BUILTIN_REF) on the same int8 inputs",
             interpreter=f"tflite-micro {tflm_version()}", litert=cmp)
    where = f"{file} in the TFLM interpreter"
    if y is not None:
        check_drop(where, v, max_drop)
    elif 100.0 * (1.0 - v["top1_agreement"]) > max_drop:
        raise EdgeCNNError(f"{where}: top-1 agreement with LiteRT's reference kernels {100 * v['top1_agreement']:.2f}% "
                           f"on {inputs}: more than --max-drop {max_drop:g}% of them change class")
    pixels = label = expected = None
    if is_image(spec) and sample is not None:
        pixels, label = sample_pixels(sample[0], spec), sample[1]
        q = pixel_lut(spec, rec["input"]["quant"])[np.arange(spec["channels"])[None, None, :], pixels]
        expected = classes[int(_invoke_all(it, q[None]).argmax(1)[0])]
    elif not is_image(spec) and x is not None:
        pixels = raw[0]  # the first real input, already int8
        label = classes[int(y[0])] if y is not None else None
        expected = classes[int(tflm_out[0].argmax())]
    (stage / "tflm").mkdir(exist_ok=True)
    names = write_sources(stage / "tflm", model=model, file=file, sha256=rec["sha256"], ops=ops, spec=spec,
                          classes=classes, inp=rec["input"], out=rec["output"], arena_bytes=arena["arena_bytes"],
                          tflm_version=tflm_version(), source=source, sample=pixels, sample_label=label,
                          expected=expected, input_shape=shape)
    block = {
        "model": file, "sha256": rec["sha256"], "ops": ops, "arena_bytes": arena["arena_bytes"],
        "allocation_report": arena["allocation_report"], "flash_bytes": len(model),
        "arena_measured_on": "x86-64 host, tflite-micro Python interpreter (the TFLM C++ runtime)",
        "sources": {f"tflm/{n}": sha256_file(stage / "tflm" / n) for n in names},
        "verified": v,
    }
    acc = ("accuracy not measured (no labelled data)" if v["accuracy"] is None else
           f"accuracy {100 * v['accuracy']:.2f}% (LiteRT reference kernels {100 * v['reference_accuracy']:.2f}%, "
           f"default kernels {100 * v['litert_default_accuracy']:.2f}%)")
    log(f"tflm: {where}: {acc}; {litert_line(cmp)}")
    log(f"tflm: arena {arena['arena_bytes']:,} B (measured), model data {len(model):,} B flash; ops {', '.join(ops)}")
    if device:
        from ..devices.mcu import fit, format_fit, load_mcu_profile

        block["fit"] = fit(block, load_mcu_profile(device))
        log(f"tflm: {format_fit(block['fit'])}")
    return block


def _verification_data(b: Bundle, data: str | None, data_root: str | None, samples: int | None,
                       log: Callable[[str], None]) -> tuple:
    """(x, y, dataset, split, sample) for an image bundle, from --test/--data or the manifest's dataset."""
    from ..data import evaluation_split, load_dataset, preprocessed
    from .tflm_sources import is_image

    ver = b.manifest.get("verification") or {}
    dataset = data or (ver.get("dataset") if ver.get("accuracy_measured", True) else None)
    if not dataset:
        log("tflm: no data named (pass --test DATA): the TFLM interpreter is compared with LiteRT on random inputs")
        return None, None, None, None, None
    if b.input.get("kind") == "features":  # .npy arrays, as import-model and verify read them
        from .import_spec import load_features_data

        x, y = load_features_data(dataset, b.input["shape"], len(b.classes))
        if samples is not None and samples < len(y):
            idx = np.sort(np.random.default_rng(0).choice(len(y), size=samples, replace=False))
            x, y = x[idx], y[idx]
        log(f"tflm: verifying on {len(y)} samples of {dataset}")
        return x, y, Path(dataset).name, "all", None
    if not is_image(b.input):
        raise EdgeCNNError(f"{b.path}: input kind {b.input.get('kind')!r}: TFLM verification on a dataset needs "
                           "image or features input; leave out --test to compare with LiteRT on random inputs")
    ds = load_dataset(dataset, data_root, classes=list(b.classes), channels=int(b.input["channels"]))
    if len(ds.classes) != len(b.classes):
        raise EdgeCNNError(f"dataset '{dataset}' has {len(ds.classes)} classes, the bundle {len(b.classes)}")
    split = evaluation_split(ds, trained_on=(b.manifest.get("source") or {}).get("dataset"))
    x, y = preprocessed(ds, split, b.input, samples)
    if len(y) == 0:
        raise EdgeCNNError(f"split '{split}' of '{dataset}' is empty: nothing to verify the TFLM model on")
    images, labels = ds.split(split)
    log(f"tflm: verifying on {len(y)} images of {dataset}/{split}")
    return x, y, ds.name, split, (np.asarray(images[0]), list(b.classes)[int(np.asarray(labels)[0])])


def add_tflm(bundle: str | Path, *, device: str | None = None, data: str | None = None, data_root: str | None = None,
             samples: int | None = None, max_drop: float = 1.0, log: Callable[[str], None] = print) -> Path:
    """Add (or redo) the TFLM target of an existing bundle; the bundle is replaced only on success."""
    from ..utils import staged_directory
    from .report import format_table, write_report
    from .tflm import check_tflm_model, table_row, tflm_version

    check_request(device)
    b = Bundle.load(bundle)
    b.check_integrity()
    rec = tflm_artifact(b.manifest["artifacts"], str(b.path))
    check_tflm_model(b.path / rec["file"], rec["input"], rec["output"], rec["file"])  # before any data is loaded
    x, y, dataset, split, sample = _verification_data(b, data, data_root, samples, log)
    manifest = {k: v for k, v in b.manifest.items() if k != "tflm"}
    with staged_directory(b.path) as stage:
        shutil.copytree(b.path, stage, dirs_exist_ok=True,
                        ignore=lambda d, names: ["tflm"] if Path(d) == b.path else [])
        manifest["tflm"] = stage_tflm(stage, manifest, x=x, y=y, dataset=dataset, split=split, max_drop=max_drop,
                                      device=device, sample=sample, source=rec["file"], log=log)
        manifest["tool_versions"] = {**(manifest.get("tool_versions") or {}), "tflite-micro": tflm_version()}
        write_report(stage, manifest)
        write_manifest(stage, manifest)
    log("\n" + format_table([table_row(manifest["tflm"])]))
    log(f"bundle updated: {b.path} (tflm/ sources, manifest 'tflm' block)")
    return b.path


def is_bundle_dir(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()
