"""The systemd unit for `edgecnn run` as a service (`edgecnn service unit`). No torch here.

`Type=notify`: `edgecnn run` sends READY=1 after its first result, WATCHDOG=1 while results flow and
STATUS= lines (sd_notify), so systemd restarts a run whose pipeline wedges (`WatchdogSec`), not only
one that exits (`Restart=always`). The hardening is what does not get in a camera's way: the file
system is read-only except the root directory (bundles, predictions, tune cache), /tmp is private,
no new privileges, kernel tunables/modules/cgroups protected. Device access is left alone on purpose:
PrivateDevices=, DeviceAllow=/DevicePolicy=, and ProtectClock= (which implies DeviceAllow=char-rtc r
and so closes every other device node) would hide /dev/video*, /dev/media*, /dev/dma_heap and the
Jetson's /dev/nvhost*; MemoryDenyWriteExecute= and SystemCallFilter= are left out because inference
backends JIT and call what they need. Per-user units get only what a user manager can apply.
"""

from __future__ import annotations

import argparse
import grp
import importlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from ..errors import EdgeCNNError

DEFAULT_NAME = "edgecnn"
DEFAULT_HEALTH = "127.0.0.1:8081"
SERVE_DEFAULT = "127.0.0.1:8080"  # `edgecnn run --serve` without an address
SYSTEM_ROOT = Path("/var/lib/edgecnn")
CAMERA_GROUPS = ("video", "render")  # device nodes of cameras / GPUs belong to these on Debian, Pi OS, L4T


def user_root() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share") / "edgecnn"


def unit_dir(user: bool) -> Path:
    """Where units are installed: /etc/systemd/system, or ~/.config/systemd/user for --user."""
    if not user:
        return Path("/etc/systemd/system")
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".config") / "systemd" / "user"


def systemd_quote(arg: str) -> str:
    """One command-line word for ExecStart= (systemd.service "Command lines", systemd.unit specifiers).

    Specifiers (%) and variables ($) are expanded inside quotes too, so they are doubled; a word with
    whitespace, quotes, backslashes or a lone ';' is double-quoted with C-style escapes.
    """
    if "\n" in arg or "\r" in arg or "\0" in arg:
        raise EdgeCNNError(f"a unit's command line cannot hold a line break or NUL: {arg!r}")
    word = arg.replace("%", "%%").replace("$", "$$")
    if word and not any(c in word for c in " \t\"'\\") and word != ";":
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Refuse(argparse.ArgumentParser):
    """An argparse parser whose errors are EdgeCNNError (one line), not usage + exit."""

    def error(self, message: str) -> NoReturn:
        raise EdgeCNNError(f"edgecnn run would refuse these options: {message}")


def check_run_args(argv: list[str]) -> argparse.Namespace:
    """Parse `edgecnn run ARGV` with the real `run` parser, so a typo fails now, not at boot."""
    parser = _Refuse(prog="edgecnn")
    sub = parser.add_subparsers(dest="command")
    importlib.import_module("edgecnn.runtime.cli").register(sub)
    return parser.parse_args(["run", *argv])


def _has_option(argv: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in argv)


def _option_value(argv: list[str], flag: str) -> str | None:
    for i, a in enumerate(argv):
        if a == flag:
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                return argv[i + 1]
            return SERVE_DEFAULT if flag == "--serve" else None
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


@dataclass
class UnitSpec:
    """Everything the unit says. `bundle` is what `edgecnn run` loads (usually ROOT/current)."""

    sources: list[str]
    root: Path
    bundle: Path | None = None
    name: str = DEFAULT_NAME
    health: str | None = DEFAULT_HEALTH
    predictions: Path | None = None
    run_args: list[str] = field(default_factory=list)
    user: bool = False
    run_as: str | None = None
    python: str = sys.executable
    watchdog_s: int = 30
    start_timeout_s: int = 300

    @property
    def run_bundle(self) -> Path:
        return self.bundle if self.bundle is not None else self.root / "current"

    def run_argv(self) -> list[str]:
        """`edgecnn run ...` as the service runs it (headless, health endpoint, predictions file)."""
        argv = [str(self.run_bundle)]
        for source in self.sources:
            argv += ["--source", source]
        if not _has_option(self.run_args, "--headless"):
            argv.append("--headless")
        if not _has_option(self.run_args, "--reconnect-timeout"):
            # never give up on a camera inside the run: while it is away no WATCHDOG=1 is sent, and
            # systemd restarts the service after WatchdogSec (before the first result: TimeoutStartSec)
            argv += ["--reconnect-timeout", "0"]
        if self.health and not _has_option(self.run_args, "--health"):
            argv += ["--health", self.health]
        if self.predictions is not None:
            argv += ["--predictions", str(self.predictions)]
        return argv + list(self.run_args)

    def health_address(self) -> str | None:
        """HOST:PORT whose /healthz answers for this service (--health, else the --serve dashboard)."""
        argv = self.run_argv()
        return _option_value(argv, "--health") or _option_value(argv, "--serve")


def _validate(spec: UnitSpec) -> None:
    if not spec.sources:
        raise EdgeCNNError("which camera? give --source (several for several cameras, if edgecnn run takes them)")
    if not spec.name or any(c in spec.name for c in "/ \t\n@") or spec.name.startswith("."):
        raise EdgeCNNError(f"--name {spec.name!r}: a unit name is letters, digits, '-', '_', '.' (no '/', '@')")
    if not spec.root.is_absolute():
        raise EdgeCNNError(f"--root {spec.root}: must be an absolute path (the unit runs from /)")
    if spec.bundle is not None and not spec.bundle.is_absolute():
        raise EdgeCNNError(f"--bundle {spec.bundle}: must be an absolute path")
    if spec.predictions is not None and not spec.predictions.is_absolute():
        raise EdgeCNNError(f"--predictions {spec.predictions}: must be an absolute path")
    if not Path(spec.python).is_absolute():
        raise EdgeCNNError(f"--python {spec.python}: must be an absolute path")
    if spec.watchdog_s < 1 or spec.start_timeout_s < 1:
        raise EdgeCNNError("--watchdog-sec and --start-timeout must be at least 1 second")
    if _has_option(spec.run_args, "--source") or _has_option(spec.run_args, "--predictions"):
        raise EdgeCNNError("give --source and --predictions as options of `edgecnn service`, not after --")
    check_run_args(spec.run_argv())


def render_unit(spec: UnitSpec) -> str:
    """The unit file's text (validated: the run options parse, paths are absolute)."""
    _validate(spec)
    exec_start = " ".join(systemd_quote(w) for w in [spec.python, "-m", "edgecnn", "run", *spec.run_argv()])
    writable = [spec.root]
    if spec.predictions is not None and not spec.predictions.parent.is_relative_to(spec.root):
        writable.append(spec.predictions.parent)
    lines = [
        "# Written by `edgecnn service unit` (docs/deploy.md). Re-create it rather than editing it by hand.",
        "[Unit]",
        f"Description=edgecnn live classification ({', '.join(spec.sources).replace('%', '%%')})",
        "StartLimitIntervalSec=0",  # keep restarting a camera that stays away, never give up
    ]
    if not spec.user:  # network cameras: wait for the network (user managers have no network-online.target)
        lines += ["Wants=network-online.target", "After=network-online.target"]
    lines += [
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={exec_start}",
        # taken whole (no quotes, a space is fine); only specifiers are expanded
        f"WorkingDirectory={str(spec.root).replace('%', '%%')}",
        # the tune cache (measured backend choice) must live where the sandbox can write
        f"Environment={systemd_quote('EDGECNN_CACHE=' + str(spec.root / 'cache'))} PYTHONUNBUFFERED=1",
        f"WatchdogSec={spec.watchdog_s}",
        # READY=1 comes with the first result: a camera that is not up yet holds the start this long
        f"TimeoutStartSec={spec.start_timeout_s}",
        "TimeoutStopSec=15",
        "Restart=always",
        "RestartSec=2",
        # per-frame JSON lines are not journal material (--predictions FILE keeps them); logs go to stderr
        "StandardOutput=null",
        "StandardError=journal",
        f"SyslogIdentifier={spec.name}",
        "NoNewPrivileges=yes",
    ]
    if not spec.user:
        if spec.run_as:
            lines.append(f"User={spec.run_as}")
        groups = [g for g in CAMERA_GROUPS if _group_exists(g)]
        if groups:
            lines.append(f"SupplementaryGroups={' '.join(groups)}")
        lines += [
            "UMask=0027",
            "ProtectSystem=strict",
            "ProtectHome=read-only",
            f"ReadWritePaths={' '.join(systemd_quote(str(p)) for p in writable)}",
            "PrivateTmp=yes",
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectKernelLogs=yes",
            "ProtectControlGroups=yes",
            "PrivateMounts=yes",
            "RemoveIPC=yes",
            "ProtectProc=invisible",
            "CapabilityBoundingSet=",  # edgecnn needs no capability (a --serve port below 1024 would)
            "SystemCallArchitectures=native",
            # IP cameras and the HTTP endpoints (INET), GStreamer/libcamera/Argus helpers (UNIX), udev (NETLINK)
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
            "ProtectHostname=yes",
            "RestrictSUIDSGID=yes",
            "RestrictRealtime=yes",
            "RestrictNamespaces=yes",
            "LockPersonality=yes",
            "# not set on purpose: PrivateDevices, DeviceAllow, ProtectClock (they hide the camera's /dev nodes)",
        ]
    lines += ["", "[Install]", f"WantedBy={'default.target' if spec.user else 'multi-user.target'}", ""]
    return "\n".join(lines)


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def parse_exec_start(text: str) -> list[str]:
    """The words of a unit's ExecStart= line (as systemd splits them; enough for units written here)."""
    import shlex

    for line in text.splitlines():
        if line.startswith("ExecStart="):
            words = shlex.split(line[len("ExecStart="):], posix=True)
            return [w.replace("%%", "%").replace("$$", "$") for w in words]
    raise EdgeCNNError("the unit has no ExecStart= line")


def health_from_unit(text: str) -> str | None:
    """HOST:PORT of the health endpoint of an installed unit written by `edgecnn service`."""
    argv = parse_exec_start(text)
    return _option_value(argv, "--health") or _option_value(argv, "--serve")
