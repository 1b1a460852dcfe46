"""`edgecnn info`: what this device is, what it can run, and which device profile fits it."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import EdgeCNNError


def register(sub: argparse._SubParsersAction) -> None:
    """Add this area's subcommands; handlers import heavy libraries lazily."""
    p = sub.add_parser(
        "info",
        help="show the device, backends, precisions and cameras, and the profile to use",
        description="Detect the board (Raspberry Pi, Jetson + JetPack, other), CPU, OS, Python, installed "
        "inference backends, precisions and cameras, and suggest a device profile for "
        "`edgecnn run/profile --device NAME`.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--profiles", action="store_true", help="list the device profiles and exit")
    p.add_argument("--profile", metavar="NAME", help="show one device profile (e.g. rpi4, cortex-m4) and exit")
    p.add_argument("--bundle", metavar="DIR", help="with a microcontroller --profile: whether the bundle's TFLM "
                   "model fits it (measured arena vs RAM, model data vs flash)")
    p.add_argument(
        "--root",
        default="/",
        metavar="DIR",
        help="read /proc, /sys, /etc and /dev under DIR instead of / (for inspecting a mounted image, or tests)",
    )
    p.add_argument(
        "--arch",
        default=None,
        metavar="ARCH",
        help="with --root: that system's CPU architecture, e.g. aarch64 (default: this machine's)",
    )
    p.set_defaults(func=cmd_info)


def _fmt_backends(info: dict[str, Any]) -> list[str]:
    lines = []
    for name, b in info["backends"].items():
        text = f"{name} {b.get('version') or '(version unknown)'}"
        if b.get("providers"):
            text += f"  providers: {', '.join(b['providers'])}"
        if b.get("capabilities"):
            text += f"  CPU capabilities: {', '.join(b['capabilities'])}"
        if b.get("error"):
            text += f"  BROKEN: {b['error']}"
        precisions = info["precisions"].get(name)
        if precisions:
            text += f"  precisions: {', '.join(precisions)}"
        lines.append(text)
    return lines or ["none (install one: pip install 'edgecnn[tflite]' or 'edgecnn[onnx]')"]


def format_info(info: dict[str, Any]) -> str:
    """The human-readable `edgecnn info` report."""
    cpu, os_ = info["cpu"], info["os"]
    rows: list[tuple[str, Any]] = [("device", info["board"] or f"{info['family']} ({cpu['arch']})")]
    jetson = info["jetson"]
    if jetson:
        mode = jetson.get("power_mode")
        rows += [
            (
                "jetson",
                f"L4T {jetson['l4t'] or '?'}, JetPack {jetson['jetpack'] or '?'}, SoC {jetson['soc'] or '?'}",
            ),
            (
                "power mode",
                f"{mode['id']} ({mode['name'] or 'unnamed'})" if mode else "unknown (run: sudo nvpmodel -q)",
            ),
        ]
    rows += [
        ("cpu", f"{cpu['model'] or 'unknown'}, {cpu['cores'] or '?'} cores, {cpu['arch']}"),
        ("os", os_["pretty_name"] or "unknown"),
        ("python", f"{info['python']} ({info['python_executable']})"),
    ]
    lines = [f"{k:<11} {v}" for k, v in rows]
    backends = _fmt_backends(info)
    lines.append(f"{'backends':<11} {backends[0]}")
    lines += [f"{'':<11} {b}" for b in backends[1:]]
    cams = [f"{c['uri']}" + (f"  ({c['name']})" if c.get("name") else "") for c in info["cameras"]] or [
        "none found"
    ]
    lines.append(f"{'cameras':<11} {cams[0]}")
    lines += [f"{'':<11} {c}" for c in cams[1:]]
    profile = info["suggested_profile"]
    if profile:
        lines.append(
            f"{'profile':<11} {profile}  (use: edgecnn run BUNDLE --device {profile}; "
            f"details: edgecnn info --profile {profile})"
        )
    elif info["family"] == "raspberry-pi":
        lines.append(f"{'profile':<11} none: {cpu['arch']} is a 32-bit OS; install Raspberry Pi OS (64-bit)")
    else:
        lines.append(f"{'profile':<11} none for {cpu['arch']}: edgecnn's backends need x86-64 or 64-bit Arm")
    lines += [f"{'note':<11} {n}" for n in info.get("notes", [])]
    return "\n".join(lines)


def format_profile(p: dict[str, Any]) -> str:
    rt, cam = p["runtime"], p["camera"]
    lines = [
        f"{p['name']}: {p['title']}",
        f"  hardware   {p['hardware']['cpu']}; {p['hardware']['memory']}",
        f"  os         {p['software']['os']}",
        f"  python     {p['software']['python']}",
        f"  runtime    backend={rt['backend']} precision={rt['precision']} threads={rt['threads'] or 'default'}"
        + (f" (fallback: {rt['fallback_backend']})" if rt["fallback_backend"] else ""),
        f"  camera     {cam['source']}"
        + (f" (or {', '.join(cam['alternatives'])})" if cam["alternatives"] else ""),
        "  install",
    ]
    lines += [f"    {line}" for line in p["software"]["install"]]
    lines.append("  known limits")
    lines += [f"    - {line}" for line in p["known_limits"]]
    if p["reference_numbers"]:
        lines.append("  published reference numbers (measured by others, for comparison)")
        for r in p["reference_numbers"]:
            lines.append(
                f"    {r['value']} {r['unit']}  {r['model']}, {r['runtime']}, {r['precision']}: {r['metric']}"
            )
            lines.append(f"      {r['source']}")
    return "\n".join(lines)


def cmd_info(args: argparse.Namespace) -> int:
    from .detect import detect
    from .mcu import mcu_profile_names
    from .profiles import load_profile, profile_names

    if args.bundle and (not args.profile or args.profile not in mcu_profile_names()):
        raise EdgeCNNError("--bundle goes with a microcontroller --profile: "
                           f"{', '.join(mcu_profile_names())}")
    if args.profile and args.profile in mcu_profile_names():
        return _mcu_info(args)
    if args.profiles:
        profiles = [load_profile(n) for n in profile_names()]
        if args.json:
            print(json.dumps(profiles, indent=2))
        else:
            for p in profiles:
                print(
                    f"{p['name']:<18} {p['runtime']['backend']:<12} {p['runtime']['precision']:<5} {p['title']}"
                )
            from .mcu import load_mcu_profile

            for name in mcu_profile_names():
                print(f"{name:<18} {'tflm':<12} {'int8':<5} {load_mcu_profile(name)['title']}")
        return 0
    if args.profile:
        p = load_profile(args.profile)
        print(json.dumps(p, indent=2) if args.json else format_profile(p))
        return 0
    from pathlib import Path

    if not Path(args.root).is_dir():
        raise EdgeCNNError(f"--root {args.root}: not a directory")
    info = detect(args.root, machine=args.arch)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def _mcu_info(args: argparse.Namespace) -> int:
    """`edgecnn info --profile cortex-m4 [--bundle DIR]`: the MCU profile, and whether the bundle's TFLM model fits."""
    from .mcu import bundle_tflm_block, fit, format_fit, format_mcu_profile, load_mcu_profile

    p = load_mcu_profile(args.profile)
    result = fit(bundle_tflm_block(args.bundle), p) if args.bundle else None
    if args.json:
        print(json.dumps({"profile": p, "fit": result} if result else p, indent=2))
    else:
        print(format_mcu_profile(p))
        if result:
            print(f"  bundle     {args.bundle}: {format_fit(result)}")
    return 0
