"""Writing results safely and reading saved models back.

Everything here is about files: atomic writes (temporary name, then rename),
result folders that appear whole or not at all, and ``model.npz`` files that
are read with ``allow_pickle=False`` and checked before anything trusts them.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import hashlib
import io
import json
import os
import platform
import re
import shutil
import signal
import stat
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from mlnmf_cli import __version__
from mlnmf_cli.engine.model import Model
from mlnmf_cli.errors import InputError, OutputError
from mlnmf_cli.files import open_regular_file

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


def _atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
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

    _atomic_write(path, write)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` as UTF-8; characters that have no UTF-8 form (undecodable bytes
    of a file name) are written as backslash escapes rather than failing."""
    write_bytes(path, text.encode("utf-8", "backslashreplace"))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, allow_nan=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
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


# --------------------------------------------------------------------------- result folders

LOCK_NAME = ".mlnmf.lock"
SUMMARY_FILES = ("summary.json", "summary.csv", "index.html")
RESERVED_NAMES = frozenset(name.casefold() for name in (*SUMMARY_FILES, LOCK_NAME))
"""Names of the tool's own files in an output folder: never a result folder's name."""

MAX_NAME_BYTES = 200
"""Longest result folder name (bytes of UTF-8); a longer one is cut and given a hash."""

LOCK_WAIT_VARIABLE = "MLNMF_LOCK_WAIT"
LOCK_WAIT = 5.0  # seconds a run waits for another run on the same output folder


def prepare_output_dir(out: Path) -> Path:
    """Create ``out`` if needed and check that results can be written into it."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: output path exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".mlnmf-probe-", delete=True)
        probe.close()
    except OSError as exc:
        raise OutputError(
            f"{out}: cannot write to the output directory ({exc.strerror or exc})"
        ) from exc
    return out


def refuse_existing(target: Path, *, replace: bool) -> None:
    """Raise unless ``target`` is free or the user asked to replace it and it is a
    result folder (``--force`` never replaces anything else: a user's folder or file
    that happens to have a result's name)."""
    target = Path(target)
    if not os.path.lexists(target):
        return
    if not replace:
        raise OutputError(
            f"result folder {target} already exists "
            "(use --force to replace it or --skip-existing to keep it)"
        )
    if not is_result_folder(target):
        raise OutputError(
            f"{target} exists and is not an mlnmf result folder; "
            "--force replaces only those (move it away or choose another --out)"
        )


def is_result_folder(folder: Path) -> bool:
    """A real folder (not a link) holding a report.json and only files mlnmf writes there."""
    folder = Path(folder)
    return (
        folder.is_dir()
        and not folder.is_symlink()
        and (folder / "report.json").is_file()
        and _result_like(folder)
    )


@contextlib.contextmanager
def staged_folder(target: Path, *, replace: bool) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it becomes ``target``.

    If the body fails or is interrupted, the temporary folder is removed and
    ``target`` is untouched. An existing ``target`` is replaced only when
    ``replace`` is true, and then only after the new folder is complete; a kill
    between the renames leaves the old folder aside, where
    :func:`recover_output` finds it and puts it back.
    """
    target = Path(target)
    refuse_existing(target, replace=replace)
    try:
        staging = Path(
            tempfile.mkdtemp(
                prefix=hidden_prefix(target.name), suffix=".partial", dir=target.parent
            )
        )
        os.chmod(staging, folder_mode())
    except OSError as exc:
        raise OutputError(
            f"cannot create a folder in {target.parent} ({exc.strerror or exc})"
        ) from exc
    try:
        yield staging
        _move_into_place(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputError(
            f"cannot write the result folder {target} ({exc.strerror or exc})"
        ) from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _move_into_place(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an old ``target`` goes only once the new one is in.

    The old folder is first moved to ``.NAME.XXXXXXXX.old/NAME``: the steps are
    (1) old aside, (2) new in, (3) old removed; after a kill at any step
    :func:`recover_output` restores (1) or finishes (3).
    """
    fsync_dir(staging)
    if not os.path.lexists(target):
        fault_point()
        os.replace(staging, target)
        fsync_dir(target.parent)
        return
    old = Path(
        tempfile.mkdtemp(prefix=hidden_prefix(target.name), suffix=".old", dir=target.parent)
    )
    fault_point()
    os.replace(target, old / target.name)
    try:
        fault_point()
        os.replace(staging, target)
    except BaseException:
        os.replace(old / target.name, target)
        old.rmdir()
        raise
    fsync_dir(target.parent)
    fault_point()
    _remove_tree(old)


def _remove_tree(folder: Path) -> None:
    """Remove ``folder``: first renamed to a ``.trash`` name so that a kill halfway never
    leaves a half-removed folder under a name that means something."""
    trash = folder.with_name(folder.name.rsplit(".", 1)[0] + ".trash")
    try:
        os.replace(folder, trash)
    except OSError:
        trash = folder
    fault_point()
    shutil.rmtree(trash, ignore_errors=True)


# --------------------------------------------------------------------------- names


def display_path(path: str | os.PathLike[str]) -> str:
    """``path`` as one printable line: undecodable bytes as ``\\xNN``, control
    characters (newlines, tabs...) as escapes; ordinary paths unchanged."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


def safe_name(raw_name: str) -> str:
    """A result folder name for ``raw_name`` (a file's stem, or stems joined).

    Kept as it is when it is already safe; otherwise (hidden or empty, a name of
    the tool's own files, undecodable bytes, control or path characters, longer
    than :data:`MAX_NAME_BYTES`) cleaned and followed by ``-`` and 8 hex digits of
    the original's hash, so that the name stays the same from call to call and
    differs from every other input's.
    """
    raw = os.fsencode(raw_name)
    text = raw.decode("utf-8", "replace")
    text = "".join(
        "_" if (not ch.isprintable() or ch in "/\\\ufffd") else ch for ch in text
    ).lstrip(". ")
    if not text.strip():
        text = "_"
    cut = text.encode()
    if len(cut) > MAX_NAME_BYTES - 9:
        text = cut[: MAX_NAME_BYTES - 9].decode("utf-8", "ignore")
    if text == raw_name and text.casefold() not in RESERVED_NAMES:
        return text
    return f"{text}-{hashlib.sha1(raw).hexdigest()[:8]}"


def _stem(path: Path) -> str:
    name = path.name or "root"
    suffix = Path(name).suffix
    return name[: -len(suffix)] if suffix and name != suffix else name


def unique_names(paths: Sequence[Path]) -> list[str]:
    """Folder names for a batch: the file stem, lengthened by parent folders on a clash.

    Every name is safe (:func:`safe_name`: never hidden, never a name of the
    tool's own files, never ``.``/``..``, printable, short enough) and unique
    within the call. The same list of inputs always gives the same names, so a
    rerun with ``--skip-existing`` finds the folders it wrote before; an input
    given twice gets ``-2``, ``-3``... (the first free number).
    """
    resolved = [Path(os.path.abspath(p)) for p in paths]
    depth = [1] * len(paths)
    typed = [False] * len(paths)  # the suffix joins the name ("a_png", "a_jpg")

    def parts(i: int) -> list[str]:
        p = resolved[i]
        last = _stem(p) + (f"_{p.suffix[1:]}" if typed[i] and p.suffix[1:] else "")
        return [*(q.name or "root" for q in reversed(p.parents)), last][1:] or ["root"]

    def name(i: int) -> str:
        return safe_name("__".join(parts(i)[-depth[i] :]))

    while True:
        names = [name(i) for i in range(len(paths))]
        owners: dict[str, set[Path]] = {}
        for i, n in enumerate(names):
            owners.setdefault(n, set()).add(resolved[i])
        clashes = [i for i, n in enumerate(names) if len(owners[n]) > 1]
        grow = [i for i in clashes if depth[i] < len(parts(i))]
        if not grow:
            # Files of one folder that differ only in their suffix: the suffix tells them apart.
            retype = [i for i in clashes if not typed[i]]
            if not retype:
                break
            for i in retype:
                typed[i], depth[i] = True, 1
            continue
        for i in grow:
            depth[i] += 1
    taken = set(names)
    out: list[str] = []
    used: set[str] = set()
    for n in names:
        if n in used:
            k = 2
            while f"{n}-{k}" in taken:
                k += 1
            n = f"{n}-{k}"
            taken.add(n)
        used.add(n)
        out.append(n)
    return out


# --------------------------------------------------------------------------- sharing and recovery


@contextlib.contextmanager
def output_lock(out: Path, wait: float | None = None) -> Iterator[None]:
    """Hold ``out/.mlnmf.lock`` (an exclusive ``flock``) within the block.

    Runs in one process may nest; a run in another process waits up to ``wait``
    seconds (default :data:`LOCK_WAIT`, or ``$MLNMF_LOCK_WAIT``) and then fails
    with one line naming the other run's pid. The lock file is removed when the
    outermost block ends; a file left by a killed run is simply reused. On a file
    system without ``flock`` (some network and FUSE mounts) runs are not locked.
    """
    key = os.path.realpath(out)
    if key in _held_locks:
        _held_locks[key][1] += 1
        try:
            yield
        finally:
            _held_locks[key][1] -= 1
        return
    if wait is None:
        try:
            wait = float(os.environ.get(LOCK_WAIT_VARIABLE, LOCK_WAIT))
        except ValueError:
            wait = LOCK_WAIT
    path = Path(out) / LOCK_NAME
    fd = _acquire(path, wait, out)
    _held_locks[key] = [fd, 1]
    try:
        yield
    finally:
        del _held_locks[key]
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.unlink(path)
            os.close(fd)


_held_locks: dict[str, list[int]] = {}


class FolderBusy(OutputError):
    """Another run holds the output folder's lock."""


_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS}


def _acquire(path: Path, wait: float, out: Path) -> int:
    """The locked file's descriptor, or -1 where the file system cannot lock."""
    deadline = time.monotonic() + max(wait, 0.0)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666)
        except OSError as exc:
            raise OutputError(
                f"{out}: cannot lock the output directory ({exc.strerror or exc})"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            if time.monotonic() >= deadline:
                who = f"another mlnmf run (pid {holder})" if holder else "another mlnmf run"
                raise FolderBusy(
                    f"{out}: {who} is writing into this folder; "
                    "wait for it to finish or choose another --out"
                ) from None
            time.sleep(0.05)
            continue
        except OSError as exc:
            os.close(fd)
            if exc.errno in _NO_FLOCK:
                with contextlib.suppress(OSError):
                    os.unlink(path)
                return -1
            raise OutputError(
                f"{out}: cannot lock the output directory ({exc.strerror or exc})"
            ) from exc
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except OSError:
            same = False
        if not same:  # the holder removed the file as we locked it: lock the new one
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).split()[0])
    return None


def holds_output_lock(out: Path) -> bool:
    return os.path.realpath(out) in _held_locks


_RESULT_FILE = re.compile(r"[A-Za-z0-9_]+\.(png|npz|json)|\..+\.[a-z0-9_]{8}\.tmp")
_LEFTOVER = re.compile(r"\.(.+)\.[a-z0-9_]{8}\.(partial|old|trash)")
_SUMMARY_TMP = re.compile(
    r"\.(" + "|".join(re.escape(n) for n in SUMMARY_FILES) + r")\.[a-z0-9_]{8}\.tmp"
    r"|\.mlnmf-probe-[a-z0-9_]{8}"
)


def _result_like(folder: Path) -> bool:
    """A folder that holds nothing but files mlnmf writes into a result folder."""
    try:
        return all(
            e.is_file(follow_symlinks=False) and _RESULT_FILE.fullmatch(e.name)
            for e in os.scandir(folder)
        )
    except OSError:
        return False


def recover_output(out: Path) -> list[str]:
    """Finish or undo what a killed run left in ``out``; return what was done, one line each.

    Call it holding :func:`output_lock` (no other run is then writing here):

    * ``.NAME.XXXXXXXX.old/NAME`` (a ``--force`` replacement cut short): put back
      as ``NAME`` when ``NAME`` is missing, else removed;
    * ``.NAME.XXXXXXXX.partial`` (a result being written) and ``.trash``: removed;
    * ``.summary.json.XXXXXXXX.tmp`` and the like, ``.mlnmf-probe-XXXXXXXX``: removed.

    Only entries whose names and contents are what mlnmf writes are touched.
    """
    done: list[str] = []
    try:
        entries = sorted(os.scandir(out), key=lambda e: e.name)
    except OSError:
        return done
    for entry in entries:
        path = Path(entry.path)
        if _SUMMARY_TMP.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(OSError):
                os.unlink(path)
                done.append(f"removed {path}")
            continue
        match = _LEFTOVER.fullmatch(entry.name)
        if match is None or not entry.is_dir(follow_symlinks=False):
            continue
        if match.group(2) == "partial":
            if not _result_like(path):
                continue
        else:  # .old or .trash: empty, or one result folder moved aside
            try:
                inside = list(os.scandir(path))
            except OSError:
                continue
            if inside:
                if len(inside) != 1 or not inside[0].is_dir(follow_symlinks=False):
                    continue
                if not _result_like(Path(inside[0].path)):
                    continue
                target = Path(out) / inside[0].name
                if match.group(2) == "old" and not os.path.lexists(target):
                    with contextlib.suppress(OSError):
                        fault_point()
                        os.replace(inside[0].path, target)
                        done.append(f"restored {target}")
        shutil.rmtree(path, ignore_errors=True)
        done.append(f"removed {path}")
    return done


# --------------------------------------------------------------------------- models


@dataclass
class SavedModel:
    """A decomposition read back from ``model.npz``: one :class:`Model` per decomposed matrix."""

    meta: dict[str, Any]
    parts: list[Model]

    @property
    def depth(self) -> int:
        return self.parts[0].depth


def save_model(
    path: Path,
    meta: Mapping[str, Any],
    parts: Sequence[Any],
) -> None:
    """Write factors (models, or ``(Ws, Hs)`` pairs) and metadata as plain arrays (no pickles)."""
    arrays: dict[str, np.ndarray] = {
        "format_version": np.asarray(MODEL_FORMAT_VERSION, dtype=np.int64),
        "meta": np.asarray(json.dumps(dict(meta), default=_json_default)),
    }
    for c, (Ws, Hs) in enumerate(parts):
        for layer, W in enumerate(Ws, start=1):
            arrays[f"part{c}_W{layer}"] = np.ascontiguousarray(W)
        for depth, H in enumerate(Hs, start=1):
            arrays[f"part{c}_H{depth}"] = np.ascontiguousarray(H)

    def write(fh: IO[bytes]) -> None:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]

    _atomic_write(path, write)


MODEL_META_LIMIT = 1 << 20
"""Most characters of metadata JSON a model may hold (a real one holds about a thousand)."""

_NPY_HEADER_LIMIT = 10_000
_MODEL_MEMBER_LIMIT = 1024
_CHANNELS = ("gray", "stack", "separate")


def load_model(path: Path, *, max_pixels: int | None = None) -> SavedModel:
    """Read and check a ``model.npz``; nothing in it is unpickled or executed.

    Only a regular file is opened (a FIFO or a device is refused unopened).
    Every array's header is read and checked against what the metadata implies
    (the image's shape, at most ``max_pixels`` pixels, default Pillow's limit,
    and ranks no larger than the matrix allows) before any array is
    decompressed, so a small file cannot make the loader allocate more than
    the model it claims to be.
    """
    path = Path(path)
    limit = _pixel_limit(max_pixels)
    try:
        with open_regular_file(path, "a model file") as fh:
            if fh.read(4) != b"PK\x03\x04":
                raise InputError("not a valid model file (not an .npz archive)")
            fh.seek(0)
            with zipfile.ZipFile(fh) as zf:
                return _read_model(zf, limit)
    except ValueError as exc:
        raise InputError(f"not a valid model file ({_one_line(exc)})") from exc
    except (
        OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, RuntimeError,
        NotImplementedError,
    ) as exc:  # fmt: skip
        raise InputError(
            f"not a valid model file (truncated or corrupt: {_one_line(exc)})"
        ) from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _pixel_limit(max_pixels: int | None) -> int | None:
    if max_pixels is not None:
        return max_pixels
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS


@dataclass(frozen=True)
class _Member:
    """One ``.npy`` member of the archive, known from its header alone."""

    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    dtype: np.dtype[Any]


def _read_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> _Member:
    """The member's shape and dtype; its declared size must be what it holds."""
    key = info.filename[: -len(".npy")]
    fmt = np.lib.format
    with zf.open(info) as fp:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fp, max_header_size=_NPY_HEADER_LIMIT)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(fp, max_header_size=_NPY_HEADER_LIMIT)
        else:
            raise InputError(f"not a valid model file (array {key} has format {version})")
        offset = fp.tell()
    if dtype.hasobject:
        raise InputError("model contains pickled objects; refusing to load it")
    if any(s < 0 for s in shape):
        raise InputError(f"not a valid model file (array {key} has a negative size)")
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if info.file_size != offset + declared:
        raise InputError(
            f"not a valid model file (array {key} declares {declared} bytes "
            f"but holds {max(0, info.file_size - offset)})"
        )
    return _Member(info, tuple(shape), dtype)


def _read_array(zf: zipfile.ZipFile, member: _Member) -> np.ndarray:
    with zf.open(member.info) as fp:
        return np.lib.format.read_array(fp, allow_pickle=False, max_header_size=_NPY_HEADER_LIMIT)


def _read_model(zf: zipfile.ZipFile, limit: int | None) -> SavedModel:
    infos = zf.infolist()
    if len(infos) > _MODEL_MEMBER_LIMIT:
        raise InputError(f"not an mlnmf model (more than {_MODEL_MEMBER_LIMIT} members)")
    members: dict[str, _Member] = {}
    for info in infos:
        if not info.filename.endswith(".npy") or info.is_dir():
            raise InputError("not an mlnmf model (it holds a member that is not an array)")
        members[info.filename[: -len(".npy")]] = _read_header(zf, info)
    if "format_version" not in members or "meta" not in members:
        raise InputError("not an mlnmf model (format_version or meta missing)")
    version = members["format_version"]
    if version.shape != () or version.dtype.kind not in "iu":
        raise InputError("not an mlnmf model (format_version is not an integer)")
    number = int(_read_array(zf, version))
    if number != MODEL_FORMAT_VERSION:
        raise InputError(
            f"unsupported model format version {number} (this mlnmf reads version {MODEL_FORMAT_VERSION})"
        )
    meta_member = members["meta"]
    if meta_member.dtype.kind != "U" or meta_member.shape != ():
        raise InputError("not an mlnmf model (meta is not a string)")
    if meta_member.dtype.itemsize > 4 * MODEL_META_LIMIT:
        raise InputError(f"model metadata is longer than {MODEL_META_LIMIT} characters")
    meta = _parse_meta(str(_read_array(zf, meta_member)))
    layout = _layout(meta, limit)
    shapes = _check_shapes(members, layout)
    parts = []
    for keys in shapes:
        Ws: list[np.ndarray] = []
        Hs: list[np.ndarray] = []
        for key in keys:
            a = _read_array(zf, members[key])
            if not np.all(np.isfinite(a)):
                raise InputError(f"model array {key} contains NaN or infinity")
            (Ws if "_W" in key else Hs).append(a)
        parts.append(Model(Ws, Hs))
    return SavedModel(meta=meta, parts=parts)


def _parse_meta(text: str) -> dict[str, Any]:
    """The metadata JSON: an object of finite numbers, nested no deeper than JSON allows here."""

    def refuse_constant(name: str) -> Any:
        raise InputError(f"model metadata holds {name}, which is not a number")

    def finite_float(text: str) -> float:
        value = float(text)
        if not np.isfinite(value):
            raise InputError(f"model metadata holds {text[:20]}, which is too large a number")
        return value

    try:
        meta = json.loads(text, parse_constant=refuse_constant, parse_float=finite_float)
    except json.JSONDecodeError as exc:
        raise InputError(f"model metadata is not valid JSON ({exc.msg})") from exc
    except RecursionError as exc:
        raise InputError("model metadata is nested too deeply") from exc
    if not isinstance(meta, dict):
        raise InputError("model metadata is not a JSON object")
    return meta


@dataclass(frozen=True)
class _Layout:
    n_parts: int
    depth: int
    part_shape: tuple[int, int]


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _layout(meta: dict[str, Any], limit: int | None) -> _Layout:
    """What the metadata implies: parts, depth and the shape of each part's matrix."""
    for name, ok in (
        ("n_parts", _whole),
        ("depth", _whole),
        ("image_shape", lambda v: isinstance(v, list) and all(map(_whole, v))),
        ("part_shape", lambda v: isinstance(v, list) and all(map(_whole, v))),
        ("channels", lambda v: v in _CHANNELS),
    ):
        if name not in meta or not ok(meta[name]):
            raise InputError(f"model metadata lacks a valid {name!r} field")
    parameters = meta.get("parameters", {})
    if not isinstance(parameters, dict) or not (
        "ranks" not in parameters
        or (isinstance(parameters["ranks"], list) and all(map(_whole, parameters["ranks"])))
    ):
        raise InputError("model metadata lacks a valid 'parameters' field")
    n_parts, depth, channels = meta["n_parts"], meta["depth"], meta["channels"]
    shape, part_shape = tuple(meta["image_shape"]), tuple(meta["part_shape"])
    if not (
        1 <= n_parts <= 3
        and 1 <= depth <= 64
        and len(part_shape) == 2
        and len(shape) in (2, 3)
        and min(shape) >= 1
        and (len(shape) == 2 or shape[2] == 3)
    ):
        raise InputError("model metadata has impossible sizes")
    height, width = shape[0], shape[1]
    if len(shape) == 2 or channels == "gray":
        implied = 1, (height, width)
    elif channels == "stack":
        implied = 1, (height, 3 * width)
    else:
        implied = 3, (height, width)
    if (n_parts, part_shape) != implied:
        raise InputError(
            f"model metadata is inconsistent: an image of shape {'x'.join(map(str, shape))} "
            f"with channels {channels!r} gives {implied[0]} matrix(es) of "
            f"{implied[1][0]}x{implied[1][1]}, not {n_parts} of "
            f"{'x'.join(map(str, part_shape))}"
        )
    if limit is not None and height * width > limit:
        raise InputError(
            f"model's image has {height * width} pixels, more than the limit of {limit}"
        )
    return _Layout(n_parts, depth, (part_shape[0], part_shape[1]))


def _check_shapes(members: Mapping[str, _Member], layout: _Layout) -> list[list[str]]:
    """Each part's array names (W1, H1, W2, H2, ...), their headers checked against ``layout``."""
    m, n = layout.part_shape
    parts = []
    for c in range(layout.n_parts):
        keys = []
        rows = m
        for layer in range(1, layout.depth + 1):
            for kind in ("W", "H"):
                key = f"part{c}_{kind}{layer}"
                a = members.get(key)
                if a is None:
                    raise InputError(f"model is missing the array {key}")
                if len(a.shape) != 2 or a.dtype.kind != "f":
                    raise InputError(f"model array {key} is not a 2-D float matrix")
                keys.append(key)
            W, H = members[f"part{c}_W{layer}"], members[f"part{c}_H{layer}"]
            if W.shape[0] != rows:
                raise InputError(
                    f"model arrays have inconsistent shapes: part{c}_W{layer} is "
                    f"{W.shape[0]}x{W.shape[1]} but should have {rows} rows"
                )
            rank = W.shape[1]
            if not 1 <= rank <= min(m, n):
                raise InputError(
                    f"model array part{c}_W{layer} has rank {rank}, impossible for a {m}x{n} matrix"
                )
            if H.shape != (rank, n):
                raise InputError(
                    f"model arrays have inconsistent shapes: part{c}_H{layer} is "
                    f"{H.shape[0]}x{H.shape[1]}, expected {rank}x{n}"
                )
            rows = rank
        parts.append(keys)
    return parts
