"""`edgecnn bundle activate`: install a bundle beside the running one, verify it here, switch atomically.

A root directory holds the installed bundles and a `current` link that the service runs:

    ROOT/bundles/<name>-<sha12>/   one directory per installed bundle (sha12: of its manifest.json, which
                                   holds every artifact's sha256, so equal ids mean equal models)
    ROOT/current -> bundles/<id>   a relative symlink, replaced with rename(2): readers see old or new
    ROOT/activations.json          the activation history, oldest first; the last entry is `current`
    ROOT/.lock                     one activation at a time (flock)

Activation copies the bundle into a hidden staging directory under ROOT/bundles, checks every artifact's
sha256 against the manifest and classifies the bundle's sample images with the torch-free Classifier on
each backend here that runs one of its formats (`edgecnn.runtime.selfcheck`); only then is the directory
moved into place and `current` switched. A failure leaves ROOT exactly as it was. After a switch, all
but the current bundle and the `keep` previous ones are removed. `rollback` switches `current` back to
the previous entry of the history (the rolled-back bundle stays on disk until the next activation).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from ..bundle import MANIFEST, Bundle
from ..errors import EdgeCNNError
from ..utils import atomic_write_json, sha256_file, staged_directory

BUNDLES = "bundles"
CURRENT = "current"
HISTORY = "activations.json"
HISTORY_SCHEMA = "edgecnn.activations/1"
LOCK_WAIT_S = 60.0
# onnx: ONNX Runtime first (what `auto` prefers on CPUs), OpenVINO where only it is installed.
FORMAT_BACKENDS = {"onnx": ("onnxruntime", "openvino"), "tflite": ("litert",)}


@dataclass
class Activation:
    """What an activation or rollback did (JSON-able through `as_dict`)."""

    root: Path
    current: str
    previous: str | None
    changed: bool
    checks: list[dict] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"root": str(self.root), "current": self.current, "previous": self.previous,
                "changed": self.changed, "checks": self.checks, "removed": self.removed}


def bundle_id(bundle: Bundle) -> str:
    """`<name>-<first 12 hex of sha256(manifest.json)>`: a directory name that changes with the model."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", bundle.name).strip("-.") or "bundle"
    return f"{name[:64]}-{sha256_file(bundle.path / MANIFEST)[:12]}"


# -- the root's state -------------------------------------------------------------------------------


def _current_id(root: Path) -> str | None:
    link = root / CURRENT
    if not link.is_symlink():
        if link.exists():
            raise EdgeCNNError(f"{link} exists and is not a symlink; edgecnn bundle activate manages it as a "
                               "link to bundles/<id>: move it away first")
        return None
    target = Path(os.readlink(link))
    if target.parent != Path(BUNDLES) or not (root / target).is_dir():
        raise EdgeCNNError(f"{link} -> {target}: not a bundle installed under {root / BUNDLES}")
    return target.name


def _read_history(root: Path) -> list[str]:
    """The history (oldest first) reduced to installed bundles, ending with the current one if there is one."""
    path = root / HISTORY
    ids: list[str] = []
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            ids = [e["id"] for e in data["history"]]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
            raise EdgeCNNError(f"{path}: not an activation history ({type(e).__name__}: {e})") from None
    ids = [i for i in ids if isinstance(i, str) and (root / BUNDLES / i).is_dir()]
    current = _current_id(root)
    if current is not None:  # a switch that happened before a crash could record it: the link wins
        ids = [i for i in ids if i != current] + [current]
    return ids


def _write_history(root: Path, ids: list[str], when: dict[str, str]) -> None:
    atomic_write_json(root / HISTORY, {"schema": HISTORY_SCHEMA,
                                       "history": [{"id": i, "activated": when.get(i, "")} for i in ids]})


def _activation_times(root: Path) -> dict[str, str]:
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        return {e["id"]: e.get("activated", "") for e in json.loads((root / HISTORY).read_text())["history"]}
    return {}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _switch(root: Path, target_id: str) -> None:
    """Point ROOT/current at bundles/<target_id>: a new link under a temp name, renamed over the old one."""
    tmp = root / f".{CURRENT}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(f"{BUNDLES}/{target_id}", tmp)
    try:
        os.replace(tmp, root / CURRENT)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(root)


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    try:
        (root / BUNDLES).mkdir(parents=True, exist_ok=True)
        fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError as e:
        raise EdgeCNNError(f"{e.filename or root}: permission denied (run as the user that owns {root}, "
                           "or with sudo)") from None
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EdgeCNNError(f"{root}: another activation has held its lock for {LOCK_WAIT_S:.0f} s; "
                                       "try again when it has finished") from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    """Move a bundle directory out of the way first, so a half-deleted one never looks installed."""
    trash = path.with_name(f".{path.name}.old.{os.getpid()}")
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _prune(root: Path, ids: list[str], keep: int) -> tuple[list[str], list[str]]:
    kept = ids[-(keep + 1):]
    removed = []
    for d in sorted((root / BUNDLES).iterdir()):
        if d.is_dir() and not d.name.startswith(".") and d.name not in kept:
            _remove(d)
            removed.append(d.name)
    return kept, removed


# -- verification -----------------------------------------------------------------------------------


def verify_here(bundle: Bundle, backend: str = "auto", threads: int | None = None,
                log: Callable[[str], None] = print) -> list[dict]:
    """sha256 of every artifact, then the samples through every runnable (backend, precision); raise if wrong."""
    from ..runtime.backends import FORMAT_OF, available_backends
    from ..runtime.selfcheck import bundle_samples, check_samples

    for a in bundle.artifacts:
        if sha256_file(a.path) != a.info["sha256"]:
            raise EdgeCNNError(f"{a.info['file']}: sha256 does not match the manifest (file corrupt or replaced)")
    have = {name for name, version in available_backends().items() if version}
    if backend != "auto":
        if backend not in have:
            raise EdgeCNNError(f"backend '{backend}' is not installed here (installed: {', '.join(sorted(have)) or 'none'})")
        plan = [(backend, p) for p in sorted({a.precision for a in bundle.find(FORMAT_OF[backend])})]
    else:
        plan = []
        for fmt in sorted({a.format for a in bundle.artifacts}):
            runner = next((b for b in FORMAT_BACKENDS.get(fmt, ()) if b in have), None)
            if runner:
                plan += [(runner, p) for p in sorted({a.precision for a in bundle.find(fmt)})]
    if not plan:
        formats = ", ".join(sorted({a.format for a in bundle.artifacts}))
        raise EdgeCNNError(f"no backend installed here runs this bundle's artifacts ({formats}); "
                           "install one, e.g. pip install 'edgecnn[onnx]' or 'edgecnn[tflite]'")
    samples = bundle_samples(bundle)
    checks = []
    for name, precision in plan:
        res = check_samples(bundle, samples, name, precision, threads, tune=False)
        checks.append({"backend": res.backend, "version": res.version, "artifact": res.artifact,
                       "precision": res.precision, "correct": res.correct, "total": res.total,
                       "model_mistakes": len(res.model_mistakes)})
        log(f"verified {res.artifact} ({res.precision}) on {res.backend} {res.version}: "
            f"{res.correct}/{res.total} samples right" +
            (f", {len(res.model_mistakes)} as the source model itself" if res.model_mistakes else ""))
        if not res.ok:
            raise EdgeCNNError(f"{res.artifact} ({res.precision}) on {res.backend}: {len(res.wrong)} of "
                               f"{res.total} samples wrong on this device (first: {res.wrong[0]})")
    return checks


# -- the commands -----------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def activate(new: str | Path, root: str | Path, keep: int = 2, backend: str = "auto",
             threads: int | None = None, log: Callable[[str], None] = print) -> Activation:
    """Install `new` under `root`, verify it here, make it current; keep `keep` previous bundles."""
    if keep < 0:
        raise EdgeCNNError(f"--keep must be 0 or more, got {keep}")
    root = Path(root).absolute()
    src = Bundle.load(new)
    bid = bundle_id(src)
    with _locked(root):
        ids = _read_history(root)
        previous = _current_id(root)
        times = _activation_times(root)
        if previous == bid:
            log(f"{bid} is already the current bundle in {root}; nothing to do")
            return Activation(root, bid, ids[-2] if len(ids) > 1 else None, False)
        final = root / BUNDLES / bid
        try:
            with staged_directory(final) as stage:
                shutil.copytree(src.path, stage, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
                try:
                    checks = verify_here(Bundle.load(stage), backend, threads, log)
                except EdgeCNNError as e:
                    raise EdgeCNNError(f"{src.path}: {e}; nothing was changed in {root}") from None
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EPERM):
                raise EdgeCNNError(f"{e.filename or root}: permission denied (run as the user that owns {root}, "
                                   "or with sudo)") from None
            raise
        _switch(root, bid)
        ids = [i for i in ids if i != bid] + [bid]
        times[bid] = _now()
        kept, removed = _prune(root, ids, keep)
        _write_history(root, kept, times)
    log(f"activated {bid} in {root}" + (f" (previous: {previous})" if previous else "") +
        (f"; removed {', '.join(removed)}" if removed else ""))
    return Activation(root, bid, previous, True, checks, removed)


def rollback(root: str | Path, log: Callable[[str], None] = print) -> Activation:
    """Switch `current` back to the bundle activated before it."""
    root = Path(root).absolute()
    if not (root / CURRENT).is_symlink():
        raise EdgeCNNError(f"{root}: no current bundle to roll back from (nothing activated there)")
    with _locked(root):
        ids = _read_history(root)
        if len(ids) < 2:
            raise EdgeCNNError(f"{root}: no previous bundle to roll back to (history: {', '.join(ids) or 'empty'})")
        bad, back = ids[-1], ids[-2]
        times = _activation_times(root)
        _switch(root, back)
        _write_history(root, ids[:-1], times)
    log(f"rolled back {root}: current is {back} again ({bad} stays in {root / BUNDLES} until the next activation)")
    return Activation(root, back, bad, True)


def installed(root: str | Path) -> dict[str, Any]:
    """The root's bundles: the history (oldest first), the current one, and anything else on disk."""
    root = Path(root).absolute()
    if not (root / BUNDLES).is_dir():
        raise EdgeCNNError(f"{root}: no bundles installed here (no {BUNDLES}/ directory)")
    ids = _read_history(root)
    times = _activation_times(root)
    on_disk = sorted(d.name for d in (root / BUNDLES).iterdir() if d.is_dir() and not d.name.startswith("."))
    return {"root": str(root), "current": _current_id(root),
            "history": [{"id": i, "activated": times.get(i, "")} for i in ids],
            "other": [d for d in on_disk if d not in ids]}
