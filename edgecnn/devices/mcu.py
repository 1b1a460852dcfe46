"""Microcontroller profiles and the question "does this TFLM model fit?" (device side: no torch, no host modules).

An MCU profile is a JSON file in edgecnn/devices/profiles/mcu/ (schema "edgecnn.mcu-profile/1"):

    schema, name, title, family ("mcu"), core, part, boards [str]
    memory:    {ram_bytes, flash_bytes, external_ram_bytes|null (e.g. PSRAM), notes}
    toolchain: {compiler, flags}
    tflm_kernels, known_limits [str], sources [{what, url (https://)}]

The fit compares a bundle's measured TFLM numbers (manifest `tflm` block: `arena_bytes`, the tensor
arena the TFLM interpreter needed; `flash_bytes`, the model data) with the part's memory: the arena
must fit in RAM (or external RAM, slower), the model data in flash. The TFLM library, the stack and
the application come on top of both, so the headroom is printed too.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import EdgeCNNError
from .fields import check as _check
from .fields import field as _get
from .fields import read_profile

SCHEMA = "edgecnn.mcu-profile/1"


def _dir():
    return resources.files("edgecnn.devices") / "profiles" / "mcu"


def mcu_profile_names() -> list[str]:
    """Names of the packaged MCU profiles, sorted."""
    d = _dir()
    if not d.is_dir():
        return []
    return sorted(p.name[: -len(".json")] for p in d.iterdir() if p.name.endswith(".json"))


def validate_mcu_profile(p: Any, where: str = "mcu profile") -> dict:
    """Check a dict against edgecnn.mcu-profile/1; raise EdgeCNNError naming the field."""
    _check(isinstance(p, dict), where, "not a JSON object")
    _check(p.get("schema") == SCHEMA, where, f"schema must be {SCHEMA!r}, got {p.get('schema')!r}")
    for key in ("name", "title", "core", "part", "tflm_kernels"):
        _get(p, key, where, str)
    _check(_get(p, "family", where, str) == "mcu", where, "family must be 'mcu'")
    mem = _get(p, "memory", where, dict)
    for key in ("ram_bytes", "flash_bytes"):
        _check(_get(mem, key, f"{where}.memory", int) > 0, f"{where}.memory", f"{key} must be > 0")
    ext = _get(mem, "external_ram_bytes", f"{where}.memory", int, nullable=True)
    _check(ext is None or ext > 0, f"{where}.memory", "external_ram_bytes must be > 0 or null")
    _get(mem, "notes", f"{where}.memory", str)
    tc = _get(p, "toolchain", where, dict)
    for key in ("compiler", "flags"):
        _get(tc, key, f"{where}.toolchain", str)
    for key in ("boards", "known_limits"):
        _check(all(isinstance(v, str) and v for v in _get(p, key, where, list)), where,
               f"'{key}' must be a list of strings")
    sources = _get(p, "sources", where, list)
    _check(bool(sources), where, "sources must not be empty")
    for i, s in enumerate(sources):
        _get(s, "what", f"{where}.sources[{i}]", str)
        _check(_get(s, "url", f"{where}.sources[{i}]", str).startswith("https://"), f"{where}.sources[{i}]",
               "url must be an https:// URL")
    return p


def load_mcu_profile(name: str) -> dict:
    """The packaged MCU profile `name` (e.g. "cortex-m4"), validated; EdgeCNNError for unknown names."""
    names = mcu_profile_names()
    if name not in names:
        raise EdgeCNNError(f"unknown microcontroller profile {name!r}; choose one of: {', '.join(names)}")
    return read_profile(_dir() / f"{name}.json", f"devices/profiles/mcu/{name}.json", name, validate_mcu_profile)


def fit(tflm: dict, profile: dict) -> dict:
    """Whether a bundle's TFLM model fits a part: {fits, arena_in, ram, flash} with bytes needed and available."""
    mem = profile["memory"]
    arena, data = int(tflm["arena_bytes"]), int(tflm["flash_bytes"])
    arena_in = "RAM" if arena <= mem["ram_bytes"] else (
        "external RAM" if mem["external_ram_bytes"] and arena <= mem["external_ram_bytes"] else None)
    ram_have = mem["ram_bytes"] if arena_in != "external RAM" else mem["external_ram_bytes"]
    ram = {"need_bytes": arena, "have_bytes": ram_have, "fits": arena_in is not None}
    flash = {"need_bytes": data, "have_bytes": mem["flash_bytes"], "fits": data <= mem["flash_bytes"]}
    return {"profile": profile["name"], "part": profile["part"], "fits": ram["fits"] and flash["fits"],
            "arena_in": arena_in, "ram": ram, "flash": flash}


def _kb(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


def format_fit(f: dict) -> str:
    """One line: 'fits cortex-m4 (...): arena 10.1 KiB of 256.0 KiB RAM, model 74.0 KiB of 1,024.0 KiB flash'."""
    ram, flash = f["ram"], f["flash"]
    where = "external RAM" if f["arena_in"] == "external RAM" else "RAM"
    parts = [f"tensor arena {_kb(ram['need_bytes'])} of {_kb(ram['have_bytes'])} {where}"
             + ("" if ram["fits"] else " (too big)"),
             f"model data {_kb(flash['need_bytes'])} of {_kb(flash['have_bytes'])} flash"
             + ("" if flash["fits"] else " (too big)")]
    verdict = "fits" if f["fits"] else "does NOT fit"
    tail = ("; the TFLM library, stack and application need the rest" if f["fits"] else "")
    return f"{verdict} {f['profile']} ({f['part']}): {', '.join(parts)}{tail}"


def bundle_tflm_block(bundle: str | Path) -> dict:
    """The manifest `tflm` block of a bundle directory (EdgeCNNError if it has none)."""
    from ..bundle import Bundle

    b = Bundle.load(bundle)
    block = b.manifest.get("tflm")
    if not isinstance(block, dict) or "arena_bytes" not in block:
        raise EdgeCNNError(f"{b.path}: no TFLM model in this bundle; export it with --formats tflm --int8 --calib DATA")
    return block


def format_mcu_profile(p: dict) -> str:
    mem = p["memory"]
    lines = [
        f"{p['name']}: {p['title']}",
        f"  core       {p['core']}",
        f"  part       {p['part']} (boards: {', '.join(p['boards'])})",
        f"  memory     {_kb(mem['ram_bytes'])} RAM, {_kb(mem['flash_bytes'])} flash"
        + (f", {_kb(mem['external_ram_bytes'])} external RAM" if mem["external_ram_bytes"] else ""),
        f"             {mem['notes']}",
        f"  toolchain  {p['toolchain']['compiler']}: {p['toolchain']['flags']}",
        f"  kernels    {p['tflm_kernels']}",
        "  known limits",
    ]
    lines += [f"    - {x}" for x in p["known_limits"]]
    lines.append("  sources")
    lines += [f"    {s['what']}: {s['url']}" for s in p["sources"]]
    return "\n".join(lines)
