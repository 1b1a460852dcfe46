"""Smoothing of a stream of per-window results, after TensorFlow Lite Micro's `RecognizeCommands`.

The micro_speech example of TFLM (recognize_commands.cc) averages the class scores of the results
inside a sliding time window, refuses to decide until the window holds `minimum_count` results, and
reports a *new* command when the averaged top score exceeds `detection_threshold` and either the top
label differs from the last one reported, or the last report is older than `suppression_ms`.
`ResultSmoother` keeps that rule, with two changes for edgecnn's streams:

* the average is over the last `average` windows (a count, not a duration: a file is read faster than
  real time, and a live source that keeps only its newest window skips some), and time is stream time
  counted in samples, so that a file and the same recording arriving live give the same decisions;
* probabilities are floats in [0, 1] (TFLM sums int8 scores + 128), and no label is special (TFLM
  lifts the suppression after its "silence" label, which a sensor model need not have).

numpy only (device side).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ..errors import EdgeCNNError


@dataclass
class Smoothed:
    """The smoothed view of the stream after one window."""

    label: str | None  # top label of the averaged probabilities (None until `minimum_count` windows)
    index: int  # its class index (-1 with label None)
    prob: float  # its averaged probability (0.0 with label None)
    count: int  # windows in the average
    detected: bool  # a new detection: prob > threshold and (a new label, or the suppression time has passed)

    def to_dict(self) -> dict:
        return {"label": self.label, "prob": round(self.prob, 5), "n": self.count}


class ResultSmoother:
    """Mean of the last `average` probability vectors, a detection threshold and a suppression time.

    `update(probs, position)` takes one window's probabilities and the stream position of its last
    sample (samples since the start; must not decrease) and returns a `Smoothed`. `suppression` is in
    samples: the same label is not reported again sooner than that after it was last reported.
    """

    def __init__(self, classes: list[str], average: int = 3, threshold: float = 0.5, suppression: int = 0,
                 minimum_count: int | None = None):
        if average < 1:
            raise EdgeCNNError(f"--average must be at least 1 window, got {average}")
        if not 0.0 <= threshold < 1.0:
            raise EdgeCNNError(f"--threshold must be in [0, 1), got {threshold:g}")
        if suppression < 0:
            raise EdgeCNNError(f"--suppress must not be negative, got {suppression} samples")
        minimum_count = min(3, average) if minimum_count is None else minimum_count
        if not 1 <= minimum_count <= average:
            raise EdgeCNNError(f"minimum count {minimum_count} must lie between 1 and --average ({average})")
        self.classes = list(classes)
        self.average, self.threshold, self.suppression = int(average), float(threshold), int(suppression)
        self.minimum_count = int(minimum_count)
        self._recent: deque[np.ndarray] = deque(maxlen=self.average)
        self._last_position: int | None = None
        self.previous_label: str | None = None  # the last label reported as detected
        self.previous_position: int | None = None  # where it was reported
        self.detections = 0

    def update(self, probs: np.ndarray, position: int) -> Smoothed:
        p = np.asarray(probs, np.float64).reshape(-1)
        if p.shape[0] != len(self.classes):
            raise EdgeCNNError(f"smoothing: {p.shape[0]} probabilities for {len(self.classes)} classes")
        if self._last_position is not None and position < self._last_position:
            # TFLM refuses results out of time order the same way
            raise EdgeCNNError(f"smoothing: results must come in stream order ({position} after {self._last_position})")
        self._last_position = position
        self._recent.append(p)
        n = len(self._recent)
        if n < self.minimum_count:
            return Smoothed(None, -1, 0.0, n, False)
        mean = np.mean(self._recent, axis=0)  # a few windows: summed afresh, no drift over a long run
        top = int(np.argmax(mean))
        label, prob = self.classes[top], float(mean[top])
        since = None if self.previous_position is None else position - self.previous_position
        detected = prob > self.threshold and (label != self.previous_label or since is None
                                              or since > self.suppression)
        if detected:
            self.previous_label, self.previous_position = label, position
            self.detections += 1
        return Smoothed(label, top, prob, n, detected)

    def reset(self) -> None:
        """Forget the averaged windows (a gap in the stream: a live source reconnected)."""
        self._recent.clear()
