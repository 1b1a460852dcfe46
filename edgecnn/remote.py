"""Run a device-side edgecnn command on a board over SSH and bring its JSON report back (host side).

    from edgecnn.remote import run_device_command
    report = run_device_command("ssh://pi@pi5.local", ["profile", "{bundle}", "--threads", "1,4",
                                                        "--report", "{report}"], bundle="export/lenet5")

What happens, on one SSH connection (asyncssh, the user's ~/.ssh/config, keys and known_hosts):
  1. connect with public-key authentication only (password and keyboard-interactive auth are switched
     off: edgecnn never asks for, stores or sends a password); the host key is checked against
     ~/.ssh/known_hosts (or the config's UserKnownHostsFile) as `ssh` does: an unknown or changed key
     stops the run with one line saying how to check and accept it;
  2. probe: find a Python on the board that imports edgecnn (the `?python=` of the URL, else the
     interpreter in the shebang of the `edgecnn` command on the PATH, else python3) and ask it which
     inference backends it has; none -> one line with the install command;
  3. copy the bundle with SFTP into a fresh `mktemp -d` directory, run `python -m edgecnn ARGS` there
     ({bundle} and {report} in ARGS become the remote paths), stream its output, read the JSON report
     back over SFTP, and remove the directory.

Targets are `ssh://[user@]host[:port][?python=/path/to/python]`; a host alias from ~/.ssh/config works
(`ssh://pi5`). This module is host-side: device modules never import it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import EdgeCNNError

CONNECT_TIMEOUT_S = 15.0
INSTALL_LINE = "pip install 'edgecnn[tflite]' (Arm boards) or pip install 'edgecnn[onnx]'"

# Runs on the board with the candidate Python; prints one JSON line (no edgecnn -> the import error).
PROBE = r"""
import json, os, platform, sys
info = {"python": sys.executable, "python_version": platform.python_version(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "hostname": platform.node()}
try:
    import edgecnn
    from edgecnn.runtime.backends import available_backends
except Exception as e:
    info.update(edgecnn=None, error=f"{type(e).__name__}: {e}")
else:
    info.update(edgecnn=edgecnn.__version__, backends=available_backends())
print("EDGECNN-PROBE " + json.dumps(info))
"""


@dataclass
class SSHTarget:
    """Where to run: `ssh://[user@]host[:port][?python=PATH]` parsed; None = from ~/.ssh/config."""

    url: str
    host: str
    port: int | None = None
    username: str | None = None
    python: str | None = None
    # Python-API overrides (tests, scripts); the CLI leaves them to the user's ~/.ssh.
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str) -> SSHTarget:
        parts = urlsplit(url)
        if parts.scheme != "ssh" or not parts.hostname:
            raise EdgeCNNError(f"--on {url!r}: expected ssh://[user@]host[:port] (or 'this' for this machine)")
        try:
            port = parts.port
        except ValueError:
            raise EdgeCNNError(f"--on {url!r}: the port is not a number between 1 and 65535") from None
        if parts.password is not None:
            raise EdgeCNNError(f"--on {url!r}: passwords are not accepted in the URL; edgecnn uses SSH keys only")
        if parts.path not in ("", "/"):
            raise EdgeCNNError(f"--on {url!r}: unexpected path {parts.path!r}; give the board's Python as ?python=PATH")
        query = parse_qs(parts.query)
        unknown = sorted(set(query) - {"python"})
        if unknown:
            raise EdgeCNNError(f"--on {url!r}: unknown option '{unknown[0]}' (only ?python=PATH is understood)")
        python = query.get("python", [None])[-1]
        return cls(url=url, host=parts.hostname, port=port,
                   username=unquote(parts.username) if parts.username else None, python=python)

    @property
    def label(self) -> str:
        """user@host:port as given (for messages and file names)."""
        who = f"{self.username}@" if self.username else ""
        return f"{who}{self.host}" + (f":{self.port}" if self.port else "")

    def ssh_command(self) -> str:
        """The plain ssh command that reaches the same board (what to run to accept a host key)."""
        port = f"-p {self.port} " if self.port else ""
        who = f"{self.username}@" if self.username else ""
        return f"ssh {port}{who}{self.host}"


def _asyncssh():
    try:
        import asyncssh
    except ImportError:
        raise EdgeCNNError("remote runs need asyncssh on this machine: pip install 'edgecnn[remote]'") from None
    return asyncssh


def _connect_error(target: SSHTarget, e: BaseException) -> EdgeCNNError:
    """One line for each way a connection fails, with what to do."""
    asyncssh = _asyncssh()
    where = target.label
    if isinstance(e, asyncssh.HostKeyNotVerifiable):
        return EdgeCNNError(
            f"{where}: host key not verified ({e.reason}): the board is not in your known_hosts or its key "
            f"changed; check the key and accept it with `{target.ssh_command()}`, then retry")
    if isinstance(e, asyncssh.PermissionDenied):
        return EdgeCNNError(
            f"{where}: SSH key authentication failed (edgecnn never uses passwords); install your public key "
            f"on the board with `ssh-copy-id {target.ssh_command()[4:]}` or name it in ~/.ssh/config (IdentityFile)")
    if isinstance(e, asyncio.TimeoutError):
        return EdgeCNNError(f"{where}: no SSH answer within {CONNECT_TIMEOUT_S:.0f} s (board off, wrong address "
                            "or a firewall?)")
    if isinstance(e, asyncssh.Error):
        return EdgeCNNError(f"{where}: SSH connection failed: {e.reason}")
    errno = getattr(e, "errno", None)
    reason = (os.strerror(errno) if errno else None) or str(e) or type(e).__name__
    return EdgeCNNError(f"{where}: cannot reach the board over SSH ({reason}); is it on, is sshd running and "
                        "is the host/port right?")


class RemoteBoard:
    """One SSH connection to a board: probe, copy a bundle, run an edgecnn command, fetch a file."""

    def __init__(self, target: SSHTarget, log: Callable[[str], None] = print):
        self.target, self.log = target, log
        self.conn: Any = None
        self.info: dict[str, Any] = {}

    async def __aenter__(self) -> RemoteBoard:
        asyncssh = _asyncssh()
        t = self.target
        kwargs: dict[str, Any] = {"password_auth": False, "kbdint_auth": False,
                                  "connect_timeout": CONNECT_TIMEOUT_S, **t.options}
        if t.port is not None:
            kwargs["port"] = t.port
        if t.username is not None:
            kwargs["username"] = t.username
        try:
            self.conn = await asyncio.wait_for(asyncssh.connect(t.host, **kwargs), CONNECT_TIMEOUT_S + 5)
        except (OSError, asyncssh.Error, asyncio.TimeoutError) as e:
            raise _connect_error(t, e) from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.conn is not None:
            self.conn.close()
            await self.conn.wait_closed()

    async def shell(self, command: str, timeout: float = 60.0) -> tuple[int, str, str]:
        res = await asyncio.wait_for(self.conn.run(command, check=False), timeout)
        return int(res.exit_status if res.exit_status is not None else 255), str(res.stdout), str(res.stderr)

    async def _probe_with(self, python: str) -> dict[str, Any] | None:
        rc, out, err = await self.shell(f"{python} -c {shlex.quote(PROBE)}")
        for line in out.splitlines():
            if line.startswith("EDGECNN-PROBE "):
                return json.loads(line[len("EDGECNN-PROBE "):])
        return {"python": python, "edgecnn": None, "error": (err.strip().splitlines() or [f"exit {rc}"])[-1]}

    async def probe(self) -> dict[str, Any]:
        """The board's Python with edgecnn and its backends; one clear error when either is missing."""
        t = self.target
        candidates = [t.python] if t.python else []
        if not t.python:
            _, out, _ = await self.shell('head -n 1 "$(command -v edgecnn)" 2>/dev/null')
            if out.startswith("#!") and "python" in out:
                candidates.append(shlex.quote(out[2:].strip()))
            candidates.append("python3")
        tried = []
        for python in dict.fromkeys(candidates):
            info = await self._probe_with(python)
            if info and info.get("edgecnn"):
                self.info = info
                break
            tried.append(f"{python}: {info.get('error') if info else 'no answer'}")
        else:
            raise EdgeCNNError(
                f"{t.label}: edgecnn is not installed on the board ({'; '.join(tried)}); install the device side "
                f"there: {INSTALL_LINE}, or give its Python: ssh://{t.label}?python=/path/to/venv/bin/python")
        backends = {k: v for k, v in (self.info.get("backends") or {}).items() if v}
        if not backends:
            raise EdgeCNNError(
                f"{t.label}: edgecnn {self.info['edgecnn']} is installed ({self.info['python']}) but no inference "
                f"backend is; install one there: {INSTALL_LINE}")
        return self.info

    async def run_edgecnn(self, args: Sequence[str], bundle: Path | None, fetch: str | None,
                          timeout: float) -> tuple[dict | None, dict]:
        """Copy `bundle`, run `python -m edgecnn ARGS` in a temp dir, return (parsed `fetch` file, run info)."""
        rc, out, err = await self.shell('mktemp -d "${TMPDIR:-/tmp}/edgecnn-remote.XXXXXX"')
        workdir = out.strip()
        if rc != 0 or not workdir.startswith("/"):
            raise EdgeCNNError(f"{self.target.label}: cannot make a temporary directory ({err.strip() or out})")
        try:
            subs = {"workdir": workdir}
            async with self.conn.start_sftp_client() as sftp:
                if bundle is not None:
                    subs["bundle"] = f"{workdir}/bundle"
                    await sftp.put(str(bundle), subs["bundle"], recurse=True)
                subs["report"] = f"{workdir}/{fetch or 'report.json'}"
                argv = [a.format(**subs) for a in args]
                command = f"cd {shlex.quote(workdir)} && {self.info['python']} -m edgecnn " + \
                          " ".join(shlex.quote(a) for a in argv)
                rc, tail = await self._stream(command, timeout)
                if rc != 0:
                    raise EdgeCNNError(f"{self.target.label}: `edgecnn {' '.join(argv[:1])}` failed on the board "
                                       f"(exit {rc}): {tail or 'no output'}")
                data = None
                if fetch:
                    async with sftp.open(subs["report"], "rb") as f:
                        raw = await f.read()
                    try:
                        data = json.loads(raw.decode("utf-8"))
                    except (UnicodeDecodeError, json.JSONDecodeError) as e:
                        raise EdgeCNNError(f"{self.target.label}: the board's report is not JSON ({e})") from None
        finally:
            try:  # best effort: a dropped connection must not hide the error that ended the run
                await self.shell(f"rm -rf {shlex.quote(workdir)}")
            except (OSError, asyncio.TimeoutError, _asyncssh().Error):
                pass
        return data, {"workdir": workdir, "argv": argv}

    async def _stream(self, command: str, timeout: float) -> tuple[int, str]:
        """Run with the output shown line by line; returns (exit status, last error line)."""
        last = ""
        proc = await self.conn.create_process(command, stderr=_asyncssh().STDOUT)
        try:
            async def pump() -> None:
                nonlocal last
                async for line in proc.stdout:
                    line = line.rstrip("\r\n")
                    if line.strip():
                        last = line.strip()
                        self.log(f"[{self.target.label}] {line}")
            await asyncio.wait_for(pump(), timeout)
            await proc.wait()
        except asyncio.TimeoutError:
            raise EdgeCNNError(f"{self.target.label}: the board's command ran longer than {timeout:.0f} s") from None
        finally:
            if proc.exit_status is None:
                proc.close()
        return int(proc.exit_status if proc.exit_status is not None else 255), last


def parse_target(target: str | SSHTarget) -> SSHTarget:
    return target if isinstance(target, SSHTarget) else SSHTarget.parse(target)


def probe_board(target: str | SSHTarget, log: Callable[[str], None] = print) -> dict[str, Any]:
    """What the board has: {python, edgecnn, backends, cpus, machine, hostname} (errors as one line)."""
    t = parse_target(target)

    async def go() -> dict[str, Any]:
        async with RemoteBoard(t, log) as board:
            return await board.probe()

    return asyncio.run(go())


def run_device_command(target: str | SSHTarget, args: Sequence[str], bundle: str | Path | None = None, *,
                       fetch: str | None = "report.json", timeout: float = 3600.0,
                       log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run `edgecnn ARGS` on the board with `bundle` copied there; return its JSON file `fetch`.

    In ARGS, {bundle}, {report} (= WORKDIR/fetch) and {workdir} are replaced by the remote paths.
    The result is {"report": the parsed JSON, "board": the probe's record, "target": url}.
    """
    t = parse_target(target)
    if bundle is not None and not Path(bundle, "manifest.json").is_file():
        raise EdgeCNNError(f"{bundle}: not a bundle (no manifest.json)")

    async def go() -> dict[str, Any]:
        async with RemoteBoard(t, log) as board:
            info = await board.probe()
            log(f"{t.label}: edgecnn {info['edgecnn']} ({info['python']}), backends "
                + ", ".join(f"{k} {v}" for k, v in info["backends"].items() if v))
            data, run = await board.run_edgecnn(args, Path(bundle) if bundle is not None else None, fetch, timeout)
            return {"report": data, "board": info, "target": t.url, "run": run}

    return asyncio.run(go())


def remote_record(result: dict[str, Any]) -> dict[str, Any]:
    """The `remote` block added to a report fetched from a board."""
    board = result["board"]
    return {"target": result["target"], "board": parse_target(result["target"]).label, "hostname": board.get("hostname"), "python": board.get("python"),
            "edgecnn": board.get("edgecnn")}


# ---------------------------------------------------------------- `edgecnn profile BUNDLE --on TARGET`


def profile_device_args(args: Any) -> list[str]:
    """The device-side `edgecnn profile` arguments equivalent to a local run's options."""
    argv = ["profile", "{bundle}", "--report", "{report}", "--no-progress", "--warmup", str(args.warmup),
            "--batch", str(args.batch)]
    for flag, value in (("--backend", args.backend), ("--precision", args.precision), ("--threads", args.threads),
                        ("--runs", args.runs), ("--duration", args.duration), ("--device", args.device)):
        if value is not None:
            argv += [flag, str(value)]
    if args.per_op:
        argv.append("--per-op")
    return argv


def profile_remote(target: str | SSHTarget, bundle: str | Path, device_args: Sequence[str],
                   log: Callable[[str], None] = print) -> dict:
    """A profile report (edgecnn.profile/1, validated) measured on the board, with a `remote` block."""
    from .profile.report import validate_report

    t = parse_target(target)
    result = run_device_command(t, device_args, bundle, log=log)
    report = validate_report(result["report"], f"report from {t.label}")
    report["remote"] = remote_record(result)
    return report


def report_path_for(base: str | Path, label: str) -> Path:
    """REPORT.json + a target label -> REPORT.<label>.json (one file per board when several are profiled)."""
    import re

    base = Path(base)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "board"
    return base.with_name(f"{base.stem}.{safe}{base.suffix or '.json'}")


def profile_on_targets(args: Any) -> int:
    """`edgecnn profile BUNDLE --on T [--on T2 ...]`: profile on each board in turn, merge the reports."""
    from .profile.report import (
        COMPARE_HEADER,
        compare_markdown,
        compare_rows,
        console_summary,
        text_table,
        write_markdown,
        write_report,
    )
    from .utils import atomic_write_text

    targets = list(dict.fromkeys(args.on))
    labels, reports = [], []
    for url in targets:
        if url == "this":
            from .profile.profiler import DEFAULT_RUNS, profile_bundle

            rep = profile_bundle(args.bundle, backend=args.backend or "auto", precision=args.precision or "all",
                                 threads=args.threads, runs=args.runs if args.runs is not None else DEFAULT_RUNS,
                                 duration=args.duration, warmup=args.warmup, batch=args.batch, per_op=args.per_op,
                                 device_profile=args.device, progress=args.progress)
            labels.append("this")
        else:
            t = SSHTarget.parse(url)
            rep = profile_remote(t, args.bundle, profile_device_args(args))
            labels.append(t.label)
        reports.append(rep)
        print()
        print(console_summary(rep))
    if len(reports) == 1:
        if args.report:
            print(f"report: {write_report(args.report, reports[0])}")
        if args.markdown:
            print(f"markdown: {write_markdown(args.markdown, reports[0])}")
    else:
        print()
        print(text_table(COMPARE_HEADER, compare_rows(reports)))
        sources = labels
        if args.report:
            sources = [str(write_report(report_path_for(args.report, lab), rep)) for lab, rep in zip(labels, reports)]
            for s in sources:
                print(f"report: {s}")
        if args.markdown:
            atomic_write_text(args.markdown, compare_markdown(reports, sources))
            print(f"markdown: {args.markdown}")
    if args.plots:
        from .profile.plots import profile_plots

        for lab, rep in zip(labels, reports):
            sub = Path(args.plots) if len(reports) == 1 else Path(args.plots) / report_path_for("x", lab).stem[2:]
            for path in profile_plots(rep, sub):
                print(f"plot: {path}")
    return 0
