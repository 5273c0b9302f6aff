"""Files in, result folder out: what ``mlnmf learn`` and ``mlnmf encode`` do, without a terminal.

Progress and per-input failures go through callbacks; the result folder is
written whole or not at all (an interruption leaves nothing behind).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlnmf_cli.collections import dictionary, loading, outputs
from mlnmf_cli.collections._shared import Options
from mlnmf_cli.errors import InputError, MlnmfError, ParameterError

OnFailed = Callable[[str, str], Any]  # (input, error)


def learn_files(
    inputs: Sequence[Path],
    options: Options,
    out: Path,
    *,
    size: tuple[int, int] | None = None,
    patches: loading.PatchSpec | None = None,
    recursive: bool = False,
    replace: bool = False,
    on_image: Callable[[str], Any] | None = None,
    on_failed: OnFailed | None = None,
    on_progress: dictionary.Progress | None = None,
) -> dict[str, Any]:
    """Load a collection, learn its dictionary, write ``out``; returns the report."""
    start = time.perf_counter()
    collection = loading.load_collection(
        inputs,
        channels=options.channels,
        size=size,
        patches=patches,
        recursive=recursive,
        max_pixels=options.max_pixels,
        exclude=Path(out).resolve(),
        on_image=on_image,
    )
    for failure in collection.failed:
        if on_failed is not None:
            on_failed(failure["input"], failure["error"])
    load_seconds = time.perf_counter() - start
    try:
        learned = dictionary.learn_matrix(collection.X, options, on_progress)
    except MemoryError:
        raise MlnmfError(
            "not enough memory to learn from this collection "
            "(try smaller ranks, --size or --dtype float32)"
        ) from None
    learned.seconds["load"] = load_seconds
    return outputs.write_learn(out, collection, learned, replace=replace)


def learn_summary(report: dict[str, Any], out: Path) -> dict[str, Any]:
    """What ``learn --json`` prints: counts, failures and the per-depth errors."""
    return {
        "version": report["version"],
        "output": str(out),
        "columns": report["columns"],
        "succeeded": report["inputs"],
        "failed": len(report["failed"]),
        "errors": report["failed"],
        "relative_error": report["relative_error"],
        "depths": report["depths"],
    }


def open_model(model: Path) -> tuple[Path, outputs.CollectionModel]:
    """A collection model from a file or its folder; errors name the file."""
    path = outputs.model_path(model)
    try:
        return path, outputs.load_model(path)
    except MlnmfError as exc:
        raise type(exc)(f"{path}: {exc}") from exc


def encode_files(
    model_file: Path,
    model: outputs.CollectionModel,
    inputs: Sequence[Path],
    out: Path,
    *,
    depth: int | None = None,
    max_iter: int | None = None,
    tol: float | None = None,
    recursive: bool = False,
    max_pixels: int | None = None,
    replace: bool = False,
    on_failed: OnFailed | None = None,
) -> dict[str, Any]:
    """Encode new images with the model's dictionary fixed, write ``out``; returns the report.

    Inputs that cannot be read the model's way are listed as failed; when none
    can, nothing is written and :class:`InputError` says so.
    """
    if depth is not None and not 1 <= depth <= model.depth:
        raise ParameterError(f"the model has {model.depth} layer(s), got --depth {depth}")
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    items = loading.load_for_model(
        inputs,
        model.meta,
        model.patches,
        recursive=recursive,
        max_pixels=max_pixels,
        exclude=Path(out).resolve(),
    )
    seconds["load"] = time.perf_counter() - start
    for item in items:
        if item.error is not None and on_failed is not None:
            on_failed(item.input, item.error)
    good = [item.columns for item in items if item.error is None and item.columns is not None]
    if not good:
        raise InputError("no input could be encoded; nothing was written")
    start = time.perf_counter()
    encoded = dictionary.encode_matrix(
        model.Ws, np.concatenate(good, axis=1), depth, max_iter=max_iter, tol=tol
    )
    seconds["encode"] = time.perf_counter() - start
    parameters = {"depth": encoded.depth, "max_iter": max_iter, "tol": tol}
    return outputs.write_encode(
        out, model_file, model, items, encoded, parameters, seconds, replace=replace
    )
