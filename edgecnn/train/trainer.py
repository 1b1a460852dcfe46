"""Training: a reusable loop (`fit`) and the `edgecnn train` run around it (`train`).

`fit` is the plain function other areas call (pruning fine-tune, QAT):

    history = fit(model, dataset, input_spec, epochs=3, lr=1e-3, optimizer="adam")

It trains `model` in place on `dataset["train"]` (augmented, see `edgecnn.data.torchdata`) and
measures `dataset["val"]` after each epoch. Each epoch reseeds torch's RNG from (seed, epoch,
rank), so a run resumed from the state handed to `on_epoch` continues exactly as if never stopped.
Under `torchrun` (WORLD_SIZE > 1) it trains with DistributedDataParallel (gloo on CPU, nccl on
GPU); on a GPU it uses automatic mixed precision.

`train` is `edgecnn train`: it builds the model from the registry, runs `fit`, and writes
`best.pt`/`last.pt` (atomically, every epoch), `metrics.json` and `training.png` into `out`.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from torch.utils.data import Dataset as TorchDataset

from ..data import Dataset, default_input_spec, load_dataset
from ..data.torchdata import PreprocessedSplit
from ..errors import EdgeCNNError
from ..models import build_model, get_spec, input_size_for
from ..preprocess import model_input_shape
from ..utils import atomic_write_json
from .chance import above_chance, describe
from .checkpoint import make_checkpoint, read_checkpoint, save_checkpoint
from .evaluate import metrics_from_logits, predict_logits

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("onecycle", "cosine")

# Per-architecture defaults a user gets without flags (measured on this project's bars).
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "lenet5": {"optimizer": "adam", "lr": 3e-3, "batch_size": 64, "weight_decay": 1e-4, "small_steps": 10},
    "simplecnn": {"optimizer": "adam", "lr": 2e-3, "batch_size": 64, "weight_decay": 1e-4, "small_steps": 10},
    "cnn1d": {"optimizer": "adam", "lr": 3e-3, "batch_size": 64, "weight_decay": 1e-4, "small_steps": 10},
    "dscnn": {"optimizer": "adam", "lr": 3e-3, "batch_size": 64, "weight_decay": 1e-4, "small_steps": 10},
}
TORCHVISION_DEFAULTS: dict[str, Any] = {"optimizer": "sgd", "lr": 0.1, "batch_size": 128, "weight_decay": 5e-4,
                                        "small_steps": 20}
# On a small training set (fewer than small_steps x batch images) these replace the defaults above.
# Measured on the 300 real photo patches (64 px, 3 classes, 15 epochs, 3 seeds each; docs/training.md):
# SGD at 10 steps an epoch (batch 32) gave test means 0.79 (mobilenet_v3_small), 0.79 (mobilenet_v2),
# 0.83 (resnet18); resnet18 is best at ~20 steps (batch 16: 0.91; batch 8: 0.80), mobilenet_v2 at ~40
# (batch 8: 0.88; 16: 0.83), mobilenet_v3_small with AdamW lr 2e-3 (0.90 at batch 16; SGD 0.76-0.79).
SMALL_DATA_DEFAULTS: dict[str, dict[str, Any]] = {
    "mobilenet_v3_small": {"optimizer": "adam", "lr": 2e-3, "weight_decay": 1e-4},
    "mobilenet_v2": {"small_steps": 40},
}


def default_hyperparameters(model_name: str, pretrained: bool = False, num_train: int | None = None) -> dict[str, Any]:
    """optimizer, lr, batch_size, weight_decay and small_steps for a model (and a training-set size)."""
    d = dict(MODEL_DEFAULTS.get(model_name, TORCHVISION_DEFAULTS))
    if num_train is not None and model_name in SMALL_DATA_DEFAULTS:
        small = {**d, **SMALL_DATA_DEFAULTS[model_name]}
        if num_train < small["small_steps"] * small["batch_size"]:
            d = small
    if pretrained:
        d["lr"] = d["lr"] / 10  # fine-tuning: do not wreck the pretrained features
    return d


def small_data_batch(batch_size: int, num_train: int, steps: int = 10) -> int:
    """The default batch, made smaller for a small training set so that an epoch has ~`steps` steps.

    Measured on 300 real photo patches (64 px, 3 classes), mobilenet_v3_small at batch 128 (3 steps
    an epoch) reached 0.53-0.69 test accuracy after 8 epochs; at batch 32 (lr scaled to 0.025) val
    was 0.93 from epoch 3; more steps helped further (SMALL_DATA_DEFAULTS). Sets of `steps` x the batch
    or more keep it; the batch is a power of two, at least 8.
    """
    if num_train >= steps * batch_size:
        return batch_size
    return int(min(batch_size, max(8, 2 ** round(math.log2(max(num_train / steps, 1))))))


# Series sets (UCR/UEA-sized: tens to hundreds of windows, cnn1d ~25k params) train for this many epochs by
# default: seconds to a minute each here; 40 epochs left ArrowHead at 64.6 % (150: 83.4 %, docs/sensors.md).
SERIES_EPOCHS = 150


def default_epochs(num_train: int) -> int:
    """Small datasets need more passes: 40 for the 3,600 digits, 15 for 55k Fashion-MNIST images."""
    if num_train <= 10_000:
        return 40
    if num_train <= 100_000:
        return 15
    return 8


def default_augment(ds: Dataset, num_train: int) -> bool:
    """Crop+flip for natural images always; the small affine for digit-like data only on small sets;
    none for series (SeriesJitter stays available with --augment).

    Measured: LeNet-5 on the 3,600 digits needs it to pass 98 % (96-97 % without); on the 55,000
    Fashion-MNIST images it underfits with it (test 89.7 % vs 91.0 % without, 15 epochs). cnn1d, seed 0
    (docs/sensors.md): ArrowHead 57.1 % with SeriesJitter at 40 epochs, 70.3 % with it at 150, 83.4 % without
    it at 150; BasicMotions 100 % either way; GunPoint 98.0 % -> 99.3 %; JapaneseVowels 98.9 % -> 98.4 %.
    """
    if ds.kind == "series":
        return False
    return ds.natural or num_train <= 10_000


# ---------------------------------------------------------------------------------------------
# devices and torchrun


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> the GPU when there is one, else the CPU. Under torchrun each rank takes its LOCAL_RANK GPU."""
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise EdgeCNNError(f"--device must be auto, cpu or cuda, got '{device}'")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EdgeCNNError("--device cuda asked for, but torch sees no CUDA GPU here")
        if device == "cuda" and "LOCAL_RANK" in os.environ:
            device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return torch.device(device)


def default_threads(world_size: int = 1) -> int:
    """CPU threads per training process: half the cores (split between torchrun processes).

    Measured on a shared 2-core machine: with another process busy, 2 intra-op threads made LeNet-5
    steps 10-25x slower than 1 (OpenMP threads wait on a descheduled sibling); leaving a core free
    also keeps the data pipeline (augmentation runs in the main process) fed.
    """
    return max(1, (os.cpu_count() or 1) // (2 * max(1, world_size)))


def setup_distributed(device: torch.device) -> bool:
    """Join the torchrun process group when launched under torchrun; True if this call started it."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


# ---------------------------------------------------------------------------------------------
# the loop


@dataclass
class EpochEnd:
    """What `on_epoch` receives after each epoch (on the main process only)."""

    epoch: int  # 1-based, counting resumed epochs
    metrics: dict  # this epoch's row of the history
    history: list[dict]
    is_best: bool  # lowest val loss (train loss without a val split) in the schedule's last quarter
    model: nn.Module  # the bare model (not the DDP wrapper); with EMA, the averaged weights
    resume_state: dict = field(repr=False)  # pass as fit(resume=...) to continue after this epoch


# best.pt is chosen among the epochs after this fraction of the schedule (see fit)
BEST_FROM = 0.75
# BatchNorm running statistics are re-estimated on up to this many training images after each epoch
BN_IMAGES = 2048


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


class _Unaugmented(TorchDataset):
    """Some items of a training split as evaluation sees them (its cache, without augmentation)."""

    def __init__(self, split: PreprocessedSplit, positions: np.ndarray):
        self.split, self.positions = split, positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> torch.Tensor:
        p = int(self.positions[i])
        if self.split.cache is not None:
            return self.split.cache[p]
        return torch.from_numpy(self.split._preprocess(self.split.indices[p]))


def recalibrate_batchnorm(model: nn.Module, train_data: PreprocessedSplit, *, batch_size: int = 64,
                          device: str | torch.device = "cpu", max_images: int = BN_IMAGES, seed: int = 0) -> int:
    """Re-estimate every BatchNorm's running mean/var with the current weights; returns the images used.

    Training keeps exponential running averages (torchvision's MobileNetV3 with momentum 0.01), which
    on a small dataset still describe the first, random weights after a whole run: measured on 450
    real 96 px photo patches, mobilenet_v3_small was at chance (0.333) in eval mode at every epoch
    while training accuracy was 0.997. torch's `update_bn` recomputes exact averages (momentum None)
    over a pass of un-augmented training images, which is what eval mode then uses.
    """
    if max_images <= 0 or not has_batchnorm(model):
        return 0
    n = len(train_data)
    positions = np.arange(n)
    if n > max_images:
        positions = np.sort(np.random.default_rng(seed).choice(n, size=max_images, replace=False))
    # Dropping a last tiny batch keeps batch statistics defined (a batch of 1 at 1x1 has no variance).
    loader = DataLoader(_Unaugmented(train_data, positions), batch_size=batch_size, shuffle=False,
                        drop_last=len(positions) > batch_size)
    torch.optim.swa_utils.update_bn(loader, model, device=torch.device(device))
    return min(len(positions), len(loader) * batch_size)


MIXES = ("cutmix", "mixup")


def mix_names(mix: str | None) -> list[str]:
    """The batch mixes a --mix value asks for ([] for none); an unknown name is one line."""
    if not mix:
        return []
    names = [m.strip() for m in mix.split(",") if m.strip()]
    if not names or any(m not in MIXES for m in names):
        raise EdgeCNNError(f"unknown --mix '{mix}'; choose cutmix, mixup or cutmix,mixup")
    return names


def make_mixer(mix: str | None, num_classes: int) -> Callable | None:
    """torchvision's CutMix / MixUp batch transform (alpha 1), or one of them per batch for "cutmix,mixup"."""
    names = mix_names(mix)
    if not names:
        return None
    import torchvision.transforms.v2 as T

    made = [T.CutMix(num_classes=num_classes) if m == "cutmix" else T.MixUp(num_classes=num_classes) for m in names]
    return made[0] if len(made) == 1 else T.RandomChoice(made)


def make_ema(model: nn.Module, horizon_steps: float) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of `model`'s weights over about `horizon_steps` optimizer steps.

    decay = 1 - 1 / horizon, warmed up as timm's ModelEma does (min(decay, (1 + n) / (10 + n))), so
    that the first steps do not keep the random initial weights in the average. Buffers are copied
    (BatchNorm statistics are re-estimated for the averaged weights after each epoch anyway).
    """
    decay = 1.0 - 1.0 / max(horizon_steps, 2.0)

    def average(avg: torch.Tensor, new: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        return avg * d + new * (1.0 - d)

    return torch.optim.swa_utils.AveragedModel(model, avg_fn=average, use_buffers=False)


def _make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    raise EdgeCNNError(f"unknown optimizer '{name}'; choose one of: {', '.join(OPTIMIZERS)}")


# below this many optimizer steps "onecycle" is computed by `_short_cycle` instead of OneCycleLR
SHORT_CYCLE_STEPS = 8


def _short_cycle(total_steps: int) -> Callable[[int], float]:
    """lr factor per step for a few-step one-cycle: total // 4 warm-up steps at 1/25, then cosine from 1."""
    warm = total_steps // 4

    def factor(step: int) -> float:
        if step < warm:
            return 1 / 25
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total_steps - warm)))

    return factor


def _make_schedule(opt: torch.optim.Optimizer, name: str, lr: float, total_steps: int,
                   last_step: int = -1) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per batch. `last_step` >= 0 re-plans a resumed run whose epoch count changed."""
    if name == "onecycle" and total_steps < SHORT_CYCLE_STEPS:
        # torch's OneCycleLR divides by zero at 4 steps and gives lr 0 at 1 step (a 1-epoch run on
        # 200 images): a tiny run gets the same shape (warm-up quarter, cosine down) by hand.
        for g in opt.param_groups:  # what OneCycleLR reads if a resumed run grows past the limit
            g.setdefault("max_lr", lr)
            g.setdefault("min_lr", lr / 25 / 1e4)
            g.setdefault("max_momentum", 0.95)  # OneCycleLR's defaults
            g.setdefault("base_momentum", 0.85)
            if last_step < 0:
                g["lr"] = lr
        return torch.optim.lr_scheduler.LambdaLR(opt, _short_cycle(total_steps), last_epoch=last_step)
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps, pct_start=0.25,
                                                   last_epoch=last_step)
    if name == "cosine":
        if last_step < 0:
            for g in opt.param_groups:
                g.setdefault("initial_lr", g["lr"])
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps, last_epoch=last_step)
    raise EdgeCNNError(f"unknown schedule '{name}'; choose one of: {', '.join(SCHEDULES)}")


def fit(model: nn.Module, dataset: Dataset, input_spec: dict, *, epochs: int, lr: float = 1e-3,
        optimizer: str = "adam", batch_size: int = 64, weight_decay: float = 0.0,
        label_smoothing: float = 0.0, schedule: str = "onecycle", seed: int = 0,
        device: str | torch.device = "auto", augment: bool = True, workers: int = 0,
        train_limit: int | None = None, amp: bool = True, resume: dict | None = None,
        on_epoch: Callable[[EpochEnd], None] | None = None, progress: bool = True,
        set_train_mode: Callable[[nn.Module, bool], Any] | None = None,
        bn_images: int = BN_IMAGES, freeze_backbone_epochs: int = 0, ema_epochs: float = 0.0,
        mix: str | None = None) -> list[dict]:
    """Train `model` in place; return the per-epoch history.

    Args:
        model: any classifier nn.Module producing logits [N, len(dataset.classes)].
        dataset: an `edgecnn.data.Dataset`; trains on its "train" split, validates on "val" (if any).
        input_spec: the manifest `input` block (see `edgecnn.data.default_input_spec`) that defines
            preprocessing; the model is trained on exactly what the device will feed it.
        epochs: total epochs, including those already done when resuming.
        lr: peak learning rate (one-cycle) or initial one (cosine).
        optimizer: "adam" (AdamW, decoupled weight decay) or "sgd" (Nesterov momentum 0.9).
        schedule: "onecycle" or "cosine", both stepped per batch.
        label_smoothing: cross-entropy label smoothing (0 disables).
        seed: seeds initial shuffling/augmentation; each epoch reseeds from (seed, epoch, rank).
        device: "auto" | "cpu" | "cuda"; AMP (float16 autocast + GradScaler) is used on CUDA when `amp`.
        augment: standard augmentation for the data kind (small affine, or crop+flip for natural images).
        workers: DataLoader worker processes (0 = in the main process).
        train_limit: train on a seeded random subset of this many training images.
        resume: an `EpochEnd.resume_state` (e.g. a checkpoint's "resume" block) to continue from.
        on_epoch: called after each epoch on the main process (checkpointing, logging, early stop by
            raising). Its `EpochEnd.resume_state` holds optimizer, schedule and history.
        set_train_mode: how to switch the model between train/eval (default: `model.train(flag)`);
            torch.export-ed graphs (QAT) need their own (torchao's move_exported_model_to_train/eval).
        bn_images: after each epoch, BatchNorm statistics are re-estimated on up to this many
            un-augmented training images (`recalibrate_batchnorm`), so that validation and the saved
            checkpoints are what eval mode computes; 0 disables it (and it is skipped for QAT graphs).
        freeze_backbone_epochs: for the first epochs, only the classifier (the last Linear) learns.
        ema_epochs: > 0 keeps an exponential moving average of the weights over about this many
            epochs of steps (`make_ema`); validation, the checkpoints and the returned model are the
            averaged weights (not for QAT graphs).
        mix: "cutmix", "mixup" or "cutmix,mixup" (one of the two per batch): torchvision's batch
            transforms, soft targets in the loss; train accuracy is then against the larger share.

    Returns:
        list of per-epoch dicts: epoch, lr, train_loss, train_acc, val_loss, val_acc, val_top5,
        train_seconds (the training pass), seconds (with validation).
    """
    if epochs < 1:
        raise EdgeCNNError(f"epochs must be >= 1, got {epochs}")
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    setup_distributed(dev)
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    mode = set_train_mode or (lambda m, flag: m.train(flag))

    torch.manual_seed(seed)
    indices = None
    n_train = len(dataset.split("train")[1])
    if train_limit is not None and train_limit < n_train:
        indices = np.sort(np.random.default_rng(seed).choice(n_train, size=train_limit, replace=False))
    train_data = PreprocessedSplit(dataset, "train", input_spec, augment=augment, indices=indices)
    if len(train_data) == 0:
        raise EdgeCNNError(f"dataset '{dataset.name}' has no training images")
    has_val = "val" in dataset.splits and len(dataset.split("val")[1]) > 0
    val_data = PreprocessedSplit(dataset, "val", input_spec) if has_val else None

    model = model.to(dev)
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    use_amp = amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    mixer = make_mixer(mix, len(dataset.classes))

    sampler_seed_gen = torch.Generator()
    per_rank = math.ceil(len(train_data) / world)
    steps_per_epoch = math.ceil(per_rank / batch_size)
    total_steps = epochs * steps_per_epoch
    opt = _make_optimizer(model, optimizer, lr, weight_decay)

    start_epoch, history, best_loss = 0, [], math.inf
    if resume:
        start_epoch = int(resume["epoch"])
        history = list(resume.get("history", []))
        best_loss = float(resume.get("best_loss", math.inf))
        if use_amp and resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
        if resume.get("total_steps") == total_steps:
            # Build the schedule before loading the optimizer: constructing one resets lr/momentum.
            sched = _make_schedule(opt, schedule, lr, total_steps)
            opt.load_state_dict(resume["optimizer"])
            sched.load_state_dict(resume["scheduler"])
        else:  # more (or fewer) epochs than planned: re-plan the schedule from where training stopped
            opt.load_state_dict(resume["optimizer"])
            done = min(start_epoch * steps_per_epoch, total_steps - 1)
            sched = _make_schedule(opt, schedule, lr, total_steps, last_step=done - 1 if done else -1)
    else:
        sched = _make_schedule(opt, schedule, lr, total_steps)
    ema = make_ema(model, ema_epochs * steps_per_epoch) if ema_epochs > 0 and set_train_mode is None else None
    if ema is not None and resume and resume.get("ema"):
        # a checkpoint's weights are the average; training continues from the live weights
        model.load_state_dict(resume["live"])
        ema.load_state_dict(resume["ema"])
    if start_epoch >= epochs:
        raise EdgeCNNError(f"already trained {start_epoch} epochs; ask for more with --epochs (> {start_epoch})")
    if freeze_backbone_epochs and world > 1:
        raise EdgeCNNError("--freeze-backbone is not supported under torchrun (DDP needs a fixed set of "
                           "trained parameters)")

    for epoch in range(start_epoch + 1, epochs + 1):
        t0 = time.perf_counter()
        # Reseeding per epoch makes augmentation, dropout and shuffling a function of (seed, epoch):
        # a resumed run sees the same epochs as an uninterrupted one.
        epoch_seed = seed * 1_000_003 + epoch * 7919 + rank
        torch.manual_seed(epoch_seed)
        if world > 1:
            sampler = DistributedSampler(train_data, num_replicas=world, rank=rank, shuffle=True, seed=seed)
            sampler.set_epoch(epoch)
        else:
            sampler = RandomSampler(train_data, generator=sampler_seed_gen.manual_seed(epoch_seed))
        loader = DataLoader(train_data, batch_size=batch_size, sampler=sampler, num_workers=workers,
                            pin_memory=dev.type == "cuda", persistent_workers=False)
        if freeze_backbone_epochs:
            from .weights import set_backbone_trainable

            frozen = epoch <= freeze_backbone_epochs
            if set_backbone_trainable(model, not frozen) and rank == 0:
                print("backbone frozen: only the classifier learns" if frozen else "backbone unfrozen", flush=True)
        mode(net, True)
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct = torch.zeros((), dtype=torch.int64)
        seen = torch.zeros((), dtype=torch.int64)
        bar = _progress(loader, f"epoch {epoch}/{epochs}", enabled=progress and rank == 0)
        for x, y in bar:
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            target = y
            if mixer is not None:
                x, target = mixer(x, y)
                y = target.argmax(1)
            with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
                out = net(x)
                loss = criterion(out, target)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            if ema is not None:
                ema.update_parameters(model)
            loss_sum += loss.detach().double().cpu() * len(y)
            correct += (out.detach().argmax(1) == y).sum().cpu()
            seen += len(y)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss_sum.item() / seen.item():.4f}", refresh=False)
        if world > 1:  # sum the per-rank counts so every rank logs the global train metrics
            stats = torch.stack([loss_sum, correct.double(), seen.double()]).to(dev)
            dist.all_reduce(stats)
            loss_sum, correct, seen = stats[0].cpu(), stats[1].cpu(), stats[2].cpu()
        row: dict[str, Any] = {
            "epoch": epoch,
            "lr": float(opt.param_groups[0]["lr"]),
            "train_loss": float(loss_sum / seen),
            "train_acc": float(correct / seen),
            "val_loss": None,
            "val_acc": None,
            "val_top5": None,
        }
        row["train_seconds"] = round(time.perf_counter() - t0, 3)
        shown = ema.module if ema is not None else model  # what is validated and checkpointed
        if ema is not None:  # the average holds weights only; buffers (BN counters, stats) follow the model
            for kept, live in zip(shown.buffers(), model.buffers()):
                kept.copy_(live)
        if set_train_mode is None and rank == 0:
            used = recalibrate_batchnorm(shown, train_data, batch_size=batch_size, device=dev,
                                         max_images=bn_images, seed=seed)
            if used and epoch == start_epoch + 1:
                print(f"BatchNorm statistics are re-estimated after each epoch on {used} training images",
                      flush=True)
        if val_data is not None:
            mode(shown, False)
            logits, labels = predict_logits(shown, val_data, device=dev)
            m = metrics_from_logits(logits, labels, dataset.classes)
            row.update(val_loss=m["loss"], val_acc=m["top1"], val_top5=m["top5"])
        row["seconds"] = round(time.perf_counter() - t0, 3)
        history.append(row)
        # "Best" = lowest validation loss among the epochs of the annealed last quarter of the
        # schedule. On a small val split (400 digits) a mid-schedule snapshot can win by luck:
        # measured on LeNet-5/digits, best-val-accuracy picked epoch 15 or 16 of 40 (test 97.6%,
        # 97.3%) while the last epochs reached 98.4-98.7%. The loss is steadier than accuracy.
        loss = row["val_loss"] if row["val_loss"] is not None else row["train_loss"]
        is_best = epoch > BEST_FROM * epochs and loss < best_loss
        if is_best:
            best_loss = loss
        if rank == 0:
            val = f"val_acc {row['val_acc']:.4f}" if row["val_acc"] is not None else "no val split"
            print(f"epoch {epoch}/{epochs}  train_loss {row['train_loss']:.4f}  train_acc {row['train_acc']:.4f}  "
                  f"{val}  lr {row['lr']:.2e}  {row['seconds']:.1f}s{'  *' if is_best else ''}", flush=True)
        if on_epoch is not None and rank == 0:
            state = {
                "epoch": epoch,
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict() if use_amp else None,
                "total_steps": total_steps,
                "history": [dict(r) for r in history],
                "best_loss": best_loss,
                "seed": seed,
                "ema": ema.state_dict() if ema is not None else None,
                "live": model.state_dict() if ema is not None else None,
            }
            on_epoch(EpochEnd(epoch, row, history, is_best, shown, state))
    if ema is not None:  # the caller's model ends as the averaged one, which is what was validated
        model.load_state_dict(ema.module.state_dict())
    mode(model, False)
    return history


def _progress(loader: DataLoader, desc: str, enabled: bool):
    if not enabled:
        return loader
    from tqdm import tqdm

    # leave=False: the one-line epoch summary printed afterwards is the record.
    return tqdm(loader, desc=desc, leave=False, disable=None, file=sys.stderr, dynamic_ncols=True)


# ---------------------------------------------------------------------------------------------
# `edgecnn train`


def training_figure(history: list[dict], title: str = "") -> Any:
    """Loss and top-1 accuracy per epoch, train and val. Accuracy is a fraction, as in the epoch lines and
    metrics.json, on an axis fitted to the curves (at least 0.02 wide, within [0, 1])."""
    from ..profile.plots import accuracy_axis, pyplot

    plt = pyplot()
    ep = [r["epoch"] for r in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    acc = [r["train_acc"] for r in history]
    a1.plot(ep, [r["train_loss"] for r in history], marker=".", label="train")
    a2.plot(ep, acc, marker=".", label="train")
    if any(r["val_acc"] is not None for r in history):
        val = [r for r in history if r["val_acc"] is not None]
        a1.plot([r["epoch"] for r in val], [r["val_loss"] for r in val], marker=".", label="val")
        a2.plot([r["epoch"] for r in val], [r["val_acc"] for r in val], marker=".", label="val")
        acc += [r["val_acc"] for r in val]
    a1.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    a2.set(xlabel="epoch", title="accuracy")
    accuracy_axis(a2, acc, scale=1.0, label="top-1 accuracy (fraction of images)")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend()
        a.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
    if title:
        fig.suptitle(title)
    return fig


def save_training_plot(history: list[dict], path: str | os.PathLike, title: str = "") -> Path:
    """Loss and accuracy curves per epoch (train and val) as a PNG, written atomically."""
    from ..profile.plots import save_figure

    return save_figure(training_figure(history, title), path, dpi=100)


def train(name: str, data: str = "digits", out: str | os.PathLike | None = None, *, epochs: int | None = None,
          batch_size: int | None = None, lr: float | None = None, optimizer: str | None = None,
          weight_decay: float | None = None, schedule: str = "onecycle", label_smoothing: float = 0.0,
          img_size: int | None = None, width_mult: float | None = None, small_input: bool = False,
          pretrained: bool = False, seed: int = 0, resume: str | os.PathLike | None = None,
          device: str = "auto", workers: int = 0, data_root: str | None = None, augment: bool | None = None,
          train_limit: int | None = None, overwrite: bool = False, progress: bool = True,
          threads: int | None = None, bn_images: int = BN_IMAGES, weights: str | os.PathLike | None = None,
          freeze_backbone: int = 0, ema: float | None = None, mix: str | None = None,
          series: dict | None = None) -> Path:
    """Train a registry model on a named dataset and write a run directory; returns best.pt's path.

    `resume` is a last.pt path: the run continues with that run's settings (only `epochs`,
    `device` and `workers` may change). `threads`: CPU threads (default `default_threads()`).
    `weights`: a local weights file to fine-tune from (`edgecnn.train.weights`; the classifier is
    replaced for these classes); `freeze_backbone`: train only the classifier for that many epochs.
    `series`: options of ts:/csv:/wav: data (sample_rate, window, hop, resample, frontend; see
    `edgecnn.data.load_dataset`).
    """
    out = Path(out or f"runs/{name}-{data.replace(':', '-').replace('/', '-')}")
    resume_ckpt = None
    if resume is not None:
        resume_ckpt = read_checkpoint(resume)
        if not resume_ckpt.get("resume"):
            raise EdgeCNNError(f"{resume}: has no resume state (use the run's last.pt, not best.pt)")
        saved = resume_ckpt.get("train_args") or {}
        if saved.get("model", resume_ckpt["model"]["name"]) != name:
            raise EdgeCNNError(f"{resume}: is a '{resume_ckpt['model']['name']}' run, not '{name}'")
        # The run's own settings win; only the length, device and workers may change on resume.
        args = dict(saved)
        args.update(epochs=epochs or saved.get("epochs"), device=device, workers=workers)
    else:
        get_spec(name)  # unknown model -> one clear error before loading any data
        if (out / "last.pt").exists() and not overwrite:
            raise EdgeCNNError(f"{out} already holds a run (last.pt); continue it with --resume, "
                               "or pass --overwrite / another --out")
        if weights is not None and pretrained:
            raise EdgeCNNError("--weights and --pretrained both choose the starting weights; pass one")
        if freeze_backbone and weights is None and not pretrained:
            raise EdgeCNNError("--freeze-backbone needs starting weights (--weights FILE or --pretrained)")
        args = {
            "model": name, "data": data, "data_root": data_root, "epochs": epochs,
            # None: the defaults below, once the training set size is known
            "batch_size": batch_size, "lr": lr, "optimizer": optimizer, "weight_decay": weight_decay,
            "schedule": schedule, "label_smoothing": label_smoothing, "img_size": img_size,
            "width_mult": width_mult, "small_input": small_input, "pretrained": pretrained, "seed": seed,
            "device": device, "workers": workers, "augment": augment, "train_limit": train_limit,
            "weights": str(weights) if weights is not None else None, "freeze_backbone": freeze_backbone,
            "ema": ema, "mix": mix, "series": {k: v for k, v in (series or {}).items() if v is not None} or None,
        }
    if args["optimizer"] is not None and args["optimizer"] not in OPTIMIZERS:
        raise EdgeCNNError(f"unknown optimizer '{args['optimizer']}'; choose one of: {', '.join(OPTIMIZERS)}")
    mix_names(args.get("mix"))  # an unknown --mix is one line before any data is loaded
    if args.get("ema") is not None and args["ema"] < 0:
        raise EdgeCNNError(f"--ema must be >= 0 epochs, got {args['ema']}")
    if args["schedule"] not in SCHEDULES:
        raise EdgeCNNError(f"unknown schedule '{args['schedule']}'; choose one of: {', '.join(SCHEDULES)}")
    if not 0.0 <= args["label_smoothing"] < 1.0:
        raise EdgeCNNError(f"--label-smoothing must be in [0, 1), got {args['label_smoothing']}")

    ds = load_dataset(args["data"], args["data_root"], series=args.get("series"),
                      input_spec=resume_ckpt["input"] if resume_ckpt is not None else None)
    model_kind = get_spec(name).kind
    if model_kind != ds.kind:
        raise EdgeCNNError(f"{name} takes {model_kind} input, {ds.name} holds {ds.kind} data; "
                           + ("choose cnn1d or dscnn for ts:/csv:/wav: data" if ds.kind == "series"
                              else "train it on ts:DIR, csv:DIR or wav:DIR data"))
    if "train" not in ds.splits:
        raise EdgeCNNError(f"{ds.name} has no training images (a train/ folder, or class folders)")
    n_train = len(ds.split("train")[1])
    source = None  # (state_dict, edgecnn checkpoint or None) of --weights, read once
    start = {"size": None, "mean": None, "std": None, "why": ""}
    if args.get("weights") and resume_ckpt is None:
        from .weights import input_defaults, read_weights

        source = read_weights(args["weights"], name)
        start = input_defaults(*source, ds.channels)
    elif args["pretrained"]:  # torchvision's ImageNet weights
        from .weights import IMAGENET_MEAN, IMAGENET_STD

        start = {"size": None, "mean": IMAGENET_MEAN if ds.channels == 3 else (sum(IMAGENET_MEAN) / 3,),
                 "std": IMAGENET_STD if ds.channels == 3 else (sum(IMAGENET_STD) / 3,), "why": "ImageNet weights"}
    if args["augment"] is None:
        args["augment"] = default_augment(ds, min(n_train, args["train_limit"] or n_train))
    if args["epochs"] is None:
        args["epochs"] = SERIES_EPOCHS if ds.kind == "series" else default_epochs(min(n_train, args["train_limit"] or n_train))
    # lr / 10 for ImageNet weights (large, general features). From an edgecnn checkpoint (another small
    # dataset) the model's own lr: measured LeNet-5 Fashion-MNIST -> 100 digits, lr / 10 gave 0.555
    # test top-1, below scratch (0.887); see docs/training.md.
    fine_tune = bool(args["pretrained"] or start["why"] == "ImageNet weights")
    n_used = min(n_train, args["train_limit"] or n_train)
    hp = default_hyperparameters(name, fine_tune, n_used)
    if args["optimizer"] is None:  # a new run: what the user did not choose follows the set's size
        args["optimizer"] = hp["optimizer"]
    if args["weight_decay"] is None:
        args["weight_decay"] = hp["weight_decay"]
    if args["optimizer"] != hp["optimizer"]:  # another optimizer than the small-data one: the model's usual lr
        hp = {**default_hyperparameters(name, fine_tune), "small_steps": hp["small_steps"]}
    if args["batch_size"] is None:  # a new run without --batch-size / --lr: the defaults for this size
        args["batch_size"] = small_data_batch(hp["batch_size"], n_used, hp["small_steps"])
        if args["lr"] is None and args["optimizer"] == "sgd":  # linear scaling rule (SGD)
            args["lr"] = hp["lr"] * args["batch_size"] / hp["batch_size"]
    if args["lr"] is None:
        args["lr"] = hp["lr"]
    if resume_ckpt is not None:  # a resumed run keeps its input exactly
        input_spec = dict(resume_ckpt["input"])
        size = int(input_spec.get("height", 1))
    elif ds.kind == "series":
        size, input_spec = 1, default_input_spec(ds, 1)
    else:
        size = input_size_for(name, small_input=args["small_input"], img_size=args["img_size"] or start["size"])
        input_spec = default_input_spec(ds, size, resize="center_crop" if ds.name.startswith("folder:") else "stretch")
        if start["mean"] is not None:
            input_spec.update(mean=[float(v) for v in start["mean"]], std=[float(v) for v in start["std"]])
    model_spec = get_spec(name)
    options = {"width_mult": args["width_mult"], "small_input": args["small_input"] or None,
               "pretrained": args["pretrained"] or None,
               # models whose classifier depends on the input side (lenet5, simplecnn) are built for it
               "input_size": size if "input_size" in model_spec.options and size != model_spec.default_input_size else None}
    options = {k: v for k, v in options.items() if v is not None}
    if "image_size" in get_spec(name).options:  # transformers (ViT) fix their patch grid at construction
        options["image_size"] = size
    # The initial weights come from torch's global RNG, which torch seeds randomly in every process
    # (and earlier code in the same process consumes): without this, `--seed` did not fix the run.
    torch.manual_seed(args["seed"])
    in_channels = model_input_shape(input_spec)[0]  # series with an audio front end: its feature count
    model = build_model(name, len(ds.classes), in_channels, **options)
    transfer = None
    if resume_ckpt is not None:
        model.load_state_dict(resume_ckpt["state_dict"])
    elif source is not None:
        from ..utils import sha256_file
        from .weights import load_transfer_weights

        transfer = load_transfer_weights(model, args["weights"], name, preloaded=source, classes=ds.classes)
        args["weights_sha256"] = sha256_file(args["weights"])

    dev = resolve_device(args["device"])
    started_group = setup_distributed(dev)
    main = is_main_process()
    created_out = not out.exists()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        print(f"training {name} on {ds.name}: {n_train} train / {len(ds.split('val')[1]) if 'val' in ds.splits else 0} "
              f"val {'windows' if ds.kind == 'series' else 'images'}, {len(ds.classes)} classes, "
              f"input {'x'.join(map(str, model_input_shape(input_spec)))}, {args['epochs']} epochs, "
              f"{args['optimizer']} lr {args['lr']:g} {args['schedule']}, batch {args['batch_size']}, device {dev}"
              + (f" x{dist.get_world_size()} processes" if dist.is_initialized() else ""), flush=True)
        if resume_ckpt is not None:
            print(f"resuming after epoch {resume_ckpt['resume']['epoch']} from {resume}", flush=True)
        for line in data_report(ds, args["train_limit"]):
            print(line, flush=True)
        if transfer is not None:
            head = (f"classifier '{transfer.head}' replaced ({transfer.source_classes} -> {len(ds.classes)} classes)"
                    if transfer.head_replaced else f"classifier '{transfer.head}' kept ({len(ds.classes)} classes)")
            print(f"weights: {transfer.loaded} tensors from {transfer.path} ({transfer.kind}); {head}"
                  + "".join(f"; {n}" for n in transfer.notes)
                  + (f"; input {size} px, mean {input_spec['mean']} std {input_spec['std']} ({start['why']})"
                     if start["why"] else ""), flush=True)

    def checkpoint(model: nn.Module, epoch: int, metrics: dict, resume_state: dict | None = None) -> dict:
        return make_checkpoint(model, name=name, num_classes=len(ds.classes), in_channels=in_channels,
                               options=options, classes=ds.classes, input_spec=input_spec, dataset=ds.name,
                               epoch=epoch, metrics=metrics, train_args=args, resume=resume_state)

    def record(run: dict) -> None:
        atomic_write_json(out / "metrics.json", run)
        save_training_plot(run["history"], out / "training.png", title=f"{name} on {ds.name}")

    def on_epoch(e: EpochEnd) -> None:
        metrics = {k: v for k, v in e.metrics.items() if k != "epoch"}
        if e.is_best:
            save_checkpoint(checkpoint(e.model, e.epoch, metrics), out / "best.pt")
        save_checkpoint(checkpoint(e.model, e.epoch, metrics, e.resume_state), out / "last.pt")
        record({"model": name, "dataset": ds.name, "train_args": args, "history": e.history})

    previous_threads = torch.get_num_threads()
    if dev.type == "cpu":
        world = dist.get_world_size() if dist.is_initialized() else 1
        torch.set_num_threads(threads or default_threads(world))
    t0 = time.perf_counter()
    try:
        history = fit(model, ds, input_spec, epochs=args["epochs"], lr=args["lr"], optimizer=args["optimizer"],
                      batch_size=args["batch_size"], weight_decay=args["weight_decay"],
                      label_smoothing=args["label_smoothing"], schedule=args["schedule"], seed=args["seed"],
                      device=dev, augment=args["augment"], workers=args["workers"],
                      train_limit=args["train_limit"], resume=resume_ckpt["resume"] if resume_ckpt else None,
                      on_epoch=on_epoch, progress=progress, bn_images=bn_images,
                      freeze_backbone_epochs=int(args.get("freeze_backbone") or 0),
                      ema_epochs=float(args.get("ema") or 0.0), mix=args.get("mix"))
        seconds = time.perf_counter() - t0
        if main:
            _finish(out, ds, input_spec, history, seconds, args, name, dev, record)
            chance_warning(out, ds, history)
    except BaseException:
        # A run that failed before its first checkpoint leaves no empty --out behind (a later
        # failure keeps last.pt: --resume continues from it).
        if main and created_out and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    finally:
        torch.set_num_threads(previous_threads)  # callers in the same process (tests, notebooks) keep theirs
        if started_group:
            dist.barrier()
            dist.destroy_process_group()
    return out / "best.pt"


def _finish(out: Path, ds: Dataset, input_spec: dict, history: list[dict], seconds: float, args: dict,
            name: str, dev: torch.device, record: Callable[[dict], None]) -> None:
    """Measure the test split with the best weights; store it in best.pt and metrics.json."""
    from .checkpoint import model_from_checkpoint
    from .evaluate import evaluate

    best = read_checkpoint(out / "best.pt")
    model = model_from_checkpoint(best)
    summary: dict[str, Any] = {"model": name, "dataset": ds.name, "train_args": args, "history": history,
                               "best_epoch": best["epoch"], "train_seconds": round(seconds, 2)}
    learnt = learnt_beyond_chance(ds, history)
    if learnt is not None:  # with a val split: did val accuracy ever leave chance?
        best["metrics"]["at_chance"] = not learnt
        summary["at_chance"] = not learnt
    if "test" in ds.splits and len(ds.split("test")[1]):
        test = evaluate(model, ds, "test", input_spec, device=dev)
        best["metrics"].update(test_acc=test["top1"], test_top5=test["top5"], test_loss=test["loss"])
        summary["test"] = {k: test[k] for k in ("n", "top1", "top5", "loss", "per_class")}
        val = best["metrics"].get("val_acc")
        top5 = f"  top-5 {test['top5']:.4f}" if len(ds.classes) > 5 else ""
        print(f"best epoch {best['epoch']}: val_acc {'-' if val is None else f'{val:.4f}'}  "
              f"test top-1 {test['top1']:.4f}{top5} ({test['n']} {'windows' if ds.kind == 'series' else 'images'})  "
              f"trained in {seconds:.1f}s", flush=True)
    save_checkpoint(best, out / "best.pt")
    record(summary)
    print(f"wrote {out / 'best.pt'}, {out / 'last.pt'}, {out / 'metrics.json'}, {out / 'training.png'}", flush=True)


# ---------------------------------------------------------------------------------------------
# what a user of a small dataset needs to be told

# below these, one image moves val accuracy by a point or more: best-epoch selection is noisy
SMALL_VAL_IMAGES = 100
SMALL_VAL_PER_CLASS = 10


def class_balance(labels: np.ndarray, classes: list[str]) -> str:
    """'animal 100, fruit 100, circuit 100' (<= 6 classes) or 'min 355 (5) .. max 370 (1) per class'."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    if len(classes) <= 6:
        return ", ".join(f"{c} {n}" for c, n in zip(classes, counts))
    lo, hi = int(counts.argmin()), int(counts.argmax())
    if counts[lo] == counts[hi]:
        return f"{len(classes)} classes, {counts[lo]} each"
    return f"{len(classes)} classes, min {counts[lo]} ({classes[lo]}) .. max {counts[hi]} ({classes[hi]}) per class"


def data_report(ds: Dataset, train_limit: int | None = None) -> list[str]:
    """Lines printed before training: class balance of each split, and a note when val is small."""
    lines = []
    for split in ("train", "val", "test"):
        if split not in ds.splits:
            continue
        labels = np.asarray(ds.split(split)[1])
        limit = f" (training on a random {train_limit})" if split == "train" and train_limit \
            and train_limit < len(labels) else ""
        items = "windows" if ds.kind == "series" else "images"
        lines.append(f"  {split:<5} {len(labels):>6} {items}: {class_balance(labels, ds.classes)}{limit}")
    val = np.asarray(ds.split("val")[1]) if "val" in ds.splits else np.zeros(0, dtype=np.int64)
    if len(val) == 0:
        lines.append("note: no validation split: best.pt is the epoch with the lowest training loss in the "
                     "last quarter, and chance-level training cannot be detected")
    else:
        per_class = np.bincount(val, minlength=len(ds.classes)).min()
        if len(val) < SMALL_VAL_IMAGES or per_class < SMALL_VAL_PER_CLASS:
            item = "window" if ds.kind == "series" else "image"
            lines.append(f"note: the validation split has only {len(val)} {item}s ({per_class} in its smallest class; "
                         f"one {item} = {100 / len(val):.1f} points): it cannot select a best epoch reliably, "
                         f"so rely on the test accuracy (or add a val/ folder with more {item}s)")
    return lines


def learnt_beyond_chance(ds: Dataset, history: list[dict]) -> bool | None:
    """Did validation accuracy ever clearly exceed the majority-class guess? None without a val split."""
    if "val" not in ds.splits or len(ds.split("val")[1]) == 0:
        return None
    labels = np.asarray(ds.split("val")[1])
    return any(above_chance(r.get("val_acc"), labels) for r in history)


def chance_warning(out: Path, ds: Dataset, history: list[dict]) -> bool:
    """Print the warning when val accuracy never left chance; True if it did not (the run is flagged)."""
    if learnt_beyond_chance(ds, history) is not False:
        return False
    labels = np.asarray(ds.split("val")[1])
    best_val = max(r["val_acc"] for r in history if r.get("val_acc") is not None)
    print(f"WARNING: validation accuracy never left chance level (best {describe(best_val, labels, ds.classes)}): "
          f"the model has not learnt. {out / 'best.pt'} is flagged at_chance, and `edgecnn export` refuses it "
          "unless --allow-chance. Try more epochs, another --lr, or check the labels.", file=sys.stderr, flush=True)
    return True
