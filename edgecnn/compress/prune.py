"""Structured channel pruning with torch-pruning (DepGraph), followed by fine-tuning.

torch-pruning traces the network into a dependency graph, so removing an output channel of one
conv also removes the matching BatchNorm channel, the next layer's input channel, the depthwise
conv's channel and every layer tied to it through a residual add: the pruned model stays a dense,
consistent network that is genuinely smaller (and, unlike masks, faster in every runtime).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import EdgeCNNError
from ..threads import with_host_threads
from ..utils import first_line
from .structure import record_structure

METHODS = ("l1", "l2", "taylor")


@dataclass
class PruneSettings:
    ratio: float  # fraction of channels removed from each prunable layer (or overall with global_)
    global_: bool = False  # rank channels across layers instead of within each layer
    round_to: int | None = None  # keep channel counts multiples of this (SIMD-friendly)
    iterative: int = 1  # prune/fine-tune rounds reaching `ratio` in linear steps
    ignore: list[str] = field(default_factory=list)  # qualified layer names kept whole
    method: str = "l1"  # channel importance: l1 / l2 magnitude or first-order taylor
    keep_classifier: bool = True  # the output layer's size is the class count: never prune it

    def check(self) -> None:
        if not 0.0 < self.ratio < 1.0:
            raise EdgeCNNError(f"--ratio must be between 0 and 1 (exclusive), got {self.ratio}")
        if self.method not in METHODS:
            raise EdgeCNNError(f"--method must be one of {', '.join(METHODS)}, got '{self.method}'")
        if self.iterative < 1:
            raise EdgeCNNError(f"--iterative must be >= 1, got {self.iterative}")
        if self.round_to is not None and self.round_to < 1:
            raise EdgeCNNError(f"--round-to must be >= 1, got {self.round_to}")


def output_layer(model: nn.Module) -> str | None:
    """Name of the last Linear (the classifier head): its width is the number of classes."""
    last = None
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            last = name
    return last


def ignored_modules(model: nn.Module, settings: PruneSettings) -> list[nn.Module]:
    modules = dict(model.named_modules())
    names = list(settings.ignore)
    head = output_layer(model)
    if settings.keep_classifier and head is not None:
        names.append(head)
    unknown = [n for n in names if n not in modules]
    if unknown:
        some = ", ".join(n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
        raise EdgeCNNError(f"--ignore names no layer '{unknown[0]}'; prunable layers: {some[:400]}")
    return [modules[n] for n in names]


def _importance(method: str):
    import torch_pruning as tp

    if method == "taylor":
        return tp.importance.GroupTaylorImportance()
    return tp.importance.GroupMagnitudeImportance(p=1 if method == "l1" else 2)


def make_pruner(model: nn.Module, example: torch.Tensor, settings: PruneSettings):
    """A torch-pruning BasePruner over `model`; tracing failures become one clear EdgeCNNError."""
    import torch_pruning as tp

    settings.check()
    ignored = ignored_modules(model, settings)
    model.eval()
    try:
        return tp.pruner.BasePruner(
            model,
            example,
            importance=_importance(settings.method),
            pruning_ratio=settings.ratio,
            global_pruning=settings.global_,
            iterative_steps=settings.iterative,
            round_to=settings.round_to,
            ignored_layers=ignored,
        )
    except Exception as e:  # torch-pruning raises whatever the traced forward raised
        raise EdgeCNNError(f"torch-pruning cannot trace this model's graph ({type(e).__name__}: {first_line(e)}); "
                           "nothing was pruned") from None


def taylor_gradients(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Accumulate loss gradients on real batches: the taylor importance is |weight x gradient|."""
    model.zero_grad(set_to_none=True)
    model.eval()  # BatchNorm statistics must not move while scoring
    loss_fn = nn.CrossEntropyLoss()
    for x, y in batches:
        loss_fn(model(x), y).backward()


def prune_step(pruner, model: nn.Module, example: torch.Tensor, method: str,
               batches: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:
    """One pruning round; then check the smaller network still runs (a hard-coded reshape would not)."""
    if method == "taylor":
        if not batches:
            raise EdgeCNNError("taylor importance needs training batches")
        taylor_gradients(model, batches)
    try:
        pruner.step()
    except Exception as e:
        raise EdgeCNNError(f"torch-pruning failed to prune this model ({type(e).__name__}: {first_line(e)})") from None
    finally:
        model.zero_grad(set_to_none=True)
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    except Exception as e:
        raise EdgeCNNError("the pruned model no longer runs: its forward() has a shape that torch-pruning cannot "
                           f"see (e.g. a hard-coded view/reshape): {type(e).__name__}: {first_line(e)}") from None


def channel_counts(model: nn.Module) -> dict[str, int]:
    """Output channels/features of every Conv2d and Linear, by qualified name."""
    return {n: (m.out_channels if isinstance(m, nn.Conv2d) else m.out_features)
            for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def round_ratio(total: float, k: int, rounds: int) -> float:
    """Ratio for round k (of the channels left) so that after k rounds total*k/rounds of the original are gone."""
    keep_before, keep_after = 1 - total * (k - 1) / rounds, 1 - total * k / rounds
    return 1 - keep_after / keep_before


def prune_model(model: nn.Module, example: torch.Tensor, settings: PruneSettings,
                finetune_round: Callable[[nn.Module, int], None] | None = None,
                taylor_batches: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
                log: Callable[[str], None] = print, start_round: int = 1,
                original_channels: int | None = None,
                on_round: Callable[[nn.Module, int], None] | None = None) -> nn.Module:
    """Prune a copy of `model` in `settings.iterative` rounds, calling `finetune_round(model, k)` after each.

    Each round is its own pruner (ratio of the channels left, see `round_ratio`), so a run can
    resume at any round from a saved pruned checkpoint (`start_round`); `on_round` saves it.
    """
    settings.check()
    model = copy.deepcopy(model).cpu()
    original = original_channels or sum(channel_counts(model).values())
    for k in range(start_round, settings.iterative + 1):
        step = dataclasses.replace(settings, ratio=round_ratio(settings.ratio, k, settings.iterative), iterative=1)
        pruner = make_pruner(model, example, step)
        prune_step(pruner, model, example, settings.method, taylor_batches)
        now = sum(channel_counts(model).values())
        log(f"prune round {k}/{settings.iterative}: {original} -> {now} channels "
            f"({100 * (1 - now / original):.1f}% removed)")
        if finetune_round is not None:
            finetune_round(model, k)
        if on_round is not None:
            on_round(model, k)
    return model.eval()


def _structure(pruned: nn.Module, source: nn.Module, settings: PruneSettings) -> dict:
    return record_structure(pruned, ratio=settings.ratio, method=settings.method, global_pruning=settings.global_,
                            round_to=settings.round_to, iterative=settings.iterative, ignored=settings.ignore,
                            source_channels=channel_counts(source))


@with_host_threads
def prune_checkpoint(checkpoint: str | os.PathLike, settings: PruneSettings, *, finetune_epochs: int,
                     out: str | os.PathLike, data: str | None = None, data_root: str | None = None,
                     lr: float | None = None, train_limit: int | None = None, eval_limit: int | None = None,
                     threads: int = 1, report: bool = True, latency_runs: int = 200,
                     log: Callable[[str], None] = print) -> Path:
    """`edgecnn prune`: prune + fine-tune a checkpoint, write pruned.pt and the report into `out`.

    The input checkpoint is only read. `out` is built in a staging directory and appears only
    when everything succeeded. Each finished round is saved in `.OUT.rounds/` next to `out`; a
    rerun with the same source and settings resumes after the last saved round.
    """
    from ..train.checkpoint import model_from_checkpoint, read_checkpoint, save_checkpoint
    from ..utils import atomic_write_json, sha256_file, staged_directory
    from .common import checkpoint_dataset, derived_checkpoint, example_input, finetune, test_accuracy

    settings.check()
    if finetune_epochs < 0:
        raise EdgeCNNError(f"--finetune-epochs must be >= 0, got {finetune_epochs}")
    src = read_checkpoint(checkpoint)
    if src.get("qat"):
        raise EdgeCNNError(f"{checkpoint}: is a QAT checkpoint; prune the float checkpoint, then run QAT")
    model = model_from_checkpoint(src)
    ds = checkpoint_dataset(src, data, data_root)
    example = example_input(src)
    batches = _taylor_batches(ds, src["input"]) if settings.method == "taylor" else None

    out = Path(out)
    rounds_dir = out.parent / f".{out.name}.rounds"
    run_key = {"source_sha256": sha256_file(checkpoint), "settings": dataclasses.asdict(settings),
               "finetune_epochs": finetune_epochs, "lr": lr, "train_limit": train_limit, "data": ds.name}
    start, current = 1, model
    if (rounds_dir / "run.json").exists():
        saved = json.loads((rounds_dir / "run.json").read_text())
        done = sorted(int(p.stem.split("-")[1]) for p in rounds_dir.glob("round-*.pt"))
        if saved == run_key and done:
            current = model_from_checkpoint(read_checkpoint(rounds_dir / f"round-{done[-1]}.pt"))
            start = done[-1] + 1
            log(f"resuming: rounds 1..{done[-1]} already done ({rounds_dir})")
        else:
            shutil.rmtree(rounds_dir)
    rounds_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(rounds_dir / "run.json", run_key)

    def finetune_round(m: nn.Module, k: int) -> None:
        if finetune_epochs:
            log(f"fine-tuning round {k}: {finetune_epochs} epoch(s) on '{ds.name}'")
            finetune(m, ds, src, finetune_epochs, lr=lr, train_limit=train_limit)

    def save_round(m: nn.Module, k: int) -> None:
        save_checkpoint(derived_checkpoint(m.eval(), src, structure=_structure(m, model, settings)),
                        rounds_dir / f"round-{k}.pt")

    pruned = prune_model(current, example, settings, finetune_round, batches, log=log, start_round=start,
                         original_channels=sum(channel_counts(model).values()), on_round=save_round)
    acc = test_accuracy(pruned, ds, src["input"], eval_limit)
    ckpt = derived_checkpoint(
        pruned, src,
        structure=_structure(pruned, model, settings),
        metrics={"test_acc": acc},
        compress={"step": "prune", "finetune_epochs": finetune_epochs, "source": str(checkpoint)},
    )
    with staged_directory(out) as stage:
        save_checkpoint(ckpt, stage / "pruned.pt")
        if report:
            from .report import compare_models, write_report

            rows = compare_models({"original": (model, src), "pruned": (pruned, ckpt)}, ds, threads=threads,
                                  runs=latency_runs, eval_limit=eval_limit, log=log)
            write_report(stage, rows, title=f"{src['model']['name']}: structured pruning {settings.ratio:.0%}")
    shutil.rmtree(rounds_dir, ignore_errors=True)
    log(f"wrote {out / 'pruned.pt'} (test top-1 {acc:.4f})")
    return out / "pruned.pt"


def _taylor_batches(ds, spec: dict, n_batches: int = 4, batch: int = 64) -> list[tuple[torch.Tensor, torch.Tensor]]:
    from ..data import preprocessed

    x, y = preprocessed(ds, "train", spec, limit=n_batches * batch, seed=1)
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y)
    return [(x_t[i : i + batch], y_t[i : i + batch]) for i in range(0, len(y_t), batch)]
