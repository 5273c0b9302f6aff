"""Result folders: staged and renamed into place, replaced only when asked and only
when they are mlnmf's; safe unique names; one run at a time per output folder (a
lock); recovery of what a killed run left behind."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from mlnmf_cli.errors import OutputError
from mlnmf_cli.storage.atomic import fault_point, folder_mode, fsync_dir, hidden_prefix

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
    ``replace`` is true, and then only after the new folder is complete; whether
    it may be is checked again then (another run may have written ``target``
    meanwhile). A kill between the renames leaves the old folder aside, where
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
        try:  # again: another run (a learn into the same --out) may have written it meanwhile
            refuse_existing(target, replace=replace)
        except OutputError as exc:
            raise OutputError(
                f"{exc}; it appeared while this run was working, so this result was not written"
            ) from None
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
    """The pid the holder wrote, or None while it has not written it yet."""
    with contextlib.suppress(OSError):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return int(text)
    return None


def holds_output_lock(out: Path) -> bool:
    return os.path.realpath(out) in _held_locks


_RESULT_FILE = re.compile(r"[A-Za-z0-9_]+\.(png|npz|json|csv|html)|\..+\.[a-z0-9_]{8}\.tmp")
# encode (collections) writes one picture per input into this subfolder.
_RESULT_SUBFOLDER = "reconstructions"
_LEFTOVER = re.compile(r"\.(.+)\.[a-z0-9_]{8}\.(partial|old|trash)")
_SUMMARY_TMP = re.compile(
    r"\.(" + "|".join(re.escape(n) for n in SUMMARY_FILES) + r")\.[a-z0-9_]{8}\.tmp"
    r"|\.mlnmf-probe-[a-z0-9_]{8}"
)


def _pictures_only(path: str) -> bool:
    """A real folder (not a link) holding nothing but PNG files."""
    return (
        os.path.isdir(path)
        and not os.path.islink(path)
        and all(
            f.is_file(follow_symlinks=False) and f.name.endswith(".png") for f in os.scandir(path)
        )
    )


def _result_like(folder: Path) -> bool:
    """A folder that holds nothing but files mlnmf writes into a result folder."""
    try:
        return all(
            (e.is_file(follow_symlinks=False) and _RESULT_FILE.fullmatch(e.name))
            or (e.name == _RESULT_SUBFOLDER and _pictures_only(e.path))
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
