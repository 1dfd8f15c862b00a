"""Full disks: recognise the errors and say where, how much is free, and what to do."""

from __future__ import annotations

import errno
import os
import shutil

NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def is_no_space(exc: BaseException) -> bool:
    """True for 'no space left', 'quota exceeded' and 'file too large' errors."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS


def free_bytes(path: str | os.PathLike) -> tuple[int, int] | None:
    """(free, total) bytes of the volume holding `path` (its nearest existing folder)."""
    here = os.path.abspath(path)
    while not os.path.exists(here) and os.path.dirname(here) != here:
        here = os.path.dirname(here)
    try:
        usage = shutil.disk_usage(here)
    except OSError:
        return None
    return usage.free, usage.total


def no_space_message(path: str | os.PathLike, exc: BaseException, what: str = "write") -> str:
    """`cannot write PATH: No space left on device (F bytes free of T): ...` for an error."""
    space = free_bytes(path)
    room = (f"{space[0]:,} bytes free of {space[1]:,} on its volume" if space
            else "free space unknown")
    reason = getattr(exc, "strerror", None) or exc
    return (f"cannot {what} {path}: {reason} ({room}); nothing was half-written: free space "
            "there (or move the folder to a larger volume) and rerun")


def names_no_space(exc: BaseException) -> bool:
    """True for an error (also one from a native library, as text) that says the disk is
    full: errno 28 / ENOSPC, 'No space left on device', a quota or file-size limit."""
    text = str(exc)
    return is_no_space(exc) or any(m in text for m in (
        "No space left", "os error 28", "Disk quota exceeded", "File too large"))
