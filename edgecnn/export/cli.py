"""`edgecnn export`, `edgecnn verify`, `edgecnn import-model`, `edgecnn build-engine`. Heavy imports happen in the handlers."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli_vocab import hidden_alias
from .import_spec import PRESETS as PRESET_NAMES


def register(sub: argparse._SubParsersAction) -> None:
    """Add this area's subcommands; handlers import heavy libraries lazily."""
    p = sub.add_parser(
        "export",
        help="export a checkpoint to a verified bundle (ONNX, TFLite, TensorRT-ready)",
        description="Export a checkpoint to a bundle directory: model files, manifest.json, labels.txt, "
        "REPORT.md. Every artifact is verified against PyTorch on the checkpoint's test split. "
        "Given a bundle directory instead (exported or imported), `--formats tflm` adds TensorFlow Lite Micro "
        "from its int8 TFLite file, verified against LiteRT (on --test DATA, or on random inputs).",
    )
    p.add_argument("checkpoint", help="edgecnn checkpoint (.pt) from `edgecnn train` or `edgecnn prune`, or a "
                                      "bundle directory (with --formats tflm)")
    p.add_argument("--formats", default="onnx,tflite",
                   help="comma list of onnx, tflite, tensorrt, tflm (TFLite Micro, needs --int8) (default: onnx,tflite)")
    p.add_argument("--fp16", action="store_true", help="also write fp16 artifacts")
    p.add_argument("--int8", action="store_true", help="also write int8 artifacts (needs --calib)")
    p.add_argument("--calib", metavar="DATA", help="dataset whose training split calibrates int8 (e.g. digits)")
    p.add_argument("--calib-size", type=int, default=200, metavar="N", help="calibration images (default 200)")
    p.add_argument("--data-root", help="where datasets live (for datasets that are not embedded)")
    p.add_argument("--max-drop", type=float, default=1.0, metavar="PTS",
                   help="fail if an artifact loses more top-1 accuracy points than this (default 1.0)")
    hidden_alias(p, p.add_argument("--eval-limit", dest="verify_samples", type=int, metavar="N",
                                   help="verify on a seeded subset of N test images (default: all)"), "--verify-samples")
    p.add_argument("--test", metavar="DATA", help="verify on this dataset instead (default: the checkpoint's "
                                                  "test split); a flat folder:PATH is used whole")
    p.add_argument("--out", help="bundle directory (default: export/<model>-<dataset>)")
    p.add_argument("--name", help="bundle name in the manifest (default: the directory name)")
    p.add_argument("--force", action="store_true", help="replace an --out that holds a different bundle")
    p.add_argument("--device", metavar="PROFILE", help="with tflm: say whether the model fits this microcontroller "
                   "profile (cortex-m4, cortex-m7, esp32-s3, rp2040)")
    p.add_argument("--allow-chance", action="store_true",
                   help="export even a model at chance level (training flagged it, or its test accuracy is no "
                        "better than always predicting the commonest class)")
    p.set_defaults(func=_export)

    v = sub.add_parser(
        "verify",
        help="re-verify a bundle: integrity, agreement with PyTorch, accuracy",
        description="Check sha256s, then run every artifact on real data. With the source checkpoint (found "
        "via the manifest or --checkpoint) and torch, compares logits with PyTorch; otherwise accuracy only.",
    )
    v.add_argument("bundle", help="bundle directory")
    v.add_argument("--data", help="dataset to verify on (default: the one in the manifest)")
    v.add_argument("--data-root", help="where datasets live")
    v.add_argument("--checkpoint", help="source checkpoint (default: the path in the manifest, if unchanged)")
    hidden_alias(v, v.add_argument("--eval-limit", dest="samples", type=int, metavar="N",
                                   help="verify on a seeded subset of N test images (default: all)"), "--samples")
    v.add_argument("--split", choices=("all", "train", "val", "test"),
                   help="default: all of a folder:PATH the model was not trained on, else test")
    v.add_argument("--max-drop", type=float, default=1.0, metavar="PTS", help="fail above this drop (default 1.0)")
    v.add_argument("--write", action="store_true", help="record the new numbers in manifest.json and REPORT.md")
    v.set_defaults(func=_verify)

    i = sub.add_parser(
        "import-model",
        help="wrap ONNX/TFLite classifier files made elsewhere into a verified bundle",
        description="Read each file's I/O (names, NCHW/NHWC layout, dtype, int8 quant params, class count, "
        "softmax at the end) from the file itself, check the class count against --labels, and with --data "
        "measure every file's accuracy (and their agreement). An integer input's quantization says the pixel "
        "range (int8 scale 1 / zero point -128: raw 0..255 pixels); flags that contradict it are refused. "
        "Inputs that are not images import as features (.npy arrays). Teachable Machine exports "
        "(model_unquant.tflite / model.tflite + labels.txt of '0 Name' lines) are recognized.",
    )
    i.add_argument("files", nargs="+", metavar="FILE", help=".onnx or .tflite files of the same model")
    i.add_argument("--labels", required=True, help="class names, one per line (or Teachable Machine '0 Name')")
    i.add_argument("--size", metavar="HxW", help="input size (default: read from the file)")
    i.add_argument("--channels", type=int, choices=(1, 3), help="input channels (default: read from the file)")
    i.add_argument("--mean", type=float, nargs="+", help="per-channel mean after scaling pixels by --scale "
                   "(default: read from an integer input's quantization; float inputs 0, Teachable Machine 0.5)")
    i.add_argument("--std", type=float, nargs="+", help="per-channel std (default: from the quantization; float 1)")
    i.add_argument("--scale", type=float, help="pixel multiplier before --mean/--std (default 1/255)")
    i.add_argument("--preset", choices=sorted(PRESET_NAMES), metavar="NAME", help="a named convention: "
                   "teachable-machine, or a Keras applications family (keras-mobilenet: -1..1, keras-resnet/"
                   "keras-vgg: BGR minus the ImageNet mean, keras-densenet: ImageNet mean/std, keras-efficientnet: "
                   f"raw 0..255); one of {', '.join(sorted(PRESET_NAMES))}")
    i.add_argument("--kind", choices=("image", "features"), help="what the input is (default: read from the "
                   "file: an image batch whose range is a pixel range, else features fed from .npy arrays)")
    i.add_argument("--color", choices=("RGB", "BGR", "GRAY"), help="channel order the model expects "
                   "(default RGB, or GRAY for 1 channel)")
    i.add_argument("--resize", choices=("stretch", "center_crop"), help="default stretch (Teachable Machine: "
                   "center_crop)")
    i.add_argument("--data", help="dataset that measures accuracy (a flat folder:PATH is used whole; its test "
                   "split otherwise); for a features model an .npz with arrays x and y")
    i.add_argument("--data-root", help="where datasets live")
    i.add_argument("--eval-limit", dest="samples", type=int, metavar="N",
                   help="measure on N test images (default: all)")
    i.add_argument("--out", help="bundle directory (default: export/<first file's name>)")
    i.add_argument("--name", help="bundle name in the manifest (default: the directory name)")
    i.add_argument("--force", action="store_true", help="replace an --out that holds a different bundle")
    i.add_argument("--formats", metavar="tflm", help="also target TensorFlow Lite Micro from the int8 .tflite file: "
                   "op check, measured arena, verification against LiteRT, C sources in tflm/")
    i.add_argument("--device", metavar="PROFILE", help="with --formats tflm: say whether the model fits this "
                   "microcontroller profile (cortex-m4, cortex-m7, esp32-s3, rp2040)")
    i.set_defaults(func=_import_model)

    b = sub.add_parser(
        "build-engine",
        help="build (and cache) a TensorRT engine from a bundle's ONNX, on the device",
        description="Build a TensorRT engine with the tensorrt Python API (or tensorrt_rtx), cached with a "
        "timing cache under BUNDLE/engines/. int8 uses the bundle's QDQ ONNX (export with --int8).",
    )
    b.add_argument("bundle", help="bundle directory")
    g = b.add_mutually_exclusive_group()
    g.add_argument("--fp16", action="store_true", help="allow fp16 kernels")
    g.add_argument("--int8", action="store_true", help="int8 from the QDQ ONNX (model.int8.onnx)")
    b.add_argument("--workspace", type=int, default=512, metavar="MB", help="builder workspace (default 512 MB)")
    b.add_argument("--max-batch", type=int, default=1, metavar="N", help="largest batch the engine accepts")
    b.add_argument("--rebuild", action="store_true", help="ignore a cached engine")
    b.set_defaults(func=_build_engine)


def _log(msg: str) -> None:
    print(msg, flush=True)


def _export(args: argparse.Namespace) -> int:
    from .tflm_bundle import is_bundle_dir

    if is_bundle_dir(args.checkpoint):
        return _export_bundle_tflm(args)
    from .api import export_bundle

    export_bundle(
        args.checkpoint,
        args.formats,
        fp16=args.fp16,
        int8=args.int8,
        calib=args.calib,
        calib_size=args.calib_size,
        data_root=args.data_root,
        max_drop=args.max_drop,
        out=args.out,
        name=args.name,
        force=args.force,
        verify_samples=args.verify_samples,
        device=args.device,
        log=_log,
        allow_chance=args.allow_chance,
        test_data=args.test,
    )
    return 0


def _export_bundle_tflm(args: argparse.Namespace) -> int:
    """`edgecnn export BUNDLE --formats tflm`: the only format a bundle (no PyTorch model) can gain."""
    from ..errors import EdgeCNNError
    from .api import parse_formats
    from .tflm_bundle import add_tflm

    if parse_formats(args.formats) != ["tflm"]:
        raise EdgeCNNError(f"{args.checkpoint} is a bundle: only --formats tflm can be added to it (from its int8 "
                           "TFLite file); other formats are exported from a checkpoint")
    given = [flag for flag, on in (("--fp16", args.fp16), ("--calib", args.calib), ("--out", args.out),
                                   ("--name", args.name)) if on]
    if given:
        raise EdgeCNNError(f"{given[0]} does not apply to a bundle: --formats tflm uses its int8 TFLite file as it "
                           "is and updates the bundle in place")
    add_tflm(args.checkpoint, device=args.device, data=args.test, data_root=args.data_root,
             samples=args.verify_samples, max_drop=args.max_drop, log=_log)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from .verify import verify_bundle

    verify_bundle(args.bundle, data=args.data, data_root=args.data_root, checkpoint=args.checkpoint,
                  samples=args.samples, max_drop=args.max_drop, write=args.write, log=_log, split=args.split)
    return 0


def _import_model(args: argparse.Namespace) -> int:
    from .importer import import_model, parse_size

    out = args.out or str(Path("export") / Path(args.files[0]).stem)
    import_model(args.files, out, labels=args.labels, size=parse_size(args.size), channels=args.channels,
                 mean=args.mean, std=args.std, scale=args.scale, preset=args.preset, kind=args.kind,
                 color=args.color, resize=args.resize, data=args.data,
                 data_root=args.data_root, samples=args.samples, name=args.name, force=args.force,
                 formats=args.formats, device=args.device, log=_log)
    return 0


def _build_engine(args: argparse.Namespace) -> int:
    from .tensorrt import build_engine

    precision = "int8" if args.int8 else "fp16" if args.fp16 else "fp32"
    build_engine(args.bundle, precision, workspace_mb=args.workspace, max_batch=args.max_batch,
                        rebuild=args.rebuild, log=_log)
    return 0
