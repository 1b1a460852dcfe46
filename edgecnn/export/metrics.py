"""Accuracy, agreement and the drop gate of one exported artifact: the `verified` record (numpy only).

Shared by export verification (verify.py) and the TensorFlow Lite Micro target (tflm.py), which
both import it and nothing else of each other's.
"""

from __future__ import annotations

import numpy as np

from ..errors import EdgeCNNError


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


def measure(logits: np.ndarray, labels: np.ndarray, reference: np.ndarray | None, *,
            dataset: str, split: str) -> dict:
    """The manifest `verified` block for one artifact."""
    acc = accuracy(logits, labels)
    rec: dict = {"dataset": dataset, "split": split, "samples": int(len(labels)), "accuracy": round(acc, 6)}
    if reference is not None:
        ref_acc = accuracy(reference, labels)
        rec.update(
            max_abs_diff=float(np.abs(logits - reference).max()),
            top1_agreement=round(float((logits.argmax(1) == reference.argmax(1)).mean()), 6),
            reference_accuracy=round(ref_acc, 6),
            drop_points=round(100.0 * (ref_acc - acc), 3),
        )
    else:
        rec.update(max_abs_diff=None, top1_agreement=None, reference_accuracy=None, drop_points=None)
    return rec


def check_drop(file: str, rec: dict, max_drop: float) -> None:
    """Raise when an artifact loses more than `max_drop` points of accuracy against its reference.

    The reference is PyTorch's accuracy on the same samples, or (accuracy-only mode, no checkpoint
    here) the accuracy recorded in the manifest; a recorded figure measured on a different number of
    samples widens the bound by `rec["tolerance_points"]` (3 standard errors of the sample).
    """
    drop = rec.get("drop_points")
    tolerance = rec.get("tolerance_points") or 0.0
    if drop is None or drop <= max_drop + tolerance:
        return
    agreement = rec.get("top1_agreement")
    against = "PyTorch" if agreement is not None else "the manifest's recorded"
    bound = f"--max-drop {max_drop:g}" + (f" + {tolerance:.2f} sampling tolerance" if tolerance else "")
    detail = (f"top-1 agreement {100 * agreement:.2f}%" if agreement is not None
              else "accuracy-only: no checkpoint on this machine")
    raise EdgeCNNError(
        f"{file}: accuracy {100 * rec['accuracy']:.2f}% vs {against} {100 * rec['reference_accuracy']:.2f}% "
        f"on {rec['samples']} {rec['dataset']} {rec['split']} samples: drop {drop:.2f} points > {bound} "
        f"({detail})"
    )
