"""Writing files safely: one atomic writer for the whole library, and corrupted files moved aside, never deleted."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, BinaryIO

__all__ = ["atomic_write", "move_aside"]


def _umask() -> int:
    """The process's umask: read from /proc on Linux (no side effect), else by setting it and setting it back."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path, write: Callable[[BinaryIO], None], mode: int = 0o666) -> Path:
    """Call write(f) on a temporary file beside `path`, fsync it, give it `mode` minus the umask, rename it to `path`.

    A reader sees the old file or the new one, never half of one; on any error the temporary file is removed
    and `path` is untouched. The folder is created if needed. Returns `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode & ~_umask())  # mkstemp creates 0600; files we write follow the user's umask like open() does
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def move_aside(path) -> str:
    """Rename a bad file to NAME.corrupt (NAME.corrupt.1, ... if taken) so it is kept for inspection; -> what happened."""
    path = Path(path)
    target = path.with_name(path.name + ".corrupt")
    n = 0
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt.{n}")
    try:
        os.rename(path, target)
    except OSError as e:
        return (f"it could not be moved aside ({type(e).__name__}: {e}); it was left where it is, so fix or "
                "replace it by hand")
    return f"it has been moved aside to {target} (nothing was deleted)"
