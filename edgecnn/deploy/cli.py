"""`edgecnn service ...` and `edgecnn bundle ...` (device side: no torch, handlers import lazily)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from functools import partial
from pathlib import Path

DEPLOY_DOC = "docs/deploy.md"


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("service", help="run `edgecnn run` as a systemd service: unit, install, uninstall, status",
                       description=f"A systemd unit (Type=notify, watchdog, restart, hardening) for `edgecnn run` "
                                   f"on a bundle root's `current` link ({DEPLOY_DOC}).")
    ss = s.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    unit = ss.add_parser("unit", help="print the unit file (or write it with --out)")
    _unit_args(unit)
    unit.add_argument("--out", metavar="FILE", default=None, help="write the unit here (atomically) instead of printing")
    unit.set_defaults(func=cmd_unit)
    inst = ss.add_parser("install", help="write the unit, daemon-reload, enable --now (undone if systemctl fails)")
    _unit_args(inst)
    inst.add_argument("--no-enable", action="store_true",
                      help="only write the unit file (no systemctl; e.g. into an image being built)")
    inst.add_argument("--unit-dir", metavar="DIR", type=Path, default=None,
                      help="install into DIR instead of /etc/systemd/system (~/.config/systemd/user with --user)")
    inst.set_defaults(func=cmd_install)
    un = ss.add_parser("uninstall", help="disable --now, remove the unit file, daemon-reload")
    _name_args(un)
    un.set_defaults(func=cmd_uninstall)
    st = ss.add_parser("status", help="the unit's state and its health endpoint's answer (exit 0 when healthy)")
    _name_args(st)
    st.add_argument("--health", metavar="HOST:PORT", default=None,
                    help="ask this health endpoint (default: the one in the installed unit's command)")
    st.set_defaults(func=cmd_status)

    b = sub.add_parser("bundle", help="install bundles on this device: activate (verified, atomic), roll back, list",
                       description=f"Bundles under a root directory with a `current` link that the service runs "
                                   f"({DEPLOY_DOC}).")
    bs = b.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)
    act = bs.add_parser("activate", help="install NEW beside the current bundle, verify it here, switch `current`",
                        description="Copy NEW under ROOT/bundles/<name>-<sha12>, check every artifact's sha256 and "
                                    "classify the bundle's sample images on each backend here, then switch "
                                    "ROOT/current to it atomically and keep the --keep previous bundles. A failure "
                                    "changes nothing. --rollback switches back to the previous bundle.")
    act.add_argument("bundle", nargs="?", default=None, help="the bundle directory to activate")
    act.add_argument("--root", required=True, type=Path, help="the directory holding bundles/ and `current`")
    act.add_argument("--keep", type=int, default=2, help="previous bundles kept for rollback (default 2)")
    act.add_argument("--rollback", action="store_true", help="switch `current` back to the previous bundle")
    act.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "litert", "openvino"),
                     help="verify on this backend only (default: every backend here that runs one of its formats)")
    act.add_argument("--threads", type=int, default=None, help="CPU threads for the verification")
    act.add_argument("--json", action="store_true", help="print one JSON object (what changed) on stdout")
    act.set_defaults(func=cmd_activate)
    ls = bs.add_parser("list", help="the bundles installed under a root, the current one first")
    ls.add_argument("--root", required=True, type=Path, help="the directory holding bundles/ and `current`")
    ls.add_argument("--json", action="store_true", help="print one JSON object")
    ls.set_defaults(func=cmd_list)


def _name_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default="edgecnn", help="unit name (NAME.service; default edgecnn)")
    p.add_argument("--user", action="store_true", help="a per-user unit (systemctl --user), no root needed")
    p.add_argument("--unit-dir", metavar="DIR", type=Path, default=None,
                   help="the unit's directory instead of /etc/systemd/system (~/.config/systemd/user with --user); "
                        "no systemctl then")


def _unit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", required=True, action="append",
                   help="the frame source the service classifies (camera, URL, ...); repeat it for several")
    p.add_argument("--root", type=Path, default=None,
                   help="bundle root (see `edgecnn bundle activate`); the service runs ROOT/current "
                        "(default /var/lib/edgecnn, or ~/.local/share/edgecnn with --user)")
    p.add_argument("--bundle", type=Path, default=None, help="run this bundle directory instead of ROOT/current")
    p.add_argument("--name", default="edgecnn", help="unit name (NAME.service; default edgecnn)")
    p.add_argument("--health", metavar="HOST:PORT", default="127.0.0.1:8081",
                   help="the run's health endpoint, GET /healthz (default 127.0.0.1:8081)")
    p.add_argument("--no-health", action="store_true", help="no --health endpoint (e.g. with --serve after --)")
    p.add_argument("--predictions", metavar="FILE", type=Path, default=None,
                   help="write every result as JSON lines here (rotated by edgecnn run)")
    p.add_argument("--user", action="store_true", help="a per-user unit (systemctl --user), no root needed")
    p.add_argument("--run-as", metavar="USER", default=None,
                   help="system unit: run as this user (default: the user who ran sudo, else your user; "
                        "never root unless you say --run-as root)")
    p.add_argument("--python", metavar="PATH", default=sys.executable,
                   help="the Python that has edgecnn installed (default: this one)")
    p.add_argument("--watchdog-sec", type=int, default=30, help="WatchdogSec= (default 30)")
    p.add_argument("--start-timeout", type=int, default=300,
                   help="TimeoutStartSec=: seconds to the first result, camera start included (default 300)")
    p.add_argument("run_args", nargs=argparse.REMAINDER,
                   help="after --: more `edgecnn run` options (e.g. -- --threads 2 --serve 0.0.0.0:8080)")


def _spec(args: argparse.Namespace):
    from ..errors import EdgeCNNError
    from .unit import SYSTEM_ROOT, UnitSpec, user_root

    run_args = list(args.run_args)
    if run_args[:1] == ["--"]:
        run_args = run_args[1:]
    run_as = args.run_as
    if not args.user and run_as is None:
        run_as = os.environ.get("SUDO_USER") or (None if os.geteuid() == 0 else _me())
        if run_as is None:
            raise EdgeCNNError("a system unit would run edgecnn as root: say --run-as USER (a user in the "
                               "video group), or --run-as root if you mean it")
    if args.user and args.run_as:
        raise EdgeCNNError("--run-as is for system units; a --user unit runs as you")
    return UnitSpec(sources=args.source, root=(args.root or (user_root() if args.user else SYSTEM_ROOT)).absolute(),
                    bundle=args.bundle.absolute() if args.bundle else None, name=args.name,
                    health=None if args.no_health else args.health,
                    predictions=args.predictions.absolute() if args.predictions else None, run_args=run_args,
                    user=args.user, run_as=None if args.user or run_as == "root" else run_as,
                    python=args.python, watchdog_s=args.watchdog_sec, start_timeout_s=args.start_timeout)


def _me() -> str:
    import getpass

    return getpass.getuser()


def cmd_unit(args: argparse.Namespace) -> int:
    from ..utils import atomic_write_text
    from .unit import render_unit

    text = render_unit(_spec(args))
    if args.out:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    from .service import install

    install(_spec(args), args.unit_dir, enable=not args.no_enable and args.unit_dir is None)
    return 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    from .service import uninstall

    uninstall(args.name, args.user, args.unit_dir)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from .service import status

    return status(args.name, args.user, args.health, args.unit_dir)


def cmd_activate(args: argparse.Namespace) -> int:
    from ..errors import EdgeCNNError
    from .activate import activate, rollback

    log = partial(print, file=sys.stderr) if args.json else print
    if args.rollback:
        if args.bundle:
            raise EdgeCNNError("give either a bundle to activate or --rollback, not both")
        result = rollback(args.root, log=log)
    else:
        if not args.bundle:
            raise EdgeCNNError("which bundle? edgecnn bundle activate BUNDLE --root DIR (or --rollback)")
        result = activate(args.bundle, args.root, keep=args.keep, backend=args.backend, threads=args.threads,
                          log=log)
    if args.json:
        print(json.dumps(result.as_dict()))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .activate import installed

    info = installed(args.root)
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{info['root']}:")
    for entry in reversed(info["history"]):
        mark = "*" if entry["id"] == info["current"] else " "
        print(f" {mark} {entry['id']}  activated {entry['activated'] or '?'}")
    for other in info["other"]:
        print(f"   {other}  (rolled back or not activated)")
    return 0
