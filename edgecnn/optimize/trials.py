"""The trial log: one JSON line per measured (or failed) trial, keyed by its settings; resumable.

A trial is one point of the search space: prune ratio + fine-tune epochs, float or QAT weights, artifact
format and precision, backend and thread count, on one target. Its key is the canonical JSON of those
settings, so a rerun of the same command skips every trial already in the log, and a changed setting is a
new trial. Lines are appended and fsynced one by one: a run killed mid-search loses at most the trial it
was measuring, and a torn last line (power cut) is skipped on reading.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from ..labels import config_label

KEY_FIELDS = ("ratio", "finetune_epochs", "variant", "qat_epochs", "format", "precision", "backend", "threads",
              "target")


def trial_key(settings: dict[str, Any]) -> str:
    """The canonical key of a trial's settings (only KEY_FIELDS count)."""
    return json.dumps({k: settings.get(k) for k in KEY_FIELDS}, sort_keys=True)


def settings_label(t: dict[str, Any]) -> str:
    """'prune 30% QAT tflite int8 litert, 2 threads' for plots, tables and messages."""
    prune = f"prune {round(100 * t['ratio'])}%" if t.get("ratio") else "no prune"
    variant = " QAT" if t.get("variant") == "qat" else ""
    return config_label(f"{prune}{variant}", t["format"], t["precision"], t["backend"], threads=t.get("threads"))


class TrialLog:
    """trials.jsonl in the output folder: read once, appended to as trials finish."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.trials: dict[str, dict] = {}
        self.torn_lines = 0
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    self.trials[trial_key(rec)] = rec
                except (json.JSONDecodeError, TypeError, AttributeError):
                    self.torn_lines += 1
        self.resumed = len(self.trials)

    def __contains__(self, settings: dict) -> bool:
        return trial_key(settings) in self.trials

    def get(self, settings: dict) -> dict | None:
        return self.trials.get(trial_key(settings))

    def add(self, record: dict) -> dict:
        """Append one trial and make it durable before returning."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.trials[trial_key(record)] = record
        return record

    def measured(self, target: str | None = None) -> list[dict]:
        return [t for t in self.trials.values() if t.get("status") == "ok"
                and (target is None or t.get("target") == target)]

    def extend(self, records: Iterable[dict]) -> None:
        for r in records:
            self.add(r)
