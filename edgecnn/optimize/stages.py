"""The expensive steps of a search, each cached in OUT/work/ so a rerun (or a resumed run) reuses it.

    pruned checkpoint   work/r0.50-ft3/model.pt        structured pruning (torch-pruning) + fine-tuning
    QAT checkpoint      work/r0.50-ft3-qat2/model.pt   quantization-aware training of that checkpoint
    bundle              work/<same>/bundle/            `export_bundle`: every artifact verified on the test split

Checkpoints are written atomically and bundles through a staging directory, so a killed run leaves either
the finished step or nothing; the next run redoes only what is missing.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

from ..bundle import MANIFEST, Bundle
from ..errors import EdgeCNNError


def stage_dir(work: Path, ratio: float, finetune_epochs: int, qat_epochs: int | None = None) -> Path:
    name = f"r{ratio:.2f}" + (f"-ft{finetune_epochs}" if ratio else "") + (f"-qat{qat_epochs}" if qat_epochs else "")
    return work / name


def pruned_checkpoint(src_path: Path, ratio: float, finetune_epochs: int, ds, out: Path, *, round_to: int | None,
                      lr: float | None, train_limit: int | None, log: Callable[[str], None],
                      check: Callable[[], None] = lambda: None) -> Path:
    """Structured pruning of `ratio` of each layer's channels + `finetune_epochs` of fine-tuning (cached).

    `check` raises if Ctrl-C was pressed (and swallowed by the pruning library's tracer)."""
    if out.is_file():
        return out
    from ..compress.common import derived_checkpoint, example_input, finetune
    from ..compress.prune import PruneSettings, channel_counts, prune_model
    from ..compress.structure import record_structure
    from ..train.checkpoint import model_from_checkpoint, read_checkpoint, save_checkpoint

    src = read_checkpoint(src_path)
    model = model_from_checkpoint(src)
    settings = PruneSettings(ratio=ratio, round_to=round_to)

    def finetune_round(m, k: int) -> None:
        check()
        if finetune_epochs:
            log(f"fine-tuning the {ratio:.0%}-pruned model: {finetune_epochs} epoch(s)")
            finetune(m, ds, src, finetune_epochs, lr=lr, train_limit=train_limit, progress=False)

    pruned = prune_model(model, example_input(src), settings, finetune_round, log=log)
    structure = record_structure(pruned, ratio=ratio, method=settings.method, global_pruning=False,
                                 round_to=round_to, iterative=1, ignored=[], source_channels=channel_counts(model))
    ckpt = derived_checkpoint(pruned, src, structure=structure,
                              compress={"step": "optimize-prune", "ratio": ratio, "finetune_epochs": finetune_epochs,
                                        "source": str(src_path)})
    check()
    save_checkpoint(ckpt, out)
    return out


def qat_checkpoint(src_path: Path, qat_epochs: int, ds, out: Path, *, lr: float | None, train_limit: int | None,
                   log: Callable[[str], None]) -> Path:
    """QAT fine-tuning (torchao pt2e, edgecnn.compress.qat) of a float checkpoint (cached)."""
    if out.is_file():
        return out
    from ..compress.qat import qat_checkpoint_dict, qat_train
    from ..train.checkpoint import model_from_checkpoint, read_checkpoint, save_checkpoint

    src = read_checkpoint(src_path)
    model = model_from_checkpoint(src)
    log(f"QAT: {qat_epochs} epoch(s) of quantization-aware training")
    prepared, _ = qat_train(copy.deepcopy(model), ds, src, qat_epochs, lr=lr, train_limit=train_limit, progress=False)
    ckpt = qat_checkpoint_dict(model, prepared, src,
                               compress={"step": "optimize-qat", "epochs": qat_epochs, "source": str(src_path)})
    save_checkpoint(ckpt, out)
    return out


def exported_bundle(ckpt: Path, out: Path, *, formats: list[str], fp16: bool, int8: bool, data: str,
                    data_root: str | None, calib_size: int, test_limit: int | None,
                    log: Callable[[str], None]) -> Bundle:
    """The verified bundle of `ckpt` (cached). Every artifact is kept, whatever its accuracy: the search
    judges the drop itself (max_drop=100 here), so a poor int8 file is a measured point, not an abort."""
    if (out / MANIFEST).is_file():
        try:
            return Bundle.load(out)
        except EdgeCNNError as e:
            log(f"re-exporting {out}: {e}")
    from ..export.api import export_bundle

    export_bundle(ckpt, formats, fp16=fp16, int8=int8, calib=data if int8 else None, calib_size=calib_size,
                  data_root=data_root, max_drop=100.0, out=out, force=True, verify_samples=test_limit, log=log,
                  allow_chance=True)  # a trial at chance is measured and ranked like any other, not refused
    return Bundle.load(out)
