"""`edgecnn train`, `edgecnn eval`, `edgecnn models`.

Only argument definitions live here; handlers import torch lazily so that device-side commands
start without it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli_vocab import hidden_alias

CHANCE_EXIT = 3  # `edgecnn train` finished, but validation accuracy never left chance level
DATA_HELP = ("dataset: digits (embedded), mnist, fashion-mnist, cifar10, folder:PATH (one subfolder per class); "
             "series (docs/sensors.md): ts:DIR (UCR/UEA .ts archive), csv:DIR or wav:DIR (class folders of recordings)")


def _positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _positive_float(text: str) -> float:
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v}")
    return v


def add_series_arguments(p: argparse.ArgumentParser) -> None:
    """The options of series data (ts:/csv:/wav:), the same words in every command that reads recordings."""
    g = p.add_argument_group("series data (ts:/csv:/wav:, docs/sensors.md)")
    g.add_argument("--sample-rate", type=_positive_float, metavar="HZ",
                   help="samples per second of the recordings (recorded in the bundle; wav: the rate clips must have)")
    g.add_argument("--window", metavar="N", help="csv:/wav: samples per window (or a duration: 2s, 250ms)")
    g.add_argument("--hop", metavar="N", help="csv:/wav: samples between window starts (default: --window)")
    g.add_argument("--resample", action="store_true", help="wav: resample clips recorded at another rate")
    g.add_argument("--frontend", choices=("mfcc", "logmel", "none"),
                   help="wav: audio features computed from each window (default mfcc; docs/sensors.md)")


def series_options(args: argparse.Namespace) -> dict | None:
    opts = {k: getattr(args, k, None) for k in ("sample_rate", "window", "hop", "frontend")}
    opts["resample"] = getattr(args, "resample", False) or None
    opts = {k: v for k, v in opts.items() if v is not None}
    return opts or None


def register(sub: argparse._SubParsersAction) -> None:
    """Add train, eval and models."""
    p = sub.add_parser("train", help="train a model on a dataset",
                       description="Train a registered model (see `edgecnn models`); writes best.pt, last.pt, "
                                   "metrics.json and training.png into --out.")
    p.add_argument("name", metavar="NAME", help="model name, e.g. lenet5, simplecnn, mobilenet_v2")
    p.add_argument("--data", default="digits", help=DATA_HELP + " (default: digits)")
    p.add_argument("--data-root", help="folder holding the dataset files (IDX .gz for mnist/fashion-mnist, "
                                       "torchvision layout, download target when online)")
    p.add_argument("--epochs", type=_positive_int, help="epochs (default: by dataset size, 40 for digits)")
    p.add_argument("--out", help="run directory (default: runs/NAME-DATA)")
    p.add_argument("--batch-size", type=_positive_int, help="batch size (default: per model)")
    p.add_argument("--lr", type=_positive_float, help="peak learning rate (default: per model)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), help="default: per model (adam for lenet5/simplecnn)")
    p.add_argument("--weight-decay", type=float, help="default: per model")
    p.add_argument("--schedule", choices=("onecycle", "cosine"), default="onecycle", help="learning-rate schedule")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="cross-entropy label smoothing (default 0)")
    p.add_argument("--img-size", type=_positive_int, help="square input side (default: the model's)")
    add_series_arguments(p)
    p.add_argument("--width-mult", type=_positive_float, help="channel width multiplier (MobileNets)")
    p.add_argument("--small-input", action="store_true", help="28-32 px variant of torchvision models")
    p.add_argument("--pretrained", action="store_true",
                   help="start from torchvision's ImageNet weights (downloads them; offline: use --weights)")
    p.add_argument("--weights", metavar="FILE",
                   help="fine-tune from a local weights file: torchvision's .pth (e.g. mobilenet_v2-*.pth), or an "
                        "edgecnn/own checkpoint of the same architecture; the classifier is replaced for the new "
                        "classes (ImageNet weights: ImageNet normalization and 224 px unless --img-size)")
    p.add_argument("--freeze-backbone", type=int, default=0, metavar="EPOCHS",
                   help="with --weights/--pretrained: train only the classifier for the first EPOCHS epochs")
    p.add_argument("--ema", type=float, metavar="EPOCHS",
                   help="validate and save an exponential moving average of the weights over about EPOCHS "
                        "epochs (0: off)")
    p.add_argument("--mix", metavar="KIND",
                   help="batch mixing: cutmix, mixup, or cutmix,mixup (one of the two per batch; torchvision's)")
    p.add_argument("--augment", dest="augment", action="store_true", default=None,
                   help="force augmentation (default: crop+flip for natural images, resized crop + flip + "
                        "colour jitter up to 10k of them; small affine for digit-like data up to 10k "
                        "training images)")
    p.add_argument("--no-augment", dest="augment", action="store_false", help="train without augmentation")
    p.add_argument("--train-limit", type=_positive_int, help="train on a seeded random subset of N images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", nargs="?", const="", metavar="LAST_PT",
                   help="continue an interrupted run from its last.pt (default: OUT/last.pt)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    hidden_alias(p, p.add_argument("--torch-device", dest="device", default="auto",
                                   help="auto | cpu | cuda (default: auto)"), "--device")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    p.add_argument("--threads", type=_positive_int, help="CPU threads per process (default: half the cores)")
    hidden_alias(p, p.add_argument("--qat-epochs", dest="qat", type=int, nargs="?", const=3, default=0,
                                   metavar="EPOCHS",
                                   help="then quantization-aware training for EPOCHS (default 3) into OUT/qat/qat.pt "
                                        "(edgecnn.compress.qat; same as `edgecnn qat OUT/best.pt`)"), "--qat")
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint on a dataset split",
                       description="Top-1/top-5 and per-class accuracy of a checkpoint, inputs preprocessed "
                                   "exactly as on the device; writes a confusion-matrix PNG.")
    p.add_argument("checkpoint", metavar="CKPT", help="a .pt checkpoint written by edgecnn train/prune")
    p.add_argument("--data", help=DATA_HELP + " (default: the checkpoint's dataset)")
    p.add_argument("--data-root", help="folder holding the dataset files")
    p.add_argument("--split", choices=("all", "train", "val", "test"),
                   help="default: a folder:PATH the model was not trained on is used whole (all); otherwise "
                        "test (or val when there is no test split)")
    p.add_argument("--save-predictions", metavar="CSV",
                   help="write one row per image: index,file,label,predicted,confidence,correct")
    p.add_argument("--save-misclassified", metavar="DIR",
                   help="copy every misclassified image into DIR/<label>_as_<predicted>/")
    p.add_argument("--out", help="folder for the confusion matrix PNG (default: next to the checkpoint)")
    hidden_alias(p, p.add_argument("--eval-limit", dest="limit", type=_positive_int, metavar="N",
                                   help="evaluate a seeded random subset of N images"), "--limit")
    p.add_argument("--batch-size", type=_positive_int, default=256)
    hidden_alias(p, p.add_argument("--torch-device", dest="device", default="auto",
                                   help="auto | cpu | cuda (default: auto)"), "--device")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=_eval)

    p = sub.add_parser("models", help="list the model architectures",
                       description="Registered models with parameter count and multiply-accumulates per image.")
    p.add_argument("--classes", type=_positive_int, default=10, help="classifier size for the counts (default 10)")
    p.add_argument("--all", action="store_true",
                   help="also list every torchvision classification builder (by name; timm models as timm:NAME)")
    p.set_defaults(func=_models)


def _train(args: argparse.Namespace) -> int:
    from .trainer import train

    resume = None
    if args.resume is not None:
        resume = args.resume or str(Path(args.out or f"runs/{args.name}-{args.data.replace(':', '-')}") / "last.pt")
    best = train(
        args.name, args.data, args.out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        optimizer=args.optimizer, weight_decay=args.weight_decay, schedule=args.schedule,
        label_smoothing=args.label_smoothing, img_size=args.img_size, width_mult=args.width_mult,
        small_input=args.small_input, pretrained=args.pretrained, seed=args.seed, resume=resume,
        device=args.device, workers=args.workers, data_root=args.data_root, augment=args.augment,
        train_limit=args.train_limit, overwrite=args.overwrite, threads=args.threads,
        weights=args.weights, freeze_backbone=args.freeze_backbone, ema=args.ema,
        mix=args.mix, series=series_options(args),
    )
    from .checkpoint import read_checkpoint

    if read_checkpoint(best)["metrics"].get("at_chance"):
        return CHANCE_EXIT  # the warning is printed by train()
    if args.qat:  # QAT fine-tunes the best float model (owned by edgecnn.compress)
        from ..compress.qat import qat_checkpoint

        qat_checkpoint(best, epochs=args.qat, out=Path(best).parent / "qat", data_root=args.data_root,
                       train_limit=args.train_limit)
    return 0


def _eval(args: argparse.Namespace) -> int:
    import json

    from ..data import evaluation_split, load_dataset
    from ..errors import EdgeCNNError
    from .checkpoint import load_checkpoint
    from .evaluate import (
        evaluate,
        prediction_rows,
        save_confusion_png,
        save_misclassified,
        save_predictions_csv,
    )
    from .trainer import resolve_device

    model, ckpt = load_checkpoint(args.checkpoint)
    data = args.data or ckpt.get("dataset")
    if not data:
        raise EdgeCNNError("the checkpoint does not name its dataset; pass --data")
    ds = load_dataset(data, args.data_root, classes=list(ckpt["classes"]), channels=ckpt["input"]["channels"],
                      input_spec=ckpt["input"])
    split = args.split or evaluation_split(ds, trained_on=ckpt.get("dataset"))
    if len(ds.classes) != len(ckpt["classes"]):
        raise EdgeCNNError(f"dataset '{ds.name}' has {len(ds.classes)} classes but the checkpoint was trained "
                           f"on {len(ckpt['classes'])} ({ckpt.get('dataset')})")
    if ds.channels != ckpt["input"]["channels"]:
        raise EdgeCNNError(f"dataset '{ds.name}' has {ds.channels}-channel images, the checkpoint expects "
                           f"{ckpt['input']['channels']}")
    m = evaluate(model, ds, split, ckpt["input"], batch_size=args.batch_size,
                 device=resolve_device(args.device), limit=args.limit, outputs=True)
    if m["n"] == 0:
        raise EdgeCNNError(f"split '{split}' of '{ds.name}' is empty")
    out_dir = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent
    stem = Path(args.checkpoint).stem
    png = save_confusion_png(m, ds.classes, out_dir / f"{stem}.confusion.{split}.png",
                             title=f"{ckpt['model']['name']} on {ds.name}/{split}: top-1 {m['top1']:.4f}")
    rows = prediction_rows(m, ds, split) if args.save_predictions or args.save_misclassified else []
    saved = []
    if args.save_predictions:
        saved.append(f"predictions: {save_predictions_csv(rows, args.save_predictions)}")
    if args.save_misclassified:
        n_wrong = save_misclassified(rows, ds, split, args.save_misclassified)
        saved.append(f"{n_wrong} misclassified images: {args.save_misclassified}")
    for k in ("logits", "labels", "indices"):
        m.pop(k)
    if args.json:
        print(json.dumps({**m, "split": split, "confusion_png": str(png)}, indent=2))
        return 0
    total = len(ds.split(split)[1])
    what = {"all": "every image of the folder" if ds.flat else "every split",
            "test": "the test split, never trained on"}.get(split, f"the {split} split")
    print(f"{ckpt['model']['name']} on {ds.name}/{split}: {m['n']} images ({what}"
          + (f"; a random {m['n']} of {total}" if m["n"] < total else "") + ")")
    top5 = f"  top-5 {m['top5']:.4f}" if len(ds.classes) > 5 else ""
    print(f"top-1 {m['top1']:.4f}{top5}  loss {m['loss']:.4f}")
    print("per-class accuracy:")
    width = max(len(c) for c in ds.classes)
    for c, acc in m["per_class"].items():
        print(f"  {c:<{width}}  {'-' if acc is None else f'{acc:.4f}'}")
    print(f"confusion matrix: {png}")
    for line in saved:
        print(line)
    return 0


def _models(args: argparse.Namespace) -> int:
    from ..models import MODELS, build_model, count_macs, count_params, input_size_for

    if args.all:
        return _models_all()
    rows = []
    for name, spec in MODELS.items():
        if spec.kind == "series":  # counted on a window of 100 samples (any length works: global pooling)
            channels = spec.in_channels
            model = build_model(name, args.classes, channels)
            rows.append([name, f"{channels}x1x100 series", f"{count_params(model):,}",
                         f"{count_macs(model, (channels, 1, 100)) / 1e6:,.2f}M", "-", spec.description])
            continue
        channels = 1 if name == "lenet5" else 3
        size = input_size_for(name)
        model = build_model(name, args.classes, channels)
        row = [name, f"{channels}x{size}x{size}", f"{count_params(model):,}",
               f"{count_macs(model, (channels, size, size)) / 1e6:,.2f}M"]
        if "small_input" in spec.options:
            small = build_model(name, args.classes, channels, small_input=True)
            row.append(f"{count_macs(small, (channels, 32, 32)) / 1e6:,.2f}M")
        else:
            row.append("-")
        rows.append([*row, spec.description])
    head = ["model", "input", "params", "MACs", "MACs --small-input 32px", "description"]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(str(v).ljust(w) if i in (0, 1, 5) else str(v).rjust(w)
                        for i, (v, w) in enumerate(zip(r, widths))).rstrip())
    return 0


def _models_all() -> int:
    """Every name `edgecnn train NAME` takes, without building any (torchvision has ~80 builders)."""
    from ..models import get_spec, list_models

    names = list_models(all=True)
    width = max(len(n) for n in names)
    print(f"{'model':<{width}}  {'source':<11}  {'input':>5}  {'min':>3}  options")
    for name in names:
        s = get_spec(name)
        print(f"{name:<{width}}  {s.source:<11}  {s.default_input_size:>5}  {s.min_input_size:>3}  "
              f"{','.join(s.options) or '-'}")
    print(f"{len(names)} models; timm architectures too, as timm:NAME (pip install 'edgecnn[timm]'); "
          "status of each torchvision builder: docs/models.md")
    return 0
