"""A batch's inputs: the command line's files and folders as items with unique folder names.

Rules for listing a folder (documented in the README, "Exit codes and errors"):

* image files are taken by suffix; hidden files and hidden folders are skipped;
* an mlnmf result folder (one holding ``report.json`` and ``model.npz``) is never
  read as input, wherever it is, and neither is the output folder when it lies
  inside the folder being listed;
* under ``--recursive`` symbolic links to folders are followed, and every
  folder is listed once: a link that leads to a folder already listed (a loop,
  or a second way to the same folder) is not followed again and is reported;
* anything that cannot be listed or used (an unreadable subfolder, a broken
  link, a named pipe or device with an image suffix) becomes a failed input
  with its reason, never a silent omission.

A path named on the command line that cannot be examined (permission denied on
a folder above it, a name too long) or is not a regular file (a named pipe would
block the loader) is a failed input too, not a usage error.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from mlnmf_cli import storage
from mlnmf_cli.imageio import IMAGE_SUFFIXES

RESULT_MARKERS = ("report.json", "model.npz")
"""Files whose presence together makes a folder an mlnmf result folder."""


@dataclass(frozen=True)
class BatchItem:
    """One input of a batch: an image to decompose, or a problem found while listing."""

    path: Path
    name: str = ""
    problem: str | None = None


def reason(exc: OSError) -> str:
    """The system's reason for refusing a path, as a lower-case phrase."""
    if exc.errno == errno.ENOENT:
        return "no such file or folder"
    if exc.errno == errno.EACCES:
        return "permission denied"
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


_SPECIAL = (
    (stat.S_ISFIFO, "named pipe (FIFO)"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
)


def _special_file(mode: int) -> str | None:
    """Why a file that is neither a regular file nor a folder cannot be an input."""
    for test, name in _SPECIAL:
        if test(mode):
            return f"is a {name}, not a regular file"
    return None if stat.S_ISREG(mode) else "not a regular file"


def is_result_folder(folder: Path) -> bool:
    return all(os.path.isfile(folder / marker) for marker in RESULT_MARKERS)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


class _Lister:
    """Lists one folder given on the command line (see the module docstring)."""

    def __init__(self, recursive: bool, exclude: Path | None) -> None:
        self.recursive = recursive
        self.exclude = exclude
        self.listed: dict[tuple[int, int], Path] = {}
        self.items: list[BatchItem] = []
        self.has_subfolders = False

    def walk(self, root: Path, info: os.stat_result) -> None:
        """List ``root`` and, under --recursive, its subfolders (depth first, without
        recursion: a tree deeper than Python's stack is fine)."""
        stack = [(root, info)]
        while stack:
            folder, info = stack.pop()
            stack.extend(reversed(self.folder(folder, info)))

    def folder(self, folder: Path, info: os.stat_result) -> list[tuple[Path, os.stat_result]]:
        """Take the folder's files; return its subfolders to list."""
        key = (info.st_dev, info.st_ino)
        if key in self.listed:
            self.items.append(
                BatchItem(
                    folder,
                    problem=f"symbolic link to {self.listed[key]}, a folder already listed; "
                    "not followed again",
                )
            )
            return []
        self.listed[key] = folder
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self.items.append(BatchItem(folder, problem=f"cannot list this folder ({reason(exc)})"))
            return []
        subfolders = []
        for entry in entries:
            if not entry.name.startswith("."):
                subfolders.extend(self.entry(Path(entry.path)))
        return subfolders

    def entry(self, path: Path) -> list[tuple[Path, os.stat_result]]:
        """Take ``path`` if it is an image file; return it if it is a folder to list."""
        try:
            info = os.stat(path)
        except OSError as exc:
            if path.suffix.lower() in IMAGE_SUFFIXES:
                broken = exc.errno == errno.ENOENT and path.is_symlink()
                problem = "broken symbolic link" if broken else reason(exc)
                self.items.append(BatchItem(path, problem=problem))
            return []
        if stat.S_ISDIR(info.st_mode):
            self.has_subfolders = True
            if not self.recursive or is_result_folder(path):
                return []
            if self.exclude is not None and _inside(path.resolve(), self.exclude):
                return []
            return [(path, info)]
        if path.suffix.lower() in IMAGE_SUFFIXES:
            self.items.append(BatchItem(path, problem=_special_file(info.st_mode)))
        return []


def expand_inputs(
    inputs: Iterable[Path], *, recursive: bool, exclude: Path | None = None
) -> list[BatchItem]:
    """Turn the command line's files and folders into batch items with unique folder names.

    Files are taken as given whatever their suffix (the loader judges them);
    folders contribute the image files they hold, sorted (see the module
    docstring for what is skipped and what is reported). ``exclude`` (the
    output folder) is not listed when it lies inside a folder being listed, and
    an input whose result folder ``exclude/NAME`` would be or hold an input
    fails (with ``--force`` it would replace the inputs).
    """
    excluded = exclude.resolve() if exclude is not None else None
    found: list[BatchItem] = []
    listed: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        try:
            info = os.stat(path)
        except OSError as exc:
            found.append(BatchItem(path, problem=reason(exc)))
            continue
        if not stat.S_ISDIR(info.st_mode):
            found.append(BatchItem(path, problem=_special_file(info.st_mode)))
            continue
        listed.append(path.resolve())
        # The output folder is skipped inside this folder, unless it is this folder.
        skip = excluded if excluded is not None and excluded != path.resolve() else None
        lister = _Lister(recursive, skip)
        lister.walk(path, info)
        items = sorted(lister.items, key=lambda item: item.path)
        if not items:
            hint = (
                " (use --recursive to look in subfolders)"
                if lister.has_subfolders and not recursive
                else ""
            )
            items = [BatchItem(path, problem=f"no images found in this folder{hint}")]
        found.extend(items)
    names = storage.unique_names([item.path for item in found])
    items = [replace(item, name=name) for item, name in zip(found, names, strict=True)]
    if exclude is not None:
        items = _refuse_results_over_inputs(items, Path(exclude), listed)
    return items


def _refuse_results_over_inputs(
    items: list[BatchItem], out: Path, folders: list[Path]
) -> list[BatchItem]:
    """An input whose result folder OUT/NAME is, or holds, an input of the batch fails:
    writing it (or replacing it with --force) would put results over the inputs."""
    root = out.resolve()
    inputs = [item.path.resolve() for item in items if item.problem is None] + folders
    checked = []
    for item in items:
        target = root / item.name
        if item.problem is None and any(_inside(p, target) for p in inputs):
            item = replace(
                item,
                problem=f"its result folder {out / item.name} would hold or replace inputs "
                "of this batch (choose another --out)",
            )
        checked.append(item)
    return checked


def cpu_count() -> int:
    """Cores this process may use (``--jobs auto``)."""
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
