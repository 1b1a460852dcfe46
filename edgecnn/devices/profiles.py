"""Device profiles: what to run on each target board, and the published numbers to compare with.

A profile is a JSON file in edgecnn/devices/profiles/ (schema "edgecnn.device-profile/1"):

    schema, name, title, family ("raspberry-pi"|"jetson"|"generic"), arch ("aarch64"|"x86_64")
    hardware: {soc, cpu, gpu|null, memory}
    software: {os, python, install (pip extras or JetPack notes), setup_script|null}
    runtime:  {backend ("onnxruntime"|"litert"|"tensorrt"), precision ("fp32"|"fp16"|"int8"),
               threads (int >= 1, or null for the backend's default), fallback_backend|null}
    camera:   {source (URI for `edgecnn run --source`), alternatives [URI], notes}
    input_notes [str], known_limits [str]
    reference_numbers: [{model, runtime, precision, input, metric, value, unit, source (URL), note}]
              published figures measured by others, for comparison only (never by this project)

`apply_profile(args, profile)` fills an argparse namespace's backend/precision/threads/source from a
profile where the user left them unset; `edgecnn run/profile --device NAME` use it.
"""

from __future__ import annotations

import argparse
from importlib import resources
from typing import Any

from ..errors import EdgeCNNError
from .fields import check as _check
from .fields import field as _field
from .fields import read_profile

SCHEMA = "edgecnn.device-profile/1"
FAMILIES = ("raspberry-pi", "jetson", "generic")
ARCHES = ("aarch64", "x86_64")
BACKENDS = ("onnxruntime", "litert", "tensorrt", "openvino")
PRECISIONS = ("fp32", "fp16", "int8")


def _profiles_dir():
    return resources.files("edgecnn.devices") / "profiles"


def profile_names() -> list[str]:
    """Names of the packaged profiles, sorted."""
    return sorted(p.name[: -len(".json")] for p in _profiles_dir().iterdir() if p.name.endswith(".json"))


def _str_list(d: dict, key: str, where: str) -> list[str]:
    value = _field(d, key, where, list)
    _check(all(isinstance(v, str) and v for v in value), where, f"'{key}' must be a list of strings")
    return value


def validate_profile(p: Any, where: str = "profile") -> dict:
    """Check a profile dict against edgecnn.device-profile/1; raise EdgeCNNError naming the field."""
    _check(isinstance(p, dict), where, "not a JSON object")
    schema = p.get("schema")
    _check(schema == SCHEMA, where, f"schema must be {SCHEMA!r}, got {schema!r}")
    _field(p, "name", where, str)
    _field(p, "title", where, str)
    _check(_field(p, "family", where, str) in FAMILIES, where, f"family must be one of {'|'.join(FAMILIES)}")
    _check(_field(p, "arch", where, str) in ARCHES, where, f"arch must be one of {'|'.join(ARCHES)}")

    hw = _field(p, "hardware", where, dict)
    for key in ("soc", "cpu", "memory"):
        _field(hw, key, f"{where}.hardware", str)
    _field(hw, "gpu", f"{where}.hardware", str, nullable=True)

    sw = _field(p, "software", where, dict)
    for key in ("os", "python"):
        _field(sw, key, f"{where}.software", str)
    _str_list(sw, "install", f"{where}.software")
    _field(sw, "setup_script", f"{where}.software", str, nullable=True)

    rt = _field(p, "runtime", where, dict)
    w = f"{where}.runtime"
    _check(_field(rt, "backend", w, str) in BACKENDS, w, f"backend must be one of {'|'.join(BACKENDS)}")
    _check(
        _field(rt, "precision", w, str) in PRECISIONS, w, f"precision must be one of {'|'.join(PRECISIONS)}"
    )
    threads = _field(rt, "threads", w, int, nullable=True)  # null: the backend's default (all cores)
    _check(threads is None or threads >= 1, w, "threads must be >= 1 or null")
    fallback = _field(rt, "fallback_backend", w, str, nullable=True)
    _check(
        fallback is None or fallback in BACKENDS, w, f"fallback_backend must be one of {'|'.join(BACKENDS)}"
    )

    cam = _field(p, "camera", where, dict)
    _check("://" in _field(cam, "source", f"{where}.camera", str), f"{where}.camera", "source must be a URI")
    _str_list(cam, "alternatives", f"{where}.camera")
    _field(cam, "notes", f"{where}.camera", str)

    _str_list(p, "input_notes", where)
    _str_list(p, "known_limits", where)
    refs = _field(p, "reference_numbers", where, list)
    for i, ref in enumerate(refs):
        w = f"{where}.reference_numbers[{i}]"
        for key in ("model", "runtime", "precision", "input", "metric", "unit", "note"):
            _field(ref, key, w, str)
        _check(_field(ref, "value", w, (int, float)) > 0, w, "value must be > 0")
        _check(_field(ref, "source", w, str).startswith("https://"), w, "source must be an https:// URL")
    return p


def load_profile(name: str) -> dict:
    """The packaged profile called `name` (e.g. "rpi4"), validated; EdgeCNNError for unknown names."""
    names = profile_names()
    if name not in names:
        from .mcu import mcu_profile_names

        if name in mcu_profile_names():
            raise EdgeCNNError(f"{name!r} is a microcontroller profile: the bundle's TFLM sources run there, not "
                               f"edgecnn; use `edgecnn info --profile {name} --bundle DIR` or `edgecnn export "
                               f"--formats tflm --int8 --calib DATA --device {name}`")
        raise EdgeCNNError(f"unknown device profile {name!r}; choose one of: {', '.join(names)}")
    return read_profile(_profiles_dir() / f"{name}.json", f"devices/profiles/{name}.json", name, validate_profile)


def apply_profile(args: argparse.Namespace, profile: dict) -> dict[str, Any]:
    """Fill args.backend / precision / threads / source from `profile` where the user left them unset.

    "Unset" means the attribute is missing, None or "auto". Returns what was applied, e.g.
    {"backend": "litert", "threads": 4}, so the caller can print it.
    """
    runtime = profile["runtime"]
    wanted = {
        "backend": runtime["backend"],
        "precision": runtime["precision"],
        "threads": runtime["threads"],
        "source": profile["camera"]["source"],
    }
    applied: dict[str, Any] = {}
    for key, value in wanted.items():
        if value is None:
            continue
        if not hasattr(args, key) and key == "source":
            continue  # commands without a source (profile) take only the runtime settings
        if getattr(args, key, None) in (None, "auto"):
            setattr(args, key, value)
            applied[key] = value
    return applied
