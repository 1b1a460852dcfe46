"""Where trials are timed: this machine (in-process, the profiler's method) or a board over SSH.

Both give, per (artifact, backend, threads), the `results` entry of an edgecnn.profile/1 report, so a
trial measured on a Raspberry Pi and one measured here are the same record. Backends are whatever the
target has installed (`available_backends()` there), so a backend added to edgecnn shows up here too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

from ..errors import EdgeCNNError


def default_threads(cpus: int | None) -> list[int]:
    """1, 2, 4, ... up to the core count, and the core count itself."""
    n = max(1, int(cpus or 1))
    out, t = [], 1
    while t <= n:
        out.append(t)
        t *= 2
    return sorted({*out, n})


class Target:
    """Base: name (key of the trials), installed backends, core count, and `measure`."""

    name = "this"
    label = "this machine"
    backends: dict[str, str]
    cpus: int

    def measure(self, bundle_dir: Path, wanted: Sequence[tuple[str, str, int | None]], *, runs: int, warmup: int,
                log: Callable[[str], None]) -> tuple[list[dict], list[dict]]:  # pragma: no cover - abstract
        """Time (artifact file, backend, threads) configurations: (profile results, failures)."""
        raise NotImplementedError


def _usable(backends: dict[str, str | None]) -> dict[str, str]:
    # TensorRT engines are built on the device for one GPU (edgecnn build-engine); the search times CPU backends.
    return {k: v for k, v in backends.items() if v and k != "tensorrt"}


class LocalTarget(Target):
    def __init__(self) -> None:
        from ..runtime.backends import available_backends

        self.backends = _usable(available_backends())
        self.cpus = os.cpu_count() or 1

    def measure(self, bundle_dir, wanted, *, runs, warmup, log):
        from ..bundle import Bundle
        from ..profile.profiler import bundle_inputs, profile_configuration

        bundle = Bundle.load(bundle_dir)
        by_file = {a.info["file"]: a for a in bundle.artifacts}
        x, _ = bundle_inputs(bundle, 1)
        results, failures = [], []
        for file, backend, threads in wanted:
            try:
                results.append(profile_configuration(by_file[file], backend, threads, x, runs=runs, warmup=warmup,
                                                     progress=False))
            except EdgeCNNError as e:
                failures.append({"artifact": file, "backend": backend, "threads": threads, "reason": str(e)})
        return results, failures


class RemoteTarget(Target):
    """A board over SSH (edgecnn.remote): one `edgecnn profile` per backend, every thread count in one go."""

    def __init__(self, url: str, log: Callable[[str], None] = print) -> None:
        from ..remote import SSHTarget, probe_board

        self.ssh = SSHTarget.parse(url)
        self.name, self.label = url, self.ssh.label
        info = probe_board(self.ssh, log=log)
        self.backends = _usable(info.get("backends") or {})
        self.cpus = int(info.get("cpus") or 1)
        self.info = info

    def measure(self, bundle_dir, wanted, *, runs, warmup, log):
        from ..remote import profile_remote

        results, failures = [], []
        for backend in dict.fromkeys(b for _, b, _ in wanted):
            mine = [(f, t) for f, b, t in wanted if b == backend]
            threads = sorted({t for _, t in mine if t is not None})
            argv = ["profile", "{bundle}", "--report", "{report}", "--no-progress", "--backend", backend,
                    "--runs", str(runs), "--warmup", str(warmup)]
            if threads:
                argv += ["--threads", ",".join(map(str, threads))]
            try:
                report = profile_remote(self.ssh, bundle_dir, argv, log=log)
            except EdgeCNNError as e:
                failures += [{"artifact": f, "backend": backend, "threads": t, "reason": str(e)} for f, t in mine]
                continue
            got = {(r["artifact"], r["threads"]): r for r in report["results"]}
            for f, t in mine:
                if (f, t) in got:
                    results.append(got[(f, t)])
                else:
                    why = next((s["reason"] for s in report["skipped"] if s.get("artifact") == f), "not profiled")
                    failures.append({"artifact": f, "backend": backend, "threads": t, "reason": why})
        return results, failures


def make_target(spec: str | None, log: Callable[[str], None] = print) -> Target:
    if spec in (None, "", "this"):
        return LocalTarget()
    if spec.startswith("ssh://"):
        return RemoteTarget(spec, log)
    raise EdgeCNNError(f"--target {spec!r}: use 'this' (this machine) or ssh://user@host[:port]")
