"""Field checks shared by the device-profile readers (boards: profiles.py, microcontrollers: mcu.py)."""

from __future__ import annotations

from typing import Any

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
