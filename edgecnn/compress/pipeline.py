"""`edgecnn compress`: prune + fine-tune, then QAT, with the accuracy budget CHECKED on the test split."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Callable

from ..errors import EdgeCNNError
from ..threads import with_host_threads
from .prune import PruneSettings


@with_host_threads
def compress_checkpoint(checkpoint: str | os.PathLike, settings: PruneSettings, *, finetune_epochs: int,
                        qat_epochs: int, target_drop: float, out: str | os.PathLike, unstructured: bool = False,
                        data: str | None = None, data_root: str | None = None, lr: float | None = None,
                        train_limit: int | None = None, eval_limit: int | None = None, threads: int = 1,
                        log: Callable[[str], None] = print) -> Path:
    """Write compressed.pt (+ report) into `out` only if the final model stays within `target_drop` points."""
    from ..train.checkpoint import model_from_checkpoint, read_checkpoint, save_checkpoint
    from ..utils import staged_directory
    from .common import checkpoint_dataset, derived_checkpoint, example_input, finetune, test_arrays
    from .prune import channel_counts, prune_model
    from .qat import convert, graph_accuracy, qat_checkpoint_dict, qat_train
    from .report import compare_models, write_report
    from .structure import record_structure
    from .unstructured import apply_masks, make_permanent

    settings.check()
    if target_drop < 0:
        raise EdgeCNNError(f"--target-drop must be >= 0 points, got {target_drop}")
    if qat_epochs < 0 or finetune_epochs < 0:
        raise EdgeCNNError("--finetune-epochs and --qat-epochs must be >= 0")
    src = read_checkpoint(checkpoint)
    if src.get("qat"):
        raise EdgeCNNError(f"{checkpoint}: is a QAT checkpoint; compress the float checkpoint")
    model = model_from_checkpoint(src)
    ds = checkpoint_dataset(src, data, data_root)
    x_test, y_test = test_arrays(ds, src["input"], eval_limit)
    base_acc = graph_accuracy(model, x_test, y_test)

    def finetune_round(m, k):
        if finetune_epochs:
            log(f"fine-tuning round {k}: {finetune_epochs} epoch(s)")
            finetune(m, ds, src, finetune_epochs, lr=lr, train_limit=train_limit)

    if unstructured:
        pruned = copy.deepcopy(model)
        params = apply_masks(pruned, settings.ratio, settings.ignore)
        finetune_round(pruned, 1)
        make_permanent(params)
        structure = src.get("structure")
    else:
        pruned = prune_model(model, example_input(src), settings, finetune_round, log=log)
        structure = record_structure(pruned, ratio=settings.ratio, method=settings.method,
                                     global_pruning=settings.global_, round_to=settings.round_to,
                                     iterative=settings.iterative, ignored=settings.ignore,
                                     source_channels=channel_counts(model))
    pruned.eval()
    pruned_acc = graph_accuracy(pruned, x_test, y_test)
    steps = {"prune": "unstructured" if unstructured else "structured", "ratio": settings.ratio,
             "finetune_epochs": finetune_epochs, "qat_epochs": qat_epochs, "source": str(checkpoint)}
    pruned_ckpt = derived_checkpoint(pruned, src, structure=structure, metrics={"test_acc": pruned_acc},
                                     compress=steps)
    accuracy = {"source_fp32": base_acc, "pruned_fp32": pruned_acc}
    final_acc, final_name = pruned_acc, "pruned fp32"
    ckpt = pruned_ckpt
    if qat_epochs:
        float_copy = copy.deepcopy(pruned)
        prepared, _ = qat_train(float_copy, ds, pruned_ckpt, qat_epochs, lr=lr, train_limit=train_limit)
        int8_acc = graph_accuracy(convert(copy.deepcopy(prepared)), x_test, y_test)
        ckpt = qat_checkpoint_dict(float_copy, prepared, pruned_ckpt, compress=steps)
        ckpt["metrics"] = {"test_acc": graph_accuracy(float_copy, x_test, y_test), "int8_test_acc": int8_acc}
        accuracy.update(qat_fp32=ckpt["metrics"]["test_acc"], qat_int8=int8_acc)
        final_acc, final_name = int8_acc, "QAT int8"
    # Accuracies are counts over the test split (one stored as float32): compare points rounded to 1e-6,
    # so a drop of exactly the budget (0.971 -> 0.951 = 2.00 points) is within it, not 2.0000001 over.
    drop = round(100 * (base_acc - final_acc), 6)
    log(f"accuracy: source fp32 {base_acc:.4f} -> {final_name} {final_acc:.4f} ({drop:+.2f} points drop, "
        f"budget {target_drop:.2f})")
    if drop > target_drop:
        raise EdgeCNNError(f"accuracy budget exceeded: {final_name} test top-1 {final_acc:.4f} is {drop:.2f} points below "
                           f"the source's {base_acc:.4f} (--target-drop {target_drop:.2f}); nothing written. "
                           "Try a smaller --ratio, more --finetune-epochs or --iterative rounds")
    out = Path(out)
    with staged_directory(out) as stage:
        save_checkpoint(ckpt, stage / "compressed.pt")
        rows = compare_models({"original": (model, src), "compressed": (pruned, pruned_ckpt)}, ds, threads=threads,
                              eval_limit=eval_limit, log=log)
        write_report(stage, rows, title=f"{src['model']['name']}: compress (prune {settings.ratio:.0%}"
                                        f"{' unstructured' if unstructured else ''}"
                                        f"{f' + QAT {qat_epochs} ep' if qat_epochs else ''})",
                     log=log, accuracy=accuracy, target_drop_points=target_drop, final_drop_points=drop,
                     latency_is="fp32 ONNX of the float models; int8 speed depends on the target runtime")
    log(f"wrote {out / 'compressed.pt'}")
    return out / "compressed.pt"
