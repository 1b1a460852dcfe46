"""`edgecnn service install|uninstall|status`: the unit of `unit.py` under systemd. No torch here.

install writes the unit atomically, then `systemctl daemon-reload` and `enable --now` (restart when it
was already running); when systemctl fails the previous unit file (or none) is put back, so a failed
install leaves nothing half-done. status asks the unit's health endpoint (GET /healthz) and, where
systemd runs, systemctl for the unit's state.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from ..errors import EdgeCNNError
from ..utils import atomic_write_text, first_line
from .unit import UnitSpec, health_from_unit, render_unit, unit_dir

SYSTEMCTL_TIMEOUT_S = 90.0


def systemd_running(user: bool) -> bool:
    """sd_booted(): systemd is PID 1 here (and, for --user, this user's manager has a bus)."""
    if not Path("/run/systemd/system").is_dir():
        return False
    if not user:
        return True
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return bool(runtime) and Path(runtime, "systemd").is_dir()


def systemctl(user: bool, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    exe = shutil.which("systemctl")
    if exe is None:
        raise EdgeCNNError("systemctl not found: this machine does not run systemd")
    cmd = [exe, *(["--user"] if user else []), *args]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise EdgeCNNError(f"{' '.join(cmd[1:])} did not finish in {SYSTEMCTL_TIMEOUT_S:.0f} s") from None
    if check and res.returncode != 0:
        why = first_line(Exception(res.stderr or res.stdout or f"exit {res.returncode}"))
        raise EdgeCNNError(f"systemctl {' '.join(cmd[1:])} failed: {why}")
    return res


def _no_systemd(user: bool) -> EdgeCNNError:
    where = "this user's systemd manager is not reachable (XDG_RUNTIME_DIR/systemd)" if user else \
        "systemd is not running on this machine (no /run/systemd/system)"
    return EdgeCNNError(f"{where}; nothing was installed. Write the unit only with --no-enable (or "
                        "`edgecnn service unit --out FILE`) and enable it where systemd runs")


def install(spec: UnitSpec, directory: Path | None = None, enable: bool = True,
            log: Callable[[str], None] = print) -> Path:
    """Write the unit (atomically); with `enable`, daemon-reload + enable --now, undone if they fail."""
    text = render_unit(spec)
    if enable and not systemd_running(spec.user):
        raise _no_systemd(spec.user)
    if enable and not spec.run_bundle.exists():
        raise EdgeCNNError(f"{spec.run_bundle} does not exist: activate a bundle first (edgecnn bundle activate "
                           f"BUNDLE --root {spec.root}); nothing was installed")
    path = (directory or unit_dir(spec.user)) / f"{spec.name}.service"
    old = path.read_text(encoding="utf-8") if path.is_file() else None
    try:
        atomic_write_text(path, text)
    except PermissionError:
        raise EdgeCNNError(f"{path}: permission denied (a system unit needs root: sudo, or use --user)") from None
    log(f"wrote {path}")
    if not enable:
        return path
    try:
        systemctl(spec.user, "daemon-reload")
        was_active = systemctl(spec.user, "is-active", "--quiet", spec.name, check=False).returncode == 0
        systemctl(spec.user, "enable", "--now", spec.name)
        if was_active:  # enable --now does not restart a running unit: the new ExecStart needs it
            systemctl(spec.user, "restart", spec.name)
    except EdgeCNNError:
        if old is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write_text(path, old)
        with contextlib.suppress(EdgeCNNError):
            systemctl(spec.user, "daemon-reload", check=False)
        raise
    log(f"enabled and started {spec.name}.service" + (" (user)" if spec.user else ""))
    return path


def uninstall(name: str, user: bool, directory: Path | None = None, log: Callable[[str], None] = print) -> Path:
    """disable --now (where systemd runs), remove the unit file, daemon-reload."""
    path = (directory or unit_dir(user)) / f"{name}.service"
    if not path.is_file():
        raise EdgeCNNError(f"no unit {path} to uninstall")
    managed = directory is None and systemd_running(user)
    if managed:
        systemctl(user, "disable", "--now", name)
    try:
        path.unlink()
    except PermissionError:
        raise EdgeCNNError(f"{path}: permission denied (a system unit needs root: sudo, or use --user)") from None
    if managed:
        systemctl(user, "daemon-reload")
    log(f"removed {path}" + (f"; {name}.service stopped and disabled" if managed else ""))
    return path


def query_health(address: str, timeout_s: float = 3.0) -> tuple[int | None, str]:
    """GET http://ADDRESS/healthz -> (HTTP status or None when nothing answers, body or reason)."""
    url = f"http://{address}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return r.status, r.read(4096).decode("utf-8", "replace").strip()
    except urllib.error.HTTPError as e:  # 503 (stale) and friends still carry the JSON body
        return e.code, e.read(4096).decode("utf-8", "replace").strip()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        return None, str(reason)


def status(name: str, user: bool, health: str | None = None, directory: Path | None = None,
           log: Callable[[str], None] = print) -> int:
    """Print the unit's state and its health endpoint's answer; 0 when /healthz says 200."""
    path = (directory or unit_dir(user)) / f"{name}.service"
    if health is None:
        if not path.is_file():
            raise EdgeCNNError(f"no unit {path}: give --health HOST:PORT, or install the service first")
        health = health_from_unit(path.read_text(encoding="utf-8"))
        if health is None:
            raise EdgeCNNError(f"{path}: its edgecnn run has no --health or --serve address to ask")
    if directory is None and systemd_running(user):
        state = systemctl(user, "is-active", name, check=False).stdout.strip() or "unknown"
        log(f"{name}.service: {state}")
    code, body = query_health(health)
    if code is None:
        log(f"health http://{health}/healthz: no answer ({body})")
        return 1
    with contextlib.suppress(ValueError):
        body = json.dumps(json.loads(body), sort_keys=True)
    log(f"health http://{health}/healthz: {code} {body}")
    return 0 if code == 200 else 1
