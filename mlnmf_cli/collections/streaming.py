"""``mlnmf learn`` within a memory budget: decode once into a column-blocked cache, then
factorise block by block (here, or on Dask workers), and write the result folder from
the blocks.

Memory: one block of columns at a time plus small matrices, whatever the number
of images (the column names, ~100 bytes each, and the per-image errors, 8 bytes
per image and depth, are kept whole). A collection that fits in one block is
factorised in memory by the engine, exactly as without a budget.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlnmf_cli import imageio, page, render, storage
from mlnmf_cli.collections import dictionary, loading, outputs
from mlnmf_cli.collections._shared import Options
from mlnmf_cli.collections.blocks import (
    MB,
    BlockedResult,
    BlockFile,
    LocalBlocks,
    check_streamable,
    learn_blocked,
    plan_blocks,
    report_sums,
)
from mlnmf_cli.engine.model import chain
from mlnmf_cli.errors import InputError, OutputError, ParameterError

ENV_SCHEDULER = "MLNMF_SCHEDULER"
MEMORY_SHARE = 4  # default budget: a quarter of the memory available
CODE_SAMPLE = 2048  # columns of H drawn in summary.png


def default_memory_mb() -> int:
    """A quarter of MemAvailable (Linux), else of the physical memory, at least 256 MB."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return max(256, int(line.split()[1]) // 1024 // MEMORY_SHARE)
    except OSError:
        pass
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return max(256, total // MB // MEMORY_SHARE)
    except (ValueError, OSError, AttributeError):
        return 1024


def iter_inputs(
    paths: Sequence[Path], *, recursive: bool, exclude: Path | None
) -> Iterator[tuple[str, str | None]]:
    """(input, problem) in the order of ``expand_inputs``, keeping only the names of a
    folder's files (a few dozen bytes each) rather than a record per file."""

    excluded = str(exclude.resolve()) + os.sep if exclude is not None else None

    def wanted(full: str, entry_name: str) -> bool:
        if entry_name.startswith(".") or os.path.splitext(entry_name)[1].lower() not in (
            imageio.IMAGE_SUFFIXES
        ):
            return False
        if excluded and os.path.realpath(full).startswith(excluded):
            return False
        return os.path.isfile(full)

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            if recursive:
                found = sorted(str(p) for p in path.glob("**/*") if wanted(str(p), p.name))
            else:
                found = sorted(str(path / e) for e in os.listdir(path) if wanted(str(path / e), e))
            if not found:
                hint = (
                    ""
                    if recursive or not any(p.is_dir() for p in path.iterdir())
                    else " (use --recursive to look in subfolders)"
                )
                yield str(path), f"no images found in this folder{hint}"
            yield from ((name, None) for name in found)
        elif path.exists():
            yield str(path), None
        else:
            yield str(path), "no such file or folder"


IN_MEMORY_BYTES = 24  # bytes per value an in-memory learn needs (X in float64, the
# engine's copy and its temporaries), measured on the benchmark's collections


def estimated_values(
    paths: Sequence[Path],
    *,
    size: tuple[int, int] | None,
    patches: loading.PatchSpec | None,
    recursive: bool,
    exclude: Path | None,
) -> int:
    """Values of X (pixels x columns) from the images' headers alone (nothing decoded):
    an upper bound (3 channels per pixel unless every header says grey)."""
    from PIL import Image

    total = 0
    for name, problem in iter_inputs(paths, recursive=recursive, exclude=exclude):
        if problem is not None:
            continue
        try:
            with Image.open(name) as im:
                w, h = im.size
                ch = 1 if im.mode in ("1", "L", "I", "F", "I;16", "P") else 3
        except Exception:  # the loader reports it
            continue
        if size is not None:
            h, w = size
        if patches is None:
            total += h * w * ch
        else:
            (ph, pw), (sy, sx) = patches.size, patches.stride
            if h >= ph and w >= pw:
                total += ((h - ph) // sy + 2) * ((w - pw) // sx + 2) * ph * pw * ch
    return total


def fits_in_memory(paths: Sequence[Path], memory_mb: int | None = None, **kwargs: Any) -> bool:
    """Whether a plain in-memory ``learn`` of these inputs stays within the budget."""
    budget = (memory_mb if memory_mb is not None else default_memory_mb()) * MB
    return estimated_values(paths, **kwargs) * IN_MEMORY_BYTES <= budget


# --------------------------------------------------------------------------- decoding


def decode_to_cache(
    paths: Sequence[Path],
    folder: Path,
    *,
    dtype: Any,
    channels: str | None,
    size: tuple[int, int] | None,
    patches: loading.PatchSpec | None,
    recursive: bool,
    max_pixels: int | None,
    exclude: Path | None,
    chunk_bytes: int,
    on_image: Callable[[str], Any] | None = None,
) -> loading.Collection:
    """Decode every image once, appending its columns to ``folder/X.npy``; the same
    rules and failures as :func:`loading.load_collection`, one image in memory at a time."""
    failed: list[dict[str, str]] = []
    notes: list[str] = []
    names: list[str] = []
    used: list[str] = []
    X: BlockFile | None = None
    mode = channels
    first: tuple[str, Any] | None = None
    shape: tuple[int, ...] = ()
    color_source = False
    pending: list[np.ndarray] = []
    pending_cols = 0
    written = 0

    def flush() -> None:
        nonlocal pending, pending_cols, written
        if pending and X is not None:
            X.write(written, np.concatenate(pending, axis=1))
            written += pending_cols
        pending, pending_cols = [], 0

    if mode is not None:
        loading.channel_mode([], mode)  # the same one-line refusal of "separate"
    for name, problem in iter_inputs(paths, recursive=recursive, exclude=exclude):
        if on_image is not None:
            on_image(name)
        image = loading.load_one(name, problem, size, max_pixels, failed, notes)
        if image is None:
            continue
        if first is None:
            first = (name, image)
            if mode is None:
                mode = "stack" if image.is_color else "gray"
        elif channels is None and image.is_color != first[1].is_color:
            loading.channel_mode([first[1], image], None)  # raises: colour and grey mixed
        if patches is None:
            loading._check_same_size([first, (name, image)])
        assert mode is not None  # set from the first image
        pixels = loading.pixels_for(image, mode)
        try:
            cols, suffixes = loading.columns_of(pixels, patches)
        except InputError as exc:
            failed.append({"input": name, "error": str(exc)})
            continue
        if X is None:
            shape = pixels.shape if patches is None else patches.size
            if patches is not None and mode == "stack":
                shape = (*shape[:2], 3)
            X = BlockFile(folder / "X.npy", cols.shape[0], 0, dtype, create=True)
        color_source = color_source or image.is_color
        pending.append(cols.astype(dtype))
        pending_cols += cols.shape[1]
        names.extend(name + s for s in suffixes)
        used.append(name)
        if pending_cols * cols.shape[0] * np.dtype(dtype).itemsize >= chunk_bytes:
            flush()
    flush()
    if first is None:
        detail = f" ({failed[0]['input']}: {failed[0]['error']})" if len(failed) == 1 else ""
        raise InputError(f"no usable image in the collection{detail}")
    if X is None:
        raise InputError(f"no image is large enough for {patches and patches.size} patches")
    if patches is None and len(used) < 2:
        raise InputError(
            f"a collection needs at least 2 images, got 1 ({used[0]}); "
            "to learn from one image use --patches HxW, or decompose it with 'mlnmf decompose'"
        )
    if written < 2:
        raise InputError(
            "the patches give only one column; use smaller patches or a smaller stride"
        )
    X.cols = written
    X.write_header()
    assert mode is not None
    return loading.Collection(
        X=X,  # type: ignore[arg-type]
        names=names,
        image_shape=tuple(int(s) for s in shape),
        channels=mode,
        color_source=color_source,
        inputs=used,
        failed=failed,
        notes=notes,
        resize=size,
        patches=patches,
    )


# --------------------------------------------------------------------------- the run


def cache_folder(out: Path, cache: Path | None) -> Path:
    """A fresh folder for the cache: inside ``cache``, or beside ``out`` (hidden)."""
    parent = Path(cache) if cache is not None else Path(out).resolve().parent
    try:
        if cache is not None:
            parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f".{Path(out).name}.cache-", dir=parent))
    except OSError as exc:
        raise OutputError(
            f"{parent}: cannot use the cache folder ({exc.strerror or exc})"
        ) from None
    return folder


def learn_streamed(
    inputs: Sequence[Path],
    options: Options,
    out: Path,
    *,
    memory_mb: int | None = None,
    cache: Path | None = None,
    scheduler: str | None = None,
    size: tuple[int, int] | None = None,
    patches: loading.PatchSpec | None = None,
    recursive: bool = False,
    replace: bool = False,
    on_image: Callable[[str], Any] | None = None,
    on_failed: Callable[[str, str], Any] | None = None,
    on_progress: dictionary.Progress | None = None,
    on_block: Callable[[int, int], Any] | None = None,
) -> dict[str, Any]:
    """``learn`` within ``memory_mb``: returns the report (with a ``streaming`` section)."""
    memory = (memory_mb if memory_mb is not None else default_memory_mb()) * MB
    if memory <= 0:
        raise ParameterError(f"--memory must be a positive number of MB, got {memory_mb}")
    dtype = np.dtype(options.dtype)
    start = time.perf_counter()
    client = None
    if scheduler is not None:  # reached (or refused) before any image is decoded
        from mlnmf_cli.collections import distributed

        client = distributed.connect(scheduler)
    folder = cache_folder(out, cache)
    ex: Any = None
    try:
        collection = decode_to_cache(
            inputs, folder, dtype=dtype, channels=options.channels, size=size, patches=patches,
            recursive=recursive, max_pixels=options.max_pixels, exclude=Path(out).resolve(),
            chunk_bytes=max(MB, memory // 8), on_image=on_image,
        )  # fmt: skip
        for failure in collection.failed:
            if on_failed is not None:
                on_failed(failure["input"], failure["error"])
        X: BlockFile = collection.X  # type: ignore[assignment]
        m, n = X.rows, X.cols
        dictionary.check_ranks((m, n), options.ranks)
        plan = plan_blocks(m, n, options.ranks, dtype.itemsize, memory)
        load_seconds = time.perf_counter() - start
        info = {
            "memory_mb": memory // MB,
            "block_columns": plan.block,
            "blocks": -(-n // plan.block),
            "cache": str(cache) if cache is not None else "beside the output",
            "scheduler": scheduler,
        }
        if plan.block >= n and scheduler is None:
            # One block: the engine on the whole matrix, as without a budget.
            collection.X = np.asarray(X.read(0, n), dtype=np.float64)
            X.close()
            learned = dictionary.learn_matrix(collection.X, options, on_progress)
            learned.seconds["load"] = load_seconds
            report = outputs.write_learn(out, collection, learned, replace=replace)
            report["streaming"] = {**info, "in_memory": True}
            return report
        check_streamable(options.method, options.solver, options.init)
        if scheduler is not None:
            ex = distributed.DaskBlocks(scheduler, X, plan.block, on_block=on_block, client=client)
        else:
            ex = LocalBlocks(folder, X, plan.block, on_block=on_block)
        t0 = time.perf_counter()
        result = learn_blocked(
            ex,
            m,
            n,
            options.ranks,
            dtype=dtype,
            callback=on_progress,
            **dataclasses.asdict(options.engine),
        )
        seconds = {
            "load": load_seconds,
            "factorize": time.perf_counter() - t0,
            "greedy": result.seconds["greedy"],
            "fine_tune": result.seconds["fine_tune"],
        }
        info["passes"] = ex.passes
        if client is not None:  # Dask: passes run again after a worker failed
            info["passes_rerun"] = ex.retried
        info["in_memory"] = False
        return write_streamed(out, collection, options, result, ex, seconds, info, replace=replace)
    finally:
        if ex is not None:
            ex.close()
        if client is not None:
            client.close()
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- outputs


def _write_npz(path: Path, small: dict[str, np.ndarray], big: dict[str, BlockFile],
               step: int, texts: dict[str, Any]) -> None:  # fmt: skip
    """An .npz like ``np.savez_compressed``, the large arrays streamed a block at a time
    (and ``texts``, JSON-ready objects, as their JSON in 0-d unicode arrays)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for key, obj in texts.items():
            # json.dumps(obj) as a 0-d unicode array, encoded twice piece by piece
            # (once to count its characters) rather than held whole.
            encoder = json.JSONEncoder(allow_nan=False)
            length = sum(len(piece) for piece in encoder.iterencode(obj))
            with zf.open(f"{key}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array_header_1_0(
                    fh, {"descr": f"<U{length}", "fortran_order": False, "shape": ()}
                )
                for piece in encoder.iterencode(obj):
                    fh.write(piece.encode("utf-32-le"))
        for key, arr in small.items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asarray(arr), allow_pickle=False)
        for key, f in big.items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array_header_1_0(
                    fh, {"descr": np.lib.format.dtype_to_descr(f.dtype), "fortran_order": True,
                         "shape": (f.rows, f.cols)}
                )  # fmt: skip
                for j in range(0, f.cols, step):
                    fh.write(np.ascontiguousarray(f.read(j, min(j + step, f.cols)).T).tobytes())


def _hoyer(l1: float, l2sq: float, N: int) -> float:
    if N <= 1 or l2sq <= 0:
        return 0.0
    root = math.sqrt(N)
    return float(min(1.0, max(0.0, (root - l1 / math.sqrt(l2sq)) / (root - 1.0))))


def streamed_report(
    collection: loading.Collection, options: Options, result: BlockedResult, errs: Any,
    E: np.ndarray, n: int, m: int,
) -> dict[str, Any]:  # fmt: skip
    from mlnmf_cli.engine import metrics

    normX2 = float(errs[0])
    svals = result.layers[0].svals
    depths, layers = [], []
    for d, rank in enumerate(options.ranks, start=1):
        col2, clip2, l1, l2sq, lay2, in2 = (
            float(v) for v in errs[1 + 6 * (d - 1) : 7 + 6 * (d - 1)]
        )
        mse = clip2 / max(1, m * n)
        top = float(np.sum(svals[:rank] ** 2))
        depths.append(
            {
                "depth": d,
                "rank": rank,
                "relative_error": math.sqrt(col2 / normX2) if normX2 > 0 else 0.0,
                "psnr": None if mse == 0 else float(10 * np.log10(1 / mse)),
                "greedy_relative_error": result.greedy_errors[d - 1],
                "svd_floor": math.sqrt(max(normX2 - top, 0.0) / normX2) if normX2 > 0 else 0.0,
                "median_image_error": float(np.median(E[d - 1])),
                "worst_image_error": float(E[d - 1].max()),
                "sparsity_atoms": float(metrics.hoyer_sparsity(chain(result.Ws[:d]))),
                "sparsity_codes": _hoyer(l1, l2sq, rank * n),
            }
        )
        lr = result.layers[d - 1]
        layers.append(
            {
                "layer": d,
                "rank": rank,
                "relative_error": math.sqrt(lay2 / in2) if in2 > 0 else 0.0,
                "iterations": lr.n_iter,
                "converged": lr.converged,
                "sparsity_W": float(metrics.hoyer_sparsity(result.Ws[d - 1])),
                "sparsity_H": _hoyer(l1, l2sq, rank * n),
            }
        )
    return outputs.learned_report(
        collection, options, n, depths, layers,
        fine_tune_iterations=int(result.fine_tune_n_iter), converged=bool(result.converged),
    )  # fmt: skip


def write_streamed(
    out: Path, collection: loading.Collection, options: Options, result: BlockedResult, ex: Any,
    seconds: dict[str, float], info: dict[str, Any], *, replace: bool,
) -> dict[str, Any]:  # fmt: skip
    """The same files as :func:`outputs.write_learn`, written from the blocks."""
    start = time.perf_counter()
    X: BlockFile = collection.X  # type: ignore[assignment]
    m, n = X.rows, X.cols
    L = len(options.ranks)
    errs = report_sums(ex, result)
    files = {name: ex.file(name) for name in [*result.H_names, "E"]}
    E = files["E"].read(0, n)
    report = streamed_report(collection, options, result, errs, E, n, m)
    report["streaming"] = info
    shape = collection.image_shape
    step = max(1, ex.step)
    with storage.staged_folder(out, replace=replace) as tmp:
        meta = {
            "kind": outputs.KIND,
            "collection_format": outputs.FORMAT_VERSION,
            "depth": L,
            "ranks": list(options.ranks),
            **collection.meta(),
            "failed": list(collection.failed),
            "parameters": options.as_dict(),
            "versions": storage.versions(),
        }
        small = {
            "format_version": np.asarray(storage.MODEL_FORMAT_VERSION, dtype=np.int64),
            **{
                f"W{i + 1}": np.ascontiguousarray(W, dtype=X.dtype) for i, W in enumerate(result.Ws)
            },
        }
        big = {f"H{i + 1}": files[name] for i, name in enumerate(result.H_names)}
        _write_npz(tmp / "model.npz", small, big, step, {"meta": meta})
        shown = outputs.shown_columns(n)
        originals = X.columns(shown)
        recons = {
            d: chain(result.Ws[:d]) @ files[result.H_names[d - 1]].columns(shown)
            for d in range(1, L + 1)
        }
        rows = []
        for i, j in enumerate(shown):
            row = [(outputs.column_image(originals[:, i], shape), Path(collection.names[j]).name)]
            row += [
                (
                    outputs.column_image(recons[d][:, i], shape),
                    f"depth {d}: {100 * E[d - 1, j]:.1f}%",
                )
                for d in range(1, L + 1)
            ]
            rows.append(row)
        storage.save_image(
            tmp / "reconstructions.png",
            outputs.pairs_image("inputs and their reconstructions", rows),
        )
        sample = np.unique(np.linspace(0, n - 1, min(n, CODE_SAMPLE)).round().astype(int))
        features, coefficients, mosaics = [], [], []
        for d, depth_row in enumerate(report["depths"], start=1):
            atoms = outputs.atoms_image(chain(result.Ws[:d]), shape)
            storage.save_image(tmp / f"features_depth{d}.png", atoms)
            label = "W1" if d == 1 else f"W1..W{d}"
            features.append((atoms, f"atoms {label} (rank {depth_row['rank']})"))
            codes = files[result.H_names[d - 1]].columns(sample.tolist())
            coefficients.append((render.coefficients_image(codes), f"codes H{d}"))
            mosaics.append(
                (
                    outputs.mosaic([outputs.column_image(recons[d][:, i], shape) for i in range(len(shown))]),
                    f"depth {d} (rank {depth_row['rank']}): error {100 * depth_row['relative_error']:.1f}%",
                )
            )  # fmt: skip
        original = outputs.mosaic(
            [outputs.column_image(originals[:, i], shape) for i in range(len(shown))]
        )
        title = (
            f"{n} {'patches' if collection.patches else 'images'}: "
            f"ranks {','.join(map(str, options.ranks))}, {collection.channels}"
        )
        storage.save_image(
            tmp / "summary.png",
            render.summary_panel(title, original, mosaics, features, coefficients),
        )
        _write_codes(tmp / "codes.csv", collection.names, files[result.H_names[-1]], E[L - 1], step)
        seconds["write"] = time.perf_counter() - start
        report["seconds"] = {k: round(v, 4) for k, v in seconds.items()}
        storage.write_json(tmp / "report.json", report)
        page.write_folder_page(tmp, report, name=Path(out).name)
    return report


def _write_codes(path: Path, names: Sequence[str], H: BlockFile, errors: np.ndarray,
                 step: int) -> None:  # fmt: skip
    import csv

    r = H.rows
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow([*outputs.CODE_FIELDS, *(f"code_{k + 1}" for k in range(r))])
        for j0 in range(0, H.cols, step):
            j1 = min(j0 + step, H.cols)
            block = H.read(j0, j1).astype(np.float64)
            buf = io.StringIO()
            bw = csv.writer(buf, lineterminator="\n")
            for k, j in enumerate(range(j0, j1)):
                bw.writerow([j, names[j], float(errors[j]), *map(float, block[:, k])])
            fh.write(buf.getvalue())


# --------------------------------------------------------------------------- encode


def encode_streamed(
    model_file: Path,
    model: outputs.CollectionModel,
    inputs: Sequence[Path],
    out: Path,
    *,
    memory_mb: int | None = None,
    cache: Path | None = None,
    depth: int | None = None,
    max_iter: int | None = None,
    tol: float | None = None,
    recursive: bool = False,
    max_pixels: int | None = None,
    replace: bool = False,
    on_failed: Callable[[str, str], Any] | None = None,
) -> dict[str, Any]:
    """``encode`` within ``memory_mb``: the inputs are read, encoded and written a chunk at a
    time (their codes are independent columns); the same files as an in-memory encode.

    Each chunk's non-negative least squares stops on its own (``tol``), so with more
    than one chunk the codes can differ from an in-memory encode by that tolerance.
    """
    from PIL import Image

    from mlnmf_cli.collections.nnls import MAX_ITER, TOL

    if depth is not None and not 1 <= depth <= model.depth:
        raise ParameterError(f"the model has {model.depth} layer(s), got --depth {depth}")
    memory = (memory_mb if memory_mb is not None else default_memory_mb()) * MB
    d = model.depth if depth is None else depth
    W = chain([np.asarray(Wl, dtype=np.float64) for Wl in model.Ws[:d]])
    m, r = W.shape
    # Per column: the pixels, the model's pixels and temporaries in float64, the code.
    chunk_columns = (memory - 8 * m * r * 4) // (8 * (6 * m + 4 * r))
    if chunk_columns < 1:
        raise ParameterError(
            f"--memory {memory // MB} MB is too small to encode one column of {m} values "
            f"at rank {r}: the minimum is {math.ceil((8 * m * r * 4 + 8 * (6 * m + 4 * r)) / MB)} MB"
        )
    listed = list(iter_inputs(inputs, recursive=recursive, exclude=Path(out).resolve()))
    names = storage.unique_names([Path(p) for p, _ in listed])
    folder = cache_folder(out, cache)
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    columns: list[str] = []
    errors: list[np.ndarray] = []
    iterations, converged = 0, True
    pairs: list[Any] = []
    Hfile: BlockFile | None = None
    try:
        Hfile = BlockFile(folder / "H.npy", r, 0, np.float64, create=True)
        with storage.staged_folder(out, replace=replace) as tmp:
            (tmp / "reconstructions").mkdir()
            with open(tmp / "codes.csv", "w", newline="") as fh:
                import csv

                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow([*outputs.CODE_FIELDS, *(f"code_{k + 1}" for k in range(r))])
                chunk: list[outputs.EncodeInput] = []
                size = 0

                def flush() -> None:
                    nonlocal chunk, size, iterations, converged
                    assert Hfile is not None
                    good = [it for it in chunk if it.error is None and it.columns is not None]
                    encoded = None
                    if good:
                        encoded = dictionary.encode_matrix(
                            model.Ws, np.concatenate([it.columns for it in good], axis=1), d,
                            max_iter=max_iter, tol=tol,
                        )  # fmt: skip
                        iterations = max(iterations, encoded.n_iter)
                        converged = converged and encoded.converged
                    chunk_rows, images = outputs.encode_results(chunk, encoded, model)
                    rows.extend(chunk_rows)
                    suffixed = [it.input + s for it in good for s in it.suffixes]
                    if encoded is not None:
                        j0 = len(columns)
                        Hfile.write(j0, encoded.H)
                        for k, name in enumerate(suffixed):
                            writer.writerow(
                                [j0 + k, name, float(encoded.relative_errors[k]),
                                 *map(float, encoded.H[:, k])]
                            )  # fmt: skip
                        columns.extend(suffixed)
                        errors.append(np.asarray(encoded.relative_errors, dtype=np.float64))
                    for it, row in zip(chunk, chunk_rows, strict=True):
                        if it.name in images:
                            pic = render.to_pil(np.clip(images[it.name], 0.0, 1.0))
                            storage.save_image(tmp / "reconstructions" / f"{it.name}.png", pic)
                            if len(pairs) < outputs.MAX_PAIRS:
                                assert it.pixels is not None
                                pairs.append(
                                    [
                                        (render.to_pil(it.pixels), Path(it.input).name),
                                        (pic, f"depth {d}: {100 * row['relative_error']:.1f}%"),
                                    ]
                                )
                    chunk, size = [], 0

                for (path, problem), name in zip(listed, names, strict=True):
                    if problem is not None:
                        item = outputs.EncodeInput(input=path, name=name, error=problem)
                    else:
                        [item] = loading.load_for_model(
                            [Path(path)], model.meta, model.patches, max_pixels=max_pixels
                        )
                        item.name = name
                    if item.error is not None and on_failed is not None:
                        on_failed(item.input, item.error)
                    chunk.append(item)
                    size += 0 if item.columns is None else item.columns.shape[1]
                    if size >= chunk_columns:
                        flush()
                flush()
            if not columns:
                raise InputError("no input could be encoded; nothing was written")
            assert Hfile is not None
            Hfile.cols = len(columns)
            Hfile.write_header()
            rel = np.concatenate(errors)
            _write_npz(
                tmp / "codes.npz",
                {"columns": np.asarray(columns), "relative_errors": rel,
                 "depth": np.asarray(d)},
                {"H": Hfile}, max(1, int(chunk_columns)), {},
            )  # fmt: skip
            storage.save_image(
                tmp / "summary.png",
                outputs.pairs_image("inputs and their reconstructions", pairs)
                if pairs
                else Image.new("RGB", (1, 1), "white"),
            )
            ok = [row for row in rows if row["status"] == "ok"]
            report: dict[str, Any] = {
                "version": storage.REPORT_VERSION,
                "kind": "encode",
                "model": str(model_file),
                "depth": d,
                "rank": r,
                "image_shape": list(model.meta["image_shape"]),
                "channels": model.meta["channels"],
                "parameters": {"depth": d, "max_iter": max_iter, "tol": tol},
                "versions": storage.versions(),
                "succeeded": len(ok),
                "failed": len(rows) - len(ok),
                "iterations": iterations,
                "converged": converged,
                "results": rows,
                "errors": [{"input": x["input"], "error": x["error"]} for x in rows if x["error"]],
                "streaming": {
                    "memory_mb": memory // MB,
                    "chunk_columns": int(chunk_columns),
                    "nnls": {"max_iter": max_iter or MAX_ITER, "tol": TOL if tol is None else tol},
                },
                "seconds": {"total": round(time.perf_counter() - start, 4)},
            }
            storage.write_json(tmp / "report.json", report)
            page.write_folder_page(tmp, report, name=Path(out).name)
        return report
    finally:
        if Hfile is not None:
            Hfile.close()
        shutil.rmtree(folder, ignore_errors=True)
