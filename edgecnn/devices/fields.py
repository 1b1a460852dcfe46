"""Field checks shared by the device-profile readers (boards: profiles.py, microcontrollers: mcu.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from ..errors import EdgeCNNError


def check(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise EdgeCNNError(f"{where}: {msg}")


def field(d: Any, key: str, where: str, types: type | tuple, nullable: bool = False) -> Any:
    """d[key], which must exist and be of `types` (never a bool standing in for a number)."""
    check(isinstance(d, dict) and key in d, where, f"missing field '{key}'")
    value = d[key]
    if value is None and nullable:
        return None
    check(isinstance(value, types) and not isinstance(value, bool), where,
          f"field '{key}' has the wrong type ({type(value).__name__})")
    return value


def read_profile(path: Path, where: str, name: str, validate: Callable[[Any, str], None]) -> dict:
    """A packaged profile file: JSON, validated by `validate`, its `name` field equal to `name`."""
    try:
        profile = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise EdgeCNNError(f"{where}: not valid JSON ({e})") from None
    validate(profile, where)
    check(profile["name"] == name, where, f"name is {profile['name']!r}, expected {name!r}")
    return profile
