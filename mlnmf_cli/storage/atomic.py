"""Files that appear whole or not at all: atomic writes (a temporary name, then a
rename), the modes an ordinary open() would give, versions for reports, and the
fault-injection hook the crash tests use."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import platform
import signal
import stat
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from mlnmf_cli import __version__

MODEL_FORMAT_VERSION = 1

REPORT_VERSION = "1"


def versions() -> dict[str, str]:
    """Versions of everything that shapes a result, recorded in every report."""
    import PIL

    return {
        "mlnmf": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
    }


# --------------------------------------------------------------------------- modes


def _umask() -> int:
    """The process's umask, read without changing it when /proc tells it."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode(existing: Path | None = None) -> int:
    """The mode an ordinary ``open()`` gives a new file (or keeps on ``existing``)."""
    if existing is not None:
        with contextlib.suppress(OSError):
            return stat.S_IMODE(os.stat(existing).st_mode)
    return 0o666 & ~_umask()


def folder_mode() -> int:
    """The mode an ordinary ``mkdir()`` gives a new folder under the current umask."""
    return 0o777 & ~_umask()


# --------------------------------------------------------------------------- fault injection

FAULT_VARIABLE = "MLNMF_FAULT_STEP"
"""Tests only: ``MLNMF_FAULT_STEP=N`` SIGKILLs the process at its N-th rename/replace/remove
step in an output folder (counted from 1), to prove that a kill at any step loses nothing.
Writes inside a staging folder are not counted: nothing there is visible under a result's
name, so a kill among them is a kill at the staging folder's first step."""

_fault_steps = 0


def fault_point() -> None:
    """One step of a write that a kill may interrupt (see :data:`FAULT_VARIABLE`)."""
    global _fault_steps
    wanted = os.environ.get(FAULT_VARIABLE)
    if not wanted:
        return
    _fault_steps += 1
    if str(_fault_steps) == wanted.strip():
        os.kill(os.getpid(), signal.SIGKILL)


# --------------------------------------------------------------------------- atomic files

_HIDDEN_NAME_BYTES = 200  # keeps ".NAME.XXXXXXXX.partial" within NAME_MAX (255 bytes)


def hidden_prefix(name: str) -> str:
    """``.NAME.`` for the temporaries beside ``NAME``, shortened to fit the name limit."""
    raw = os.fsencode(name)
    if len(raw) > _HIDDEN_NAME_BYTES:
        digest = hashlib.sha1(raw).hexdigest()[:8]
        raw = raw[: _HIDDEN_NAME_BYTES - 9] + b"-" + digest.encode()
    return "." + os.fsdecode(raw) + "."


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    path = Path(path)
    mode = file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=hidden_prefix(path.name), suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        staged = path.parent.name.endswith(".partial")  # made durable as a whole
        if not staged:
            fault_point()
        os.replace(tmp, path)
        if not staged:
            fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def fsync_dir(folder: Path) -> None:
    """Make the renames in ``folder`` durable (a power cut keeps them); best effort."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes(path: Path, data: bytes) -> None:
    def write(fh: IO[bytes]) -> None:
        fh.write(data)

    atomic_write(path, write)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` as UTF-8; characters that have no UTF-8 form (undecodable bytes
    of a file name) are written as backslash escapes rather than failing."""
    write_bytes(path, text.encode("utf-8", "backslashreplace"))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, allow_nan=False, default=json_default) + "\n")


def json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in JSON")


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in fields})
    write_text(path, buf.getvalue())


def save_image(path: Path, image: Any) -> None:
    """Save a PIL image as PNG, atomically."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    write_bytes(path, buf.getvalue())
