"""What device is this? Board, CPU, OS, cameras, inference backends and precisions. No torch here.

Everything is read from files under an injectable `root` ("/" on a real board), so tests can fake a
Raspberry Pi or a Jetson with a few files in a temp dir:

    proc/device-tree/model, sys/firmware/devicetree/base/model   board name (Pi, Jetson, most Arm boards)
    proc/device-tree/compatible                                  SoC family ("nvidia,tegra234", "brcm,bcm2712")
    etc/nv_tegra_release                                         Jetson L4T release -> JetPack release
    var/lib/nvpmodel/status, etc/nvpmodel.conf                   Jetson power mode (when readable)
    proc/cpuinfo, etc/os-release                                 CPU model and cores, operating system
    dev/video*, sys/class/video4linux/video*/{name,index}        cameras (V4L2; CSI on Jetson)

Absent or unreadable files are not errors: the matching fields are None (or empty) and detection goes on.
This is the one environment reader with an injectable root; the profiling area's environment record
should call `detect()` rather than read these files again.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

SCHEMA = "edgecnn.device/1"

# Arm's "CPU part" codes in /proc/cpuinfo (implementer 0x41), for the cores found on edge boards.
ARM_CPU_PARTS = {
    "0xd03": "Cortex-A53",
    "0xd04": "Cortex-A35",
    "0xd05": "Cortex-A55",
    "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73",
    "0xd0a": "Cortex-A75",
    "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1",
    "0xd0d": "Cortex-A77",
    "0xd41": "Cortex-A78",
    "0xd42": "Cortex-A78AE",
    "0xd4b": "Cortex-A78C",
    "0xd40": "Neoverse-V1",
    "0xd49": "Neoverse-N2",
    "0xd4f": "Neoverse-V2",
}

# L4T (Linux for Tegra) release -> JetPack release, from NVIDIA's JetPack archive.
L4T_TO_JETPACK = {
    "32.4.3": "4.4",
    "32.4.4": "4.4.1",
    "32.5.0": "4.5",
    "32.5.1": "4.5.1",
    "32.5.2": "4.5.1",
    "32.6.1": "4.6",
    "32.7.1": "4.6.1",
    "32.7.2": "4.6.2",
    "32.7.3": "4.6.3",
    "32.7.4": "4.6.4",
    "32.7.5": "4.6.5",
    "32.7.6": "4.6.6",
    "35.1.0": "5.0.2",
    "35.2.1": "5.1",
    "35.3.1": "5.1.1",
    "35.4.1": "5.1.2",
    "35.5.0": "5.1.3",
    "35.6.0": "5.1.4",
    "35.6.1": "5.1.5",
    "36.2.0": "6.0 DP",
    "36.3.0": "6.0",
    "36.4.0": "6.1",
    "36.4.3": "6.2",
    "36.4.4": "6.2.1",
    "36.5.0": "6.2.2",
}
JETPACK_MAJOR_BY_L4T_MAJOR = {"32": "4", "34": "5 (developer preview)", "35": "5", "36": "6", "38": "7"}

# V4L2 nodes on a Raspberry Pi that are codecs/ISPs, not cameras.
PI_INTERNAL_VIDEO_NODES = ("bcm2835-codec", "bcm2835-isp", "rpivid", "rpi-hevc", "pispbe", "hevc")
# The Pi's CSI receivers: raw sensor data that only libcamera (Picamera2) turns into images.
PI_CSI_RECEIVER_NODES = ("unicam", "rp1-cfe")

# Python distributions that provide each backend (first one installed wins).
BACKEND_DISTRIBUTIONS = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"),
    "litert": ("ai-edge-litert", "ai-edge-litert-nightly"),
    "tflite_runtime": ("tflite-runtime", "tflite_runtime"),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt_lean", "tensorrt-rtx"),
    "openvino": ("openvino", "openvino-nightly"),
}
BACKEND_MODULES = {
    "onnxruntime": "onnxruntime",
    "litert": "ai_edge_litert",
    "tflite_runtime": "tflite_runtime",
    "tensorrt": "tensorrt",
    "openvino": "openvino",
}


def _read_text(root: Path, rel: str) -> str | None:
    """File content as text (device-tree strings are NUL-terminated), or None if absent/unreadable."""
    try:
        data = (root / rel).read_bytes()
    except OSError:
        return None
    return data.replace(b"\x00", b"\n").decode("utf-8", errors="replace").strip() or None


def board_model(root: Path) -> str | None:
    """The board name from the device tree: 'Raspberry Pi 5 Model B Rev 1.0', 'NVIDIA Jetson Nano ...'."""
    for rel in ("proc/device-tree/model", "sys/firmware/devicetree/base/model"):
        text = _read_text(root, rel)
        if text:
            return text.splitlines()[0].strip()
    return None


def compatible(root: Path) -> list[str]:
    """The device tree's compatible strings, most specific first."""
    for rel in ("proc/device-tree/compatible", "sys/firmware/devicetree/base/compatible"):
        text = _read_text(root, rel)
        if text:
            return [s.strip() for s in text.splitlines() if s.strip()]
    return []


def parse_cpuinfo(text: str | None) -> dict[str, Any]:
    """CPU model and core count from /proc/cpuinfo (x86 'model name', Arm 'CPU part' codes)."""
    if not text:
        return {"model": None, "cores": None}
    cores = len(re.findall(r"^processor\s*:", text, flags=re.M))
    m = re.search(r"^model name\s*:\s*(.+)$", text, flags=re.M)
    model = m.group(1).strip() if m else None
    if model is None:
        # Arm: map each core's part number; big.LITTLE chips list two kinds of core.
        parts = re.findall(r"^CPU part\s*:\s*(0x[0-9a-fA-F]+)", text, flags=re.M)
        implementers = re.findall(r"^CPU implementer\s*:\s*(0x[0-9a-fA-F]+)", text, flags=re.M)
        names: dict[str, int] = {}
        for i, part in enumerate(parts):
            implementer = implementers[i] if i < len(implementers) else "0x41"
            name = ARM_CPU_PARTS.get(part.lower()) if implementer.lower() == "0x41" else None
            name = name or f"Arm core {implementer}/{part}"
            names[name] = names.get(name, 0) + 1
        if names:
            model = " + ".join(f"{n}x {name}" for name, n in names.items())
    return {"model": model, "cores": cores or None}


def parse_os_release(text: str | None) -> dict[str, str | None]:
    fields: dict[str, str] = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip().strip('"').strip("'")
    return {
        "name": fields.get("NAME"),
        "version_id": fields.get("VERSION_ID"),
        "pretty_name": fields.get("PRETTY_NAME"),
        "codename": fields.get("VERSION_CODENAME"),
    }


def parse_l4t_release(text: str | None) -> str | None:
    """'# R35 (release), REVISION: 4.1, GCID: ...' -> '35.4.1'."""
    if not text:
        return None
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if not m:
        return None
    revision = m.group(2).rstrip(".")
    if revision.count(".") == 0:
        revision += ".0"
    return f"{m.group(1)}.{revision}"


def jetpack_for_l4t(l4t: str | None) -> str | None:
    if not l4t:
        return None
    if l4t in L4T_TO_JETPACK:
        return L4T_TO_JETPACK[l4t]
    major = JETPACK_MAJOR_BY_L4T_MAJOR.get(l4t.split(".")[0])
    return f"{major}.x" if major else None


def jetson_power_mode(root: Path) -> dict[str, Any] | None:
    """nvpmodel's current mode (id and name) when its status file is readable, else None."""
    status = _read_text(root, "var/lib/nvpmodel/status")
    if not status:
        return None
    m = re.search(r"pmode:\s*(\d+)", status)
    if not m:
        return None
    mode_id = int(m.group(1))
    name = None
    conf = _read_text(root, "etc/nvpmodel.conf") or ""
    for cid, cname in re.findall(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=([^\s>]+)", conf):
        if int(cid) == mode_id:
            name = cname
    return {"id": mode_id, "name": name}


def detect_jetson(root: Path, model: str | None, compat: list[str]) -> dict[str, Any] | None:
    release_text = _read_text(root, "etc/nv_tegra_release")
    soc = next((c.split(",", 1)[1] for c in compat if c.startswith("nvidia,tegra")), None)
    if release_text is None and soc is None and not (model and "jetson" in model.lower()):
        return None
    l4t = parse_l4t_release(release_text)
    return {
        "model": model,
        "soc": soc,  # tegra210 = Nano (Maxwell), tegra194 = Xavier, tegra234 = Orin
        "l4t": l4t,
        "jetpack": jetpack_for_l4t(l4t),
        "power_mode": jetson_power_mode(root),
    }


def detect_cameras(root: Path, on_jetson: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """(cameras, notes): V4L2 capture devices (skipping Pi codec/ISP/CSI-receiver and metadata
    nodes), CSI sensors on a Jetson, and Picamera2 when importable."""
    cameras: list[dict[str, Any]] = []
    notes: list[str] = []
    pi_csi = False
    try:
        nodes = sorted((root / "dev").glob("video*"), key=lambda p: (len(p.name), p.name))
    except OSError:
        nodes = []
    csi_index = 0
    for node in nodes:
        if not node.name[5:].isdigit():
            continue
        sysfs = f"sys/class/video4linux/{node.name}"
        name = _read_text(root, f"{sysfs}/name")
        index = _read_text(root, f"{sysfs}/index")
        if index not in (None, "0"):  # UVC cameras expose a second, metadata-only node
            continue
        if name and any(name.startswith(p) for p in PI_INTERNAL_VIDEO_NODES):
            continue
        if name and any(name.startswith(p) for p in PI_CSI_RECEIVER_NODES):
            pi_csi = True
            continue
        device = f"/dev/{node.name}"
        if on_jetson and name and name.startswith("vi-output"):
            # Jetson CSI sensors ("vi-output, imx219 7-0010") are read through nvarguscamerasrc.
            cameras.append({"kind": "csi", "uri": f"csi://{csi_index}", "device": device, "name": name})
            csi_index += 1
        else:
            cameras.append({"kind": "v4l2", "uri": f"v4l2://{device}", "device": device, "name": name})
    if importlib.util.find_spec("picamera2") is not None:
        cameras.append({"kind": "picamera2", "uri": "picamera2://0", "device": None, "name": "Picamera2"})
    elif pi_csi:
        notes.append(
            "the Raspberry Pi camera interface is active, but Picamera2 is not importable from this Python: "
            "sudo apt install python3-picamera2, in a venv made with --system-site-packages"
        )
    return cameras, notes


def _distribution_version(names: tuple[str, ...]) -> str | None:
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(name)
    return None


def backends_present() -> dict[str, dict[str, Any]]:
    """Inference backends importable by this Python, with versions (and onnxruntime's providers).

    Only metadata and module specs are read, except onnxruntime which is imported to list its
    execution providers (CUDA/TensorRT on a Jetson build).
    """
    try:  # the runtime area's registry, when it is installed, is the reference
        from ..runtime.backends import available_backends
    except ImportError:
        available_backends = None
    found: dict[str, dict[str, Any]] = {}
    for name, module in BACKEND_MODULES.items():
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            continue
        info: dict[str, Any] = {"version": _distribution_version(BACKEND_DISTRIBUTIONS[name])}
        if name == "onnxruntime":
            try:
                import onnxruntime

                info["version"] = info["version"] or getattr(onnxruntime, "__version__", None)
                info["providers"] = list(onnxruntime.get_available_providers())
            except Exception as e:  # a broken install is worth reporting, not crashing on
                info["error"] = f"{type(e).__name__}: {e}"
        if name == "openvino":
            try:  # the CPU plugin's capabilities decide bf16 (and show a broken install)
                from ..runtime.backends.openvino import cpu_capabilities

                info["capabilities"] = cpu_capabilities()
            except Exception as e:
                info["error"] = f"{type(e).__name__}: {e}"
        found[name] = info
    if available_backends is not None:
        with contextlib.suppress(Exception):
            for name, version in available_backends().items():
                if version and name not in found:
                    found[name] = {"version": version}
    return found


def precisions_for(
    backends: dict[str, dict[str, Any]], jetson: dict[str, Any] | None
) -> dict[str, list[str]]:
    """Which artifact precisions each present backend can run fast here."""
    result: dict[str, list[str]] = {}
    if "onnxruntime" in backends:
        providers = backends["onnxruntime"].get("providers", [])
        gpu = any(p in providers for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider"))
        result["onnxruntime"] = ["fp32", "int8"] + (["fp16"] if gpu else [])
    for lite in ("litert", "tflite_runtime"):
        if lite in backends:
            result[lite] = ["fp32", "int8"]  # XNNPACK runs both
    if "openvino" in backends:
        caps = backends["openvino"].get("capabilities") or []
        result["openvino"] = ["fp32", "int8"] + (["bf16"] if "BF16" in caps else [])
    if "tensorrt" in backends:
        # The Nano's Maxwell GPU (tegra210) has no fast int8 path; fp16 is its best precision.
        no_int8 = bool(jetson and jetson.get("soc") == "tegra210")
        result["tensorrt"] = ["fp32", "fp16"] + ([] if no_int8 else ["int8"])
    return result


def classify_board(model: str | None, jetson: dict[str, Any] | None, arch: str) -> tuple[str, str | None]:
    """(family, suggested profile name). The profile is None when no profile fits (e.g. 32-bit Arm)."""
    text = (model or "").lower()
    if jetson is not None:
        soc = jetson.get("soc")
        if soc == "tegra234" or "orin" in text:
            # Orin NX/AGX get the nearest profile too: same JetPack 6 software stack, more headroom.
            return "jetson", "jetson-orin-nano"
        if soc == "tegra210" or "jetson nano" in text:
            return "jetson", "jetson-nano"
        return "jetson", "linux-aarch64" if arch == "aarch64" else None
    if text.startswith("raspberry pi"):
        if arch not in ("aarch64", "arm64"):
            return "raspberry-pi", None  # 32-bit OS: no aarch64 wheels for the backends
        if re.search(r"raspberry pi (5|500|compute module 5)", text):
            return "raspberry-pi", "rpi5"
        if re.search(r"raspberry pi (4|400|compute module 4)", text):
            return "raspberry-pi", "rpi4"
        return "raspberry-pi", "linux-aarch64"
    if arch in ("x86_64", "amd64"):
        return "generic", "linux-x86_64"
    if arch in ("aarch64", "arm64"):
        return "generic", "linux-aarch64"
    return "generic", None


def detect(root: str | os.PathLike = "/", machine: str | None = None) -> dict[str, Any]:
    """Describe this device. `root` relocates every file read (tests); `machine` overrides the CPU arch.

    With a fake root the core count comes only from its proc/cpuinfo; with the real root it falls
    back to os.cpu_count().
    """
    root = Path(root)
    real_root = root.resolve() == Path("/")
    arch = (machine or platform.machine()).lower()
    model = board_model(root)
    compat = compatible(root)
    jetson = detect_jetson(root, model, compat)
    family, profile = classify_board(model, jetson, arch)
    cpu = parse_cpuinfo(_read_text(root, "proc/cpuinfo"))
    if cpu["cores"] is None and real_root:
        cpu["cores"] = os.cpu_count()
    cpu["arch"] = arch
    backends = backends_present()
    cameras, notes = detect_cameras(root, on_jetson=jetson is not None)
    return {
        "schema": SCHEMA,
        "family": family,
        "board": model,
        "compatible": compat,
        "jetson": jetson,
        "cpu": cpu,
        "os": parse_os_release(_read_text(root, "etc/os-release")),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "cameras": cameras,
        "backends": backends,
        "precisions": precisions_for(backends, jetson),
        "suggested_profile": profile,
        "notes": notes,
    }
