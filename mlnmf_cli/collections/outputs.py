"""Files of ``learn`` and ``encode``: the collection model, pictures, codes, reports.

Every result folder is written in a staging folder and renamed into place
(:func:`storage.staged_folder`), so an interrupted run leaves nothing
half-written and an existing folder is replaced only when asked.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mlnmf_cli import page, render, storage
from mlnmf_cli.collections._shared import Options, pixel_errors
from mlnmf_cli.collections.dictionary import Encoded, Learned, sparsity
from mlnmf_cli.collections.loading import Collection, PatchSpec, assemble_patches
from mlnmf_cli.errors import InputError

KIND = "collection"
FORMAT_VERSION = 1
MAX_PAIRS = 6  # inputs shown next to their reconstructions
MAX_ATOMS = 256  # atoms drawn per features picture
ATOM_MIN_SIDE = 48


# --------------------------------------------------------------------------- model


@dataclass
class CollectionModel:
    """A dictionary read back from a collection ``model.npz``."""

    meta: dict[str, Any]
    Ws: list[np.ndarray]
    Hs: list[np.ndarray]

    @property
    def depth(self) -> int:
        return len(self.Ws)

    @property
    def patches(self) -> PatchSpec | None:
        p = self.meta.get("patches")
        if p is None:
            return None
        (h, w), (sy, sx) = p["size"], p["stride"]
        return PatchSpec((int(h), int(w)), (int(sy), int(sx)))


def model_meta(collection: Collection, learned: Learned) -> dict[str, Any]:
    return {
        "kind": KIND,
        "collection_format": FORMAT_VERSION,
        "depth": learned.depth,
        "ranks": list(learned.options.ranks),
        **collection.meta(),
        "failed": list(collection.failed),
        "parameters": learned.options.as_dict(),
        "versions": storage.versions(),
    }


def save_model(
    path: Path, meta: dict[str, Any], Ws: Sequence[np.ndarray], Hs: Sequence[np.ndarray]
) -> None:
    """``W1``..``WL``, ``H1``..``HL`` and ``meta`` (a JSON string): plain arrays, no pickles."""
    arrays: dict[str, np.ndarray] = {
        "format_version": np.asarray(storage.MODEL_FORMAT_VERSION, dtype=np.int64),
        "meta": np.asarray(json.dumps(meta, allow_nan=False)),
    }
    for layer, (W, H) in enumerate(zip(Ws, Hs, strict=True), start=1):
        arrays[f"W{layer}"] = np.ascontiguousarray(W)
        arrays[f"H{layer}"] = np.ascontiguousarray(H)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    storage.write_bytes(path, buf.getvalue())


def model_path(path: Path) -> Path:
    path = Path(path)
    return path / "model.npz" if path.is_dir() else path


def load_model(path: Path) -> CollectionModel:
    """Read and check a collection model; a ``decompose`` model is refused in one line."""
    arrays = storage.read_npz(model_path(path))
    meta: Any = None
    if "meta" in arrays and arrays["meta"].dtype.kind == "U" and arrays["meta"].shape == ():
        try:
            meta = json.loads(str(arrays["meta"]))
        except json.JSONDecodeError as exc:
            raise InputError(f"model metadata is not valid JSON ({exc.msg})") from exc
    if not isinstance(meta, dict) or meta.get("kind") != KIND:
        if "part0_W1" in arrays:
            raise InputError(
                "this is a model of one image from 'mlnmf decompose', not a collection model "
                "from 'mlnmf learn'; encode needs a dictionary learned over a collection"
            )
        raise InputError("not a collection model from 'mlnmf learn' (kind 'collection' missing)")
    try:
        depth = int(meta["depth"])
        shape = tuple(int(s) for s in meta["image_shape"])
        channels = str(meta["channels"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"model metadata lacks a valid {exc} field") from exc
    if not 1 <= depth <= 64 or len(shape) not in (2, 3) or channels not in ("gray", "stack"):
        raise InputError("model metadata has impossible sizes or channel mode")
    Ws, Hs = [], []
    rows = math.prod(shape)
    for layer in range(1, depth + 1):
        for key in (f"W{layer}", f"H{layer}"):
            if key not in arrays:
                raise InputError(f"model is missing the array {key}")
            a = arrays[key]
            if a.ndim != 2 or a.dtype.kind != "f" or not np.all(np.isfinite(a)):
                raise InputError(f"model array {key} is not a finite 2-D float matrix")
        W, H = arrays[f"W{layer}"], arrays[f"H{layer}"]
        if W.shape[0] != rows or H.shape[0] != W.shape[1]:
            raise InputError(f"model arrays have inconsistent shapes at layer {layer}")
        rows = W.shape[1]
        Ws.append(W)
        Hs.append(H)
    return CollectionModel(meta=meta, Ws=Ws, Hs=Hs)


# --------------------------------------------------------------------------- pictures


def column_image(column: np.ndarray, shape: Sequence[int]) -> Image.Image:
    """One column as the image it is (clipped to [0, 1])."""
    return render.to_pil(np.clip(np.asarray(column, dtype=np.float64).reshape(shape), 0.0, 1.0))


def _atom_rgb(atom: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """An atom scaled by its own largest magnitude: palette for grey, colours for colour."""
    values = np.asarray(atom, dtype=np.float64).reshape(shape)
    peak = float(np.max(np.abs(values))) if values.size else 0.0
    scaled = values / peak if peak > 0 else values
    signed = bool((scaled < 0).any())
    if len(shape) == 2:
        return render.diverging_colors(scaled) if signed else render.sequential_colors(scaled)
    rgb = 0.5 + 0.5 * scaled if signed else scaled
    return np.rint(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)


def atoms_image(W: np.ndarray, shape: Sequence[int], *, max_atoms: int = MAX_ATOMS) -> Image.Image:
    """The columns of W as a grid of image-shaped atoms, each scaled to its own maximum."""
    r = min(W.shape[1], max_atoms)
    cols = math.ceil(math.sqrt(r))
    rows = math.ceil(r / cols)
    h, w = int(shape[0]), int(shape[1])
    zoom = max(1, math.ceil(ATOM_MIN_SIDE / max(1, min(h, w))))
    gap = 2
    canvas = np.full(
        (rows * (h * zoom + gap) + gap, cols * (w * zoom + gap) + gap, 3), 255, dtype=np.uint8
    )
    for k in range(r):
        tile = _atom_rgb(W[:, k], shape)
        tile = np.repeat(np.repeat(tile, zoom, axis=0), zoom, axis=1)
        y = gap + (k // cols) * (h * zoom + gap)
        x = gap + (k % cols) * (w * zoom + gap)
        canvas[y : y + h * zoom, x : x + w * zoom] = tile
    return Image.fromarray(canvas)


def shown_columns(n: int, count: int = MAX_PAIRS) -> list[int]:
    """A few columns spread over the collection."""
    return sorted({round(i * (n - 1) / max(1, count - 1)) for i in range(min(n, count))})


def pairs_image(
    title: str,
    rows: Sequence[Sequence[tuple[Image.Image, str]]],
) -> Image.Image:
    return render.montage(rows, title=title, cell=160)


def mosaic(images: Sequence[Image.Image]) -> Image.Image:
    """Images side by side on one strip, 2 pixels apart."""
    images = [im.convert("RGB") for im in images]
    width = sum(im.width for im in images) + 2 * (len(images) - 1)
    height = max(im.height for im in images)
    strip = Image.new("RGB", (max(1, width), max(1, height)), render.WHITE)
    x = 0
    for im in images:
        strip.paste(im, (x, 0))
        x += im.width + 2
    return strip


# --------------------------------------------------------------------------- learn


CODE_FIELDS = ("column", "input", "relative_error")


def learn_report(collection: Collection, learned: Learned) -> dict[str, Any]:
    depths = learned.depth_errors()
    for row in depths:
        d = int(row["depth"])
        row["sparsity_atoms"] = sparsity(learned.features(d))
        row["sparsity_codes"] = sparsity(learned.Hs[d - 1])
    return learned_report(
        collection, learned.options, collection.n_columns, depths, learned.layer_stats(),
        fine_tune_iterations=int(learned.result.fine_tune_n_iter),
        converged=bool(learned.result.converged),
        seconds={k: round(v, 4) for k, v in learned.seconds.items()},
    )  # fmt: skip


def learned_report(
    collection: Collection,
    options: Options,
    columns: int,
    depths: list[dict[str, Any]],
    layers: list[dict[str, Any]],
    *,
    fine_tune_iterations: int,
    converged: bool,
    seconds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """``learn``'s report.json, in memory or streamed: the collection, the options, the
    per-depth rows (the deepest gives the headline numbers) and per-layer rows."""
    last = depths[-1]
    report: dict[str, Any] = {
        "version": storage.REPORT_VERSION,
        "kind": KIND,
        "command": "learn",
        "columns": columns,
        "inputs": len(collection.inputs),
        "failed": list(collection.failed),
        "image_shape": list(collection.image_shape),
        "channels": collection.channels,
        "resize": None if collection.resize is None else list(collection.resize),
        "patches": None if collection.patches is None else collection.patches.as_dict(),
        "notes": list(collection.notes),
        "parameters": options.as_dict(),
        "seed": options.seed,
        "versions": storage.versions(),
        "relative_error": last["relative_error"],
        "psnr": last["psnr"],
        "svd_floor": {"rank": last["rank"], "relative_error": last["svd_floor"]},
        "depths": depths,
        "layers": layers,
        "fine_tune": {
            "enabled": options.fine_tune,
            "iterations": fine_tune_iterations,
            "converged": converged,
        },
    }
    if seconds is not None:
        report["seconds"] = seconds
    return report


def code_rows(
    names: Sequence[str], H: np.ndarray, errors: np.ndarray
) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per column: its name, its error and its code (``code_1`` ...)."""
    codes = [f"code_{k + 1}" for k in range(H.shape[0])]
    rows = []
    for j, name in enumerate(names):
        row: dict[str, Any] = {"column": j, "input": name, "relative_error": float(errors[j])}
        row.update({c: float(H[k, j]) for k, c in enumerate(codes)})
        rows.append(row)
    return rows, [*CODE_FIELDS, *codes]


def write_learn(
    out: Path,
    collection: Collection,
    learned: Learned,
    *,
    replace: bool = False,
) -> dict[str, Any]:
    """Write the model, pictures, codes and report of a learned collection into ``out``."""
    start = time.perf_counter()
    report = learn_report(collection, learned)
    shape = collection.image_shape
    L = learned.depth
    with storage.staged_folder(out, replace=replace) as tmp:
        save_model(tmp / "model.npz", model_meta(collection, learned), learned.Ws, learned.Hs)
        shown = shown_columns(collection.n_columns)
        rows: list[list[tuple[Image.Image, str]]] = []
        # Only the columns shown are rebuilt: never the whole collection's pixels.
        recons = {d: learned.reconstruction(d, shown) for d in range(1, L + 1)}
        errors = {d: learned.column_errors(d) for d in range(1, L + 1)}
        for i, j in enumerate(shown):
            row = [(column_image(collection.X[:, j], shape), Path(collection.names[j]).name)]
            row += [
                (column_image(recons[d][:, i], shape), f"depth {d}: {100 * errors[d][j]:.1f}%")
                for d in range(1, L + 1)
            ]
            rows.append(row)
        storage.save_image(
            tmp / "reconstructions.png", pairs_image("inputs and their reconstructions", rows)
        )
        features, coefficients, mosaics = [], [], []
        for d, depth_row in enumerate(report["depths"], start=1):
            atoms = atoms_image(learned.features(d), shape)
            storage.save_image(tmp / f"features_depth{d}.png", atoms)
            chain = "W1" if d == 1 else f"W1..W{d}"
            features.append((atoms, f"atoms {chain} (rank {depth_row['rank']})"))
            coefficients.append((render.coefficients_image(learned.Hs[d - 1]), f"codes H{d}"))
            mosaics.append(
                (
                    mosaic([column_image(recons[d][:, i], shape) for i in range(len(shown))]),
                    f"depth {d} (rank {depth_row['rank']}): error {100 * depth_row['relative_error']:.1f}%",
                )
            )
        original = mosaic([column_image(collection.X[:, j], shape) for j in shown])
        title = (
            f"{collection.n_columns} {'patches' if collection.patches else 'images'}: "
            f"ranks {','.join(map(str, learned.options.ranks))}, {collection.channels}"
        )
        storage.save_image(
            tmp / "summary.png",
            render.summary_panel(title, original, mosaics, features, coefficients),
        )
        code_table, fields = code_rows(collection.names, learned.Hs[-1], errors[L])
        storage.write_csv(tmp / "codes.csv", code_table, fields)
        learned.seconds["write"] = time.perf_counter() - start
        report["seconds"]["write"] = round(learned.seconds["write"], 4)
        storage.write_json(tmp / "report.json", report)
        page.write_folder_page(tmp, report, name=Path(out).name)
    return report


# --------------------------------------------------------------------------- encode


@dataclass
class EncodeInput:
    """One input of ``encode``: its columns (pixels x k) and how to rebuild its image."""

    input: str
    name: str
    pixels: np.ndarray | None = None  # the image as the model reads it
    columns: np.ndarray | None = None
    suffixes: Sequence[str] = ()
    notes: Sequence[str] = ()
    error: str | None = None


def rebuilt_image(item: EncodeInput, cols: np.ndarray, model: CollectionModel) -> np.ndarray:
    assert item.pixels is not None
    spec = model.patches
    if spec is None:
        return cols[:, 0].reshape(item.pixels.shape)
    return assemble_patches(cols, item.pixels.shape, spec)


def encode_results(
    items: Sequence[EncodeInput], encoded: Encoded | None, model: CollectionModel
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Per input: a JSON row, and the rebuilt pixels of those that succeeded."""
    rows, images = [], {}
    j = 0
    for item in items:
        row: dict[str, Any] = {"input": item.input, "status": "failed", "error": item.error}
        if item.error is None and encoded is not None and item.columns is not None:
            k = item.columns.shape[1]
            pixels = rebuilt_image(item, encoded.reconstruction[:, j : j + k], model)
            assert item.pixels is not None
            errs = pixel_errors(item.pixels, pixels)
            row.update(
                status="ok",
                relative_error=errs["relative_error"],
                psnr=errs["psnr"],
                columns=k,
                code_sparsity=sparsity(encoded.H[:, j : j + k]),
                output=f"reconstructions/{item.name}.png",
                notes=list(item.notes),
            )
            images[item.name] = pixels
            j += k
        rows.append(row)
    return rows, images


def write_encode(
    out: Path,
    model_file: Path,
    model: CollectionModel,
    items: Sequence[EncodeInput],
    encoded: Encoded | None,
    parameters: dict[str, Any],
    seconds: dict[str, float],
    *,
    replace: bool = False,
) -> dict[str, Any]:
    """Write codes (CSV and npz), reconstructions, a summary picture and the report."""
    start = time.perf_counter()
    rows, images = encode_results(items, encoded, model)
    ok = [r for r in rows if r["status"] == "ok"]
    depth = encoded.depth if encoded is not None else parameters.get("depth")
    report: dict[str, Any] = {
        "version": storage.REPORT_VERSION,
        "kind": "encode",
        "model": str(model_file),
        "depth": depth,
        "rank": None if encoded is None else int(encoded.H.shape[0]),
        "image_shape": list(model.meta["image_shape"]),
        "channels": model.meta["channels"],
        "parameters": parameters,
        "versions": storage.versions(),
        "succeeded": len(ok),
        "failed": len(rows) - len(ok),
        "iterations": None if encoded is None else encoded.n_iter,
        "converged": None if encoded is None else encoded.converged,
        "results": rows,
        "errors": [{"input": r["input"], "error": r["error"]} for r in rows if r["error"]],
    }
    with storage.staged_folder(out, replace=replace) as tmp:
        suffixed: list[str] = []
        for item in items:
            if item.error is None:
                suffixed.extend(item.input + s for s in item.suffixes)
        if encoded is not None:
            table, fields = code_rows(suffixed, encoded.H, encoded.relative_errors)
            storage.write_csv(tmp / "codes.csv", table, fields)
            buf = io.BytesIO()
            np.savez_compressed(
                buf,
                H=encoded.H,
                columns=np.asarray(suffixed),
                relative_errors=encoded.relative_errors,
                depth=np.asarray(encoded.depth),
            )
            storage.write_bytes(tmp / "codes.npz", buf.getvalue())
            folder = tmp / "reconstructions"
            folder.mkdir()
            pairs: list[list[tuple[Image.Image, str]]] = []
            for item in items:
                if item.name in images:
                    pic = render.to_pil(np.clip(images[item.name], 0.0, 1.0))
                    storage.save_image(folder / f"{item.name}.png", pic)
                    if len(pairs) < MAX_PAIRS:
                        assert item.pixels is not None
                        err = next(r for r in rows if r["input"] == item.input)["relative_error"]
                        pairs.append(
                            [
                                (render.to_pil(item.pixels), Path(item.input).name),
                                (pic, f"depth {depth}: {100 * err:.1f}%"),
                            ]
                        )
            storage.save_image(
                tmp / "summary.png", pairs_image("inputs and their reconstructions", pairs)
            )
        seconds["write"] = time.perf_counter() - start
        report["seconds"] = {k: round(v, 4) for k, v in seconds.items()}
        storage.write_json(tmp / "report.json", report)
        page.write_folder_page(tmp, report, name=Path(out).name)
    return report


ProgressCallback = Callable[[str], Any]
