"""Leftovers of killed runs: temp files and staging directories named after the process that made them.

Every temp name edgecnn writes next to its output carries the writer's pid:

    .NAME.staging.PID.XXXX/   staged_directory (bundles, compressed checkpoints)
    .NAME.old.PID/            the replaced directory, while the new one moves into place
    .NAME.PID.XXXX.tmp        atomic_write_bytes (checkpoints, manifests, reports)
    .STEM.partial-PID.EXT     a video being saved by `edgecnn run --save`

A leftover whose process is gone (a run killed with SIGKILL or by a power cut) is removed the next
time something is written to the same place, with one line on stderr; one whose process still runs
(another run writing there) is left alone, and one without a pid (from an older edgecnn) is only
reported. Device side: no torch.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Callable


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _say(line: str) -> None:
    print(f"edgecnn: {line}", file=sys.stderr, flush=True)


def clean_stale(folder: str | os.PathLike, name_re: str, what: str,
                report: Callable[[str], None] = _say) -> list[Path]:
    """Remove entries of `folder` whose names fully match `name_re` and whose process is gone.

    `name_re` must capture the pid in a group named `pid` (optional in the pattern, for names from
    older versions, which are only reported). Returns the paths removed. Never raises for a
    folder that cannot be listed or an entry that cannot be removed (it is reported instead).
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    pattern = re.compile(name_re)
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if not m:
            continue
        path = Path(entry.path)
        pid = m.groupdict().get("pid")
        if pid is None:
            report(f"{path}: {what} left by an older edgecnn run; remove it if no edgecnn writes there")
            continue
        if int(pid) == os.getpid() or pid_alive(int(pid)):
            continue  # ours, or another run's in progress
        try:
            if entry.is_dir(follow_symlinks=False):
                import shutil  # rare: not paid by every start that imports this module

                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as e:
            report(f"{path}: {what} left by process {pid} (gone), and it cannot be removed: {e.strerror or e}")
            continue
        report(f"removed {path}: {what} left by process {pid}, which is gone (a killed run)")
        removed.append(path)
    return removed


def clean_stale_staging(final: str | os.PathLike) -> list[Path]:
    """Staging and replaced directories of `staged_directory(final)` left by killed runs."""
    final = Path(final)
    name = re.escape(final.name)
    return (clean_stale(final.parent, rf"\.{name}\.staging\.(?:(?P<pid>\d+)\.)?[A-Za-z0-9_]+", "a half-written directory")
            + clean_stale(final.parent, rf"\.{name}\.old\.(?P<pid>\d+)", "a replaced directory"))


def clean_stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Temp files of `atomic_write_bytes(path)` left by killed runs (`.NAME.PID.XXXX.tmp`)."""
    path = Path(path)
    name = re.escape(path.name)
    return clean_stale(path.parent, rf"\.{name}\.(?:(?P<pid>\d+)\.)?[A-Za-z0-9_]{{6,}}\.tmp", "a half-written file")
