"""Chance level: is a measured accuracy distinguishable from always predicting the commonest class?

A model whose validation accuracy never leaves chance has learnt nothing usable (the MobileNetV3
BatchNorm failure on small data scored exactly 1/3 on three classes); training flags it and
`edgecnn export` refuses such a model unless told otherwise. numpy only.
"""

from __future__ import annotations

import math

import numpy as np

MIN_MARGIN = 0.02  # points of accuracy, on top of the sampling noise


def chance_accuracy(labels: np.ndarray) -> float:
    """Accuracy of always predicting the most frequent class of `labels`."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return 0.0
    return float(np.bincount(labels.astype(np.int64)).max() / labels.size)


def chance_margin(n: int, chance: float) -> float:
    """How far above chance an accuracy on `n` images must be: two binomial standard errors."""
    return max(MIN_MARGIN, 2.0 * math.sqrt(max(chance * (1 - chance), 1e-12) / max(n, 1)))


def above_chance(accuracy: float | None, labels: np.ndarray) -> bool:
    """True when `accuracy` on these labels is clearly better than the majority-class guess."""
    if accuracy is None:
        return False
    p = chance_accuracy(labels)
    return accuracy > p + chance_margin(len(labels), p)


def describe(accuracy: float, labels: np.ndarray, classes: list[str]) -> str:
    """'0.3333 on 60 images, chance 0.3333 (always 'animal') + margin 0.12'."""
    labels = np.asarray(labels)
    p = chance_accuracy(labels)
    commonest = classes[int(np.bincount(labels).argmax())] if labels.size else "?"
    return (f"{accuracy:.4f} on {labels.size} images, chance {p:.4f} (always '{commonest}') "
            f"+ margin {chance_margin(labels.size, p):.2f}")
