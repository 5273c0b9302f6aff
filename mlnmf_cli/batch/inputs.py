"""A batch's inputs: the command line's files and folders as items with unique folder names."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from mlnmf_cli import storage
from mlnmf_cli.imageio import IMAGE_SUFFIXES


@dataclass(frozen=True)
class BatchItem:
    """One input of a batch: an image to decompose, or a problem found while listing."""

    path: Path
    name: str = ""
    problem: str | None = None


def _is_image_file(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def expand_inputs(
    inputs: Iterable[Path], *, recursive: bool, exclude: Path | None = None
) -> list[BatchItem]:
    """Turn the command line's files and folders into batch items with unique folder names.

    Files are taken as given whatever their suffix (the loader judges them);
    folders contribute the image files they hold, sorted; ``exclude`` (the
    output folder) is never read as input.
    """
    excluded = exclude.resolve() if exclude is not None else None
    found: list[BatchItem] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(
                p
                for p in path.glob(pattern)
                if _is_image_file(p) and not (excluded and excluded in p.resolve().parents)
            )
            if not files:
                hint = (
                    ""
                    if recursive or not any(p.is_dir() for p in path.iterdir())
                    else " (use --recursive to look in subfolders)"
                )
                found.append(BatchItem(path, problem=f"no images found in this folder{hint}"))
            found.extend(BatchItem(p) for p in files)
        elif path.exists():
            found.append(BatchItem(path))
        else:
            found.append(BatchItem(path, problem="no such file or folder"))
    names = storage.unique_names([item.path for item in found])
    return [replace(item, name=name) for item, name in zip(found, names, strict=True)]


def cpu_count() -> int:
    """Cores this process may use (``--jobs auto``)."""
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
