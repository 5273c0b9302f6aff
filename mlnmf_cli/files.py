"""Opening files named by the user without ever blocking on them.

A named pipe (FIFO) opened for reading waits for a writer forever; a device
can be endless or have side effects; a socket cannot be opened at all. Every
loader of user-named files (images, models, ``--original``) goes through
:func:`open_regular_file` or :func:`check_regular_file`, which refuse anything
but a regular file with one line that names what it is.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from mlnmf_cli.errors import InputError, open_error

__all__ = ["check_regular_file", "open_regular_file"]

_FILE_TYPES = (
    (stat.S_ISFIFO, "named pipe (FIFO)"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
)


def _refuse_special(mode: int, kind: str) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise InputError(f"is a directory, not {kind}")
    for test, name in _FILE_TYPES:
        if test(mode):
            raise InputError(f"is a {name}, not a regular file")
    raise InputError("not a regular file")


def check_regular_file(path: str | os.PathLike[str], kind: str = "an image file") -> None:
    """Refuse, as one :class:`InputError`, anything at ``path`` that is not a regular file.

    Only ``stat`` is called (symbolic links followed): a named pipe is never
    opened, so nothing can block. ``kind`` names what was expected, e.g.
    ``"a model file"``; it appears in the message for a folder. The message
    does not name the path (the caller prefixes it). Use
    :func:`open_regular_file` to open the file as well without a race.
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        raise open_error(exc, kind) from exc
    _refuse_special(info.st_mode, kind)


def open_regular_file(path: str | os.PathLike[str], kind: str = "an image file") -> BinaryIO:
    """Open ``path`` for binary reading if, and only if, it is a regular file.

    Checked by ``stat`` first (a FIFO, a device, a socket or a folder is never
    opened), then opened with ``O_NONBLOCK`` and checked again on the open
    descriptor, so a file swapped for a FIFO in between cannot block either.
    Errors are one-line :class:`InputError` messages without the path.
    """
    check_regular_file(path, kind)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise open_error(exc, kind) from exc
    try:
        _refuse_special(os.fstat(fd).st_mode, kind)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
