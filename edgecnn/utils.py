"""Small helpers shared by host and device code (no torch here)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

from .stale import clean_stale_staging, clean_stale_temp_files


def cache_dir() -> Path:
    """$EDGECNN_CACHE, else $XDG_CACHE_HOME/edgecnn, else ~/.cache/edgecnn (not created here)."""
    if os.environ.get("EDGECNN_CACHE"):
        return Path(os.environ["EDGECNN_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "edgecnn"


_LIBC: Any = None


def release_free_memory() -> bool:
    """Hand freed heap memory back to the OS (glibc's malloc_trim); False where there is no glibc.

    After a burst of connections the allocator keeps their freed buffers mapped (fragmented arenas);
    a long-running server calls this once the burst is over, so its RSS goes back down.
    """
    global _LIBC
    import ctypes

    try:
        if _LIBC is None:
            _LIBC = ctypes.CDLL("libc.so.6")  # glibc's soname: no ldconfig/gcc lookup (find_library) here
        return bool(_LIBC.malloc_trim(0))
    except (OSError, AttributeError):
        return False


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an exception's message (its type name when it has none), for one-line errors.

    Native libraries prefix messages with "Exception from src/...cpp:NN:" lines (OpenVINO); the first
    other line says what went wrong.
    """
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith("Exception from ")]
    return (useful or lines or [type(e).__name__])[0][:limit]


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (/proc), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def umask_mode(directory: bool = False) -> int:
    """The mode open()/mkdir() would give a new file or directory (0o666 / 0o777 minus the umask).

    mkstemp/mkdtemp create 0600/0700 whatever the umask; what they stage is chmod-ed to this before
    it is moved into place, so a bundle exported by one user (or with sudo) is readable as usual.
    """
    return (0o777 if directory else 0o666) & ~current_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a file so that readers see either the old or the new content, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temp_files(path)
    import tempfile  # here, not at import: tempfile + shutil + random are ~5 ms of every device cold start

    # The pid in the name tells a later run whether this temp file's writer is still alive (edgecnn.stale).
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), umask_mode())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if e.filename is None:  # a failed write() names no file: name the one we were writing
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def staged_directory(final: str | os.PathLike) -> Iterator[Path]:
    """Build a directory in a sibling temp dir and move it into place only on success.

    A failure (or Ctrl-C) inside the block removes the staging dir, so no half-built
    directory is ever left at `final`. An existing `final` is replaced only on success.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(final)
    import shutil
    import tempfile

    stage = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.staging.{os.getpid()}."))
    try:
        yield stage
        os.chmod(stage, umask_mode(directory=True))
        if final.exists():
            old = final.with_name(f".{final.name}.old.{os.getpid()}")
            os.replace(final, old)
            os.replace(stage, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, final)
    except OSError as e:
        shutil.rmtree(stage, ignore_errors=True)
        # Name the path the user asked for (a write() on a full disk names none; staging names are hidden).
        where = Path(e.filename) if isinstance(e.filename, (str, os.PathLike)) else stage
        with contextlib.suppress(ValueError):
            where = final / where.relative_to(stage)
        raise OSError(e.errno, e.strerror, str(where)) from e
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
