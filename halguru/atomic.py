"""Files written whole or not at all: a temporary file beside the target, renamed over it; and read-modify-write
of such a file by one process at a time (an exclusive lock)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def write_atomically(path: Path, data: str | bytes, *, private: bool = False) -> None:
    """Write ``data`` to ``path``: a crash leaves the old file or the new one, never half of one. The file keeps
    the mode of the one it replaces; a new one gets what an editor's would (0644 under the usual umask) or,
    ``private``, its owner's only (settings that may hold a password). A target that is not a regular file
    (``-o /dev/stdout``, a pipe, a device) is written through, never replaced by a file of its name."""
    try:
        if path.exists() and not path.is_file() and not path.is_dir():  # a folder: the rename says so
            with path.open("wb") as fh:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            return
        _write(path, data, private)
    except OSError as exc:  # named by the file asked for, not the temporary one beside it (nor by none: ENOSPC)
        if exc.errno is None:
            raise
        raise type(exc)(exc.errno, exc.strerror, str(path)) from None


def _write(path: Path, data: str | bytes, private: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            mode = 0o600 if private else 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask, read without setting it (os.umask would change it for every thread meanwhile)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


@contextlib.contextmanager
def exclusive_lock(lock_file: Path, *, wait: bool = True) -> Iterator[IO[str]]:
    """Hold an exclusive flock on ``lock_file`` (created, with its folder) for the block; the kernel releases it
    even on SIGKILL. Without ``wait`` a lock held elsewhere raises BlockingIOError at once. Yields the open file,
    in which a holder may say who it is."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def lock_for_update(path: Path) -> contextlib.AbstractContextManager[IO[str]]:
    """Hold ``path``'s lock while reading, changing and writing it back, so that another process doing the same
    (two `halguru models add` at once) waits for this one instead of writing over its change. The lock is
    ``.locks/NAME.lock`` beside it: one on the file itself would be lost when write_atomically renames a new
    file over it."""
    return exclusive_lock(path.parent / ".locks" / f"{path.name}.lock")
