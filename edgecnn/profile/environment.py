"""The environment record written next to every latency number (no torch here).

Board, Jetson release and power mode, CPU and OS come from the devices area's `detect()`; this module
adds what changes from run to run and moves latency: CPU frequency governor and clock, temperatures,
load average, memory, and the versions of the libraries that run the model. Every file is read under
an injectable `root` ("/" on a real device) so tests can fake a board; an absent or unreadable file
gives None, never an error.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..devices.detect import detect

# Distributions whose versions matter for a latency number (first name found wins per entry).
LIBRARIES = {
    "edgecnn": ("edgecnn",),
    "numpy": ("numpy",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"),
    "ai-edge-litert": ("ai-edge-litert", "ai-edge-litert-nightly"),
    "tflite-runtime": ("tflite-runtime",),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt-rtx"),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
    "psutil": ("psutil",),
}


def _read(root: Path, rel: str) -> str | None:
    try:
        text = (root / rel).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return text.replace("\x00", "").strip() or None


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    with contextlib.suppress(ValueError):
        return int(text.split()[0])
    return None


def cpu_frequency(root: Path) -> dict[str, Any]:
    """Governor and current/max clock (MHz) of each CPU core that exposes cpufreq."""
    cores = []
    base = root / "sys/devices/system/cpu"
    try:
        dirs = sorted((p for p in base.glob("cpu[0-9]*") if p.name[3:].isdigit()), key=lambda p: int(p.name[3:]))
    except OSError:
        dirs = []
    for d in dirs:
        rel = d.relative_to(root) / "cpufreq"
        governor = _read(root, f"{rel}/scaling_governor")
        cur = _int(_read(root, f"{rel}/scaling_cur_freq"))
        mx = _int(_read(root, f"{rel}/scaling_max_freq")) or _int(_read(root, f"{rel}/cpuinfo_max_freq"))
        if governor is None and cur is None and mx is None:
            continue
        cores.append({
            "cpu": int(d.name[3:]),
            "governor": governor,
            "cur_mhz": round(cur / 1000, 1) if cur else None,  # cpufreq reports kHz
            "max_mhz": round(mx / 1000, 1) if mx else None,
        })
    governors = sorted({c["governor"] for c in cores if c["governor"]})
    return {"governors": governors, "cores": cores}


def temperatures(root: Path) -> list[dict[str, Any]]:
    """Thermal zones as {zone, type, celsius} (sysfs reports millidegrees)."""
    zones = []
    base = root / "sys/class/thermal"
    try:
        dirs = sorted(base.glob("thermal_zone*"), key=lambda p: (len(p.name), p.name))
    except OSError:
        dirs = []
    for d in dirs:
        rel = d.relative_to(root)
        milli = _int(_read(root, f"{rel}/temp"))
        if milli is None:
            continue
        zones.append({"zone": d.name, "type": _read(root, f"{rel}/type"), "celsius": round(milli / 1000, 1)})
    return zones


def memory_total_mb(root: Path) -> float | None:
    text = _read(root, "proc/meminfo")
    m = re.search(r"^MemTotal:\s*(\d+)\s*kB", text or "", flags=re.M)
    return round(int(m.group(1)) / 1024, 1) if m else None


def load_average(root: Path) -> list[float] | None:
    """1/5/15-minute load: a busy machine makes latency numbers noisy, so it is recorded."""
    text = _read(root, "proc/loadavg")
    if not text:
        return None
    with contextlib.suppress(ValueError):
        return [float(v) for v in text.split()[:3]]
    return None


def library_versions() -> dict[str, str]:
    found = {}
    for key, names in LIBRARIES.items():
        for name in names:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                found[key] = importlib.metadata.version(name)
                break
    return found


def environment_record(root: str | os.PathLike = "/", machine: str | None = None) -> dict[str, Any]:
    """Everything about this machine that a reader needs to trust or reproduce a latency number."""
    root = Path(root)
    device = detect(root, machine=machine)
    return {
        "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node() if root.resolve() == Path("/") else None,
        "board": device["board"],
        "family": device["family"],
        "jetson": device["jetson"],
        "cpu": {**device["cpu"], "frequency": cpu_frequency(root)},
        "memory_total_mb": memory_total_mb(root),
        "temperatures": temperatures(root),
        "load_average": load_average(root),
        "os": {**device["os"], "kernel": platform.release(), "system": platform.system()},
        "python": device["python"],
        "libraries": library_versions(),
        "backends": device["backends"],
    }


def environment_summary(env: dict) -> str:
    """One line: 'Raspberry Pi 5 | Cortex-A76 x4 | ondemand 2400 MHz | 52.1 C | Debian 12 | Python 3.11'."""
    cpu = env.get("cpu") or {}
    parts = [env.get("board") or platform.machine()]
    model = cpu.get("model")
    parts.append(f"{model or 'CPU'} x{cpu.get('cores') or '?'}")
    freq = cpu.get("frequency") or {}
    clocks = [c["cur_mhz"] for c in freq.get("cores", []) if c.get("cur_mhz")]
    if freq.get("governors") or clocks:
        gov = "/".join(freq.get("governors") or []) or "governor ?"
        parts.append(f"{gov} {max(clocks):.0f} MHz" if clocks else gov)
    temps = [t["celsius"] for t in env.get("temperatures") or []]
    if temps:
        parts.append(f"{max(temps):.1f} C")
    jetson = env.get("jetson")
    if jetson and jetson.get("power_mode"):
        pm = jetson["power_mode"]
        parts.append(f"nvpmodel {pm.get('id')} {pm.get('name') or ''}".strip())
    os_name = (env.get("os") or {}).get("pretty_name")
    if os_name:
        parts.append(os_name)
    parts.append(f"Python {env.get('python')}")
    load = env.get("load_average")
    if load:
        parts.append(f"load {load[0]:.2f}")
    return " | ".join(str(p) for p in parts)
