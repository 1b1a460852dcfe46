"""Evaluation of a classifier on a dataset split: top-1/top-5, per-class accuracy, confusion matrix.

The inputs are made by `edgecnn.preprocess.preprocess` (through `PreprocessedSplit`), the same
function the device runtime uses, so these numbers are the ones a deployed model should reproduce.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data import Dataset
from ..data.torchdata import PreprocessedSplit
from ..utils import atomic_write_bytes


@torch.no_grad()
def predict_logits(model: nn.Module, split: PreprocessedSplit, *, batch_size: int = 256,
                   device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(float32 logits [N, classes] on CPU, int64 labels [N]) for every item of a split."""
    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        for x, y in DataLoader(split, batch_size=batch_size, shuffle=False):
            logits.append(model(x.to(device)).float().cpu())
            labels.append(y)
    finally:
        model.train(was_training)
    if not logits:
        return torch.zeros(0, 0), torch.zeros(0, dtype=torch.int64)
    return torch.cat(logits), torch.cat(labels)


def metrics_from_logits(logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    """top1, top5 (top-k with k = min(5, classes)), loss, per_class accuracy, confusion [true][pred], n."""
    n, k = len(labels), len(classes)
    if n == 0:
        return {"n": 0, "top1": None, "top5": None, "loss": None, "per_class": {}, "confusion": []}
    loss = float(nn.functional.cross_entropy(logits, labels))
    topk = logits.topk(min(5, logits.shape[1]), dim=1).indices
    pred = topk[:, 0]
    confusion = torch.zeros(k, k, dtype=torch.int64)
    confusion.index_put_((labels, pred), torch.ones_like(labels), accumulate=True)
    per_class_n = confusion.sum(dim=1)
    per_class = {
        name: (float(confusion[i, i] / per_class_n[i]) if per_class_n[i] else None)
        for i, name in enumerate(classes)
    }
    return {
        "n": n,
        "top1": float((pred == labels).float().mean()),
        "top5": float((topk == labels[:, None]).any(dim=1).float().mean()),
        "loss": loss,
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def evaluate(model: nn.Module, dataset: Dataset, split: str, input_spec: dict, *, batch_size: int = 256,
             device: str | torch.device = "cpu", limit: int | None = None, outputs: bool = False) -> dict:
    """Metrics of `model` on `dataset[split]` ("all" = every split), inputs preprocessed as on the device.

    Returns {"n", "top1", "top5", "loss", "per_class": {class: acc}, "confusion": [[...]]};
    `limit` evaluates a seeded random subset of that size. With `outputs`, also "logits" (tensor
    [n, classes]), "labels" and "indices" (positions in the split) for per-image results.
    """
    indices = None
    if limit is not None:
        n = len(dataset.split(split)[1])
        if limit < n:
            indices = np.sort(np.random.default_rng(0).choice(n, size=limit, replace=False))
    data = PreprocessedSplit(dataset, split, input_spec, indices=indices)
    model = model.to(device)
    logits, labels = predict_logits(model, data, batch_size=batch_size, device=device)
    m = metrics_from_logits(logits, labels, dataset.classes)
    if outputs:
        m.update(logits=logits, labels=labels, indices=data.indices)
    return m


def prediction_rows(metrics: dict, dataset: Dataset, split: str) -> list[dict]:
    """One row per evaluated image: index, file (folder datasets), label, predicted, confidence, correct."""
    images, _ = dataset.split(split)
    paths = getattr(images, "paths", None)
    probs = torch.softmax(metrics["logits"], dim=1)
    conf, pred = probs.max(dim=1)
    rows = []
    for j, i in enumerate(metrics["indices"]):
        label, p = int(metrics["labels"][j]), int(pred[j])
        rows.append({"index": int(i), "file": str(paths[int(i)]) if paths is not None else "",
                     "label": dataset.classes[label], "predicted": dataset.classes[p],
                     "confidence": round(float(conf[j]), 6), "correct": int(label == p)})
    return rows


def save_predictions_csv(rows: list[dict], path: str | os.PathLike) -> Path:
    """The per-image rows as CSV (header: index,file,label,predicted,confidence,correct), atomically."""
    import csv

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["index", "file", "label", "predicted", "confidence", "correct"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))
    return Path(path)


def save_misclassified(rows: list[dict], dataset: Dataset, split: str, folder: str | os.PathLike) -> int:
    """Copy each misclassified image to FOLDER/<label>_as_<predicted>/ (array datasets: as PNG; series
    windows: as CSV, samples x channels)."""
    import re
    import shutil

    import cv2

    images, _ = dataset.split(split)
    folder = Path(folder)
    count = 0
    for r in rows:
        if r["correct"]:
            continue
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{r['label']}_as_{r['predicted']}")
        d = folder / safe
        d.mkdir(parents=True, exist_ok=True)
        if r["file"]:
            src = Path(r["file"])
            shutil.copy2(src, d / f"{r['index']}_{src.name}")
        elif getattr(dataset, "kind", "image") == "series":  # a window, samples x channels, as CSV
            np.savetxt(d / f"{r['index']}.csv", np.asarray(images[r["index"]]), delimiter=",", fmt="%.9g")
        else:
            img = np.asarray(images[r["index"]])
            if img.ndim == 3:
                img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
            cv2.imwrite(str(d / f"{r['index']}.png"), img)
        count += 1
    return count


def save_confusion_png(metrics: dict, classes: list[str], path: str | os.PathLike, title: str = "") -> Path:
    """Plot the confusion matrix (row-normalized colours, counts written in cells) to a PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(metrics["confusion"], dtype=np.int64)
    k = len(classes)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    side = min(14, 3 + 0.45 * k)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), labels=classes, rotation=90 if k > 10 else 0)
    ax.set_yticks(range(k), labels=classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title or f"top-1 {metrics['top1']:.4f} on {metrics['n']} images")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
