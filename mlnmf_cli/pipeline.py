"""From image files to result folders: the decompose and reconstruct pipelines.

This module ties the pieces together (image loading, the engine, pictures,
storage) and is what the command line and the experiments call. It does not
print: progress goes through callbacks and results come back as data.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mlnmf_cli import engine, imageio, render, storage
from mlnmf_cli.engine import _validation, metrics
from mlnmf_cli.errors import InputError, MlnmfError, ParameterError

DTYPES = ("float32", "float64")
DEFAULT_RANKS = (64, 32, 16)

Progress = Callable[[str, int, float], Any]


@dataclass(frozen=True)
class Options:
    """Every choice that shapes a decomposition; recorded in each report and model."""

    ranks: tuple[int, ...] = DEFAULT_RANKS
    method: str = engine.DEFAULTS["method"]
    solver: str = engine.DEFAULTS["solver"]
    init: str = engine.DEFAULTS["init"]
    fine_tune: bool = True
    fine_tune_iter: int = engine.DEFAULTS["fine_tune_iter"]
    normalize: bool = True
    refit: bool = True
    max_iter: int = engine.DEFAULTS["max_iter"]
    tol: float = engine.DEFAULTS["tol"]
    target_error: float | None = None
    dtype: str = "float32"
    seed: int = 0
    channels: str | None = None  # None: "stack" for colour images
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ParameterError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.channels is not None and self.channels not in imageio.CHANNEL_MODES:
            raise ParameterError(
                f"channels must be one of {', '.join(imageio.CHANNEL_MODES)}, got {self.channels!r}"
            )
        if self.max_pixels is not None and self.max_pixels < 1:
            raise ParameterError(f"max_pixels must be a positive number, got {self.max_pixels}")
        # The engine's own rules, checked once before a batch starts; the rank
        # limits that depend on an image's size are checked per image.
        _validation.check_parameters(**self.engine_kwargs())
        _validation.check_ranks(self.ranks, (sys.maxsize, sys.maxsize), self.init, None)

    def engine_kwargs(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "solver": self.solver,
            "init": self.init,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "target_error": self.target_error,
            "seed": self.seed,
            "fine_tune": self.fine_tune,
            "fine_tune_iter": self.fine_tune_iter,
            "normalize": self.normalize,
            "refit": self.refit,
        }

    def channels_for(self, image: imageio.LoadedImage) -> str:
        if self.channels is not None:
            return self.channels
        return "stack" if image.is_color else "gray"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ranks"] = list(self.ranks)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Options:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "ranks" in known:
            known["ranks"] = tuple(int(r) for r in known["ranks"])
        return cls(**known)


@dataclass
class Decomposition:
    """One image decomposed: the engine's results plus the numbers a report needs."""

    image: imageio.LoadedImage
    options: Options
    channels: str
    target: np.ndarray  # the pixels that were decomposed (grey luminance under "gray")
    parts: list[engine.DeepResult]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def depth(self) -> int:
        return len(self.options.ranks)

    def reconstruction(self, depth: int | None = None) -> np.ndarray:
        """Model pixels at ``depth`` (default: deepest), unclipped, float64."""
        return self._model_rows(self.depth if depth is None else depth)(0, self.target.shape[0])

    def _model_rows(self, depth: int) -> Callable[[int, int], np.ndarray]:
        """Rows i:j of :meth:`reconstruction` (float64), computed from the factors alone,
        the product in the factors' dtype."""
        features = [p.effective_features(depth) for p in self.parts]
        coefficients = [p.Hs[depth - 1] for p in self.parts]
        shape = self.target.shape

        def rows(i: int, j: int) -> np.ndarray:
            mats = [
                np.asarray(W[i:j] @ H, dtype=np.float64)
                for W, H in zip(features, coefficients, strict=True)
            ]
            if len(mats) == 1 and len(shape) == 2:
                return mats[0]
            return imageio.from_matrices(mats, self.channels, (mats[0].shape[0], *shape[1:]))

        return rows

    def depth_errors(self) -> list[dict[str, float | int | None]]:
        """Per depth: the model's error, its PSNR, the greedy error and the rank's SVD floor.

        Nothing as large as the image is made for a grey image: the model's
        pixels are compared a block of rows at a time and the floors come from
        :func:`metrics.svd_floors`, which does not copy a float64 matrix.
        """
        norms = self._part_norms()
        floors = [
            metrics.svd_floors(m, [min(r, *m.shape) for r in self.options.ranks])
            for m in self.matrices
        ]
        rows: list[dict[str, float | int | None]] = []
        for d, rank in enumerate(self.options.ranks, start=1):
            rows.append(
                {
                    "depth": d,
                    "rank": rank,
                    **_pixel_errors(self.target, self._model_rows(d)),
                    "greedy_relative_error": _combine_relative(
                        [p.greedy_errors[d - 1] for p in self.parts], norms
                    ),
                    "svd_floor": _combine_relative([f[d - 1] for f in floors], norms),
                }
            )
        return rows

    @property
    def matrices(self) -> list[np.ndarray]:
        """The matrices that were decomposed, one per part (a grey image's pixels, not a copy)."""
        if self.target.ndim == 2:
            return [self.target]
        return imageio.to_matrices(self.target, self.channels)

    def _part_norms(self) -> list[float]:
        return [float(np.linalg.norm(m)) for m in self.matrices]

    def layer_stats(self) -> list[dict[str, Any]]:
        stats = []
        norms = self._part_norms()
        for i, rank in enumerate(self.options.ranks):
            layers = [p.layers[i] for p in self.parts]
            stats.append(
                {
                    "layer": i + 1,
                    "rank": rank,
                    "relative_error": _combine_relative(
                        [p.layer_errors[i] for p in self.parts], norms
                    ),
                    "iterations": int(sum(r.n_iter for r in layers)),
                    "converged": bool(all(r.converged for r in layers)),
                    "sparsity_W": float(
                        np.mean([metrics.hoyer_sparsity(p.Ws[i]) for p in self.parts])
                    ),
                    "sparsity_H": float(
                        np.mean([metrics.hoyer_sparsity(p.Hs[i]) for p in self.parts])
                    ),
                }
            )
        return stats

    def report(self, input_path: str) -> dict[str, Any]:
        depths = self.depth_errors()
        return {
            "version": storage.REPORT_VERSION,
            "input": input_path,
            "image": {
                "height": self.image.size[0],
                "width": self.image.size[1],
                "color": self.image.is_color,
                "format": self.image.format,
                "mode": self.image.mode,
                "bit_depth": self.image.bit_depth,
                "notes": list(self.image.notes),
                # File values shown as black and white; PSNR is against their difference.
                "value_range": list(self.image.value_range),
                "scale": self.image.scale,
                "psnr_peak": self.image.peak,
            },
            "channels": self.channels,
            "parameters": self.options.as_dict(),
            "versions": storage.versions(),
            "relative_error": depths[-1]["relative_error"],
            "psnr": depths[-1]["psnr"],
            "svd_floor": {"rank": depths[-1]["rank"], "relative_error": depths[-1]["svd_floor"]},
            "depths": depths,
            "layers": self.layer_stats(),
            "fine_tune": {
                "enabled": self.options.fine_tune,
                "iterations": int(sum(p.fine_tune_n_iter for p in self.parts)),
                "converged": bool(all(p.converged for p in self.parts)),
            },
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
        }


_BLOCK_ELEMENTS = 1 << 18


def pixel_errors(target: np.ndarray, recon: np.ndarray) -> dict[str, float | None]:
    """Relative error of the model and PSNR of its displayable (clipped) pixels.

    The same numbers as ``metrics.relative_error`` and ``metrics.psnr``, summed in
    float64 over blocks of rows so that no temporary as large as the image is made.
    """
    t, r = target.reshape(target.shape[0], -1), recon.reshape(recon.shape[0], -1)
    if t.shape != r.shape:
        raise ParameterError(f"R must have the shape of X {tuple(t.shape)}, got {tuple(r.shape)}")
    return _pixel_errors(target, lambda i, j: r[i:j])


def _pixel_errors(
    target: np.ndarray, model_rows: Callable[[int, int], np.ndarray]
) -> dict[str, float | None]:
    """:func:`pixel_errors` with the model given as a function of a range of rows."""
    t = target.reshape(target.shape[0], -1)
    err2 = norm2 = clipped2 = 0.0
    step = max(1, _BLOCK_ELEMENTS // max(1, t.shape[1]))
    for i in range(0, t.shape[0], step):
        tb = np.asarray(t[i : i + step], dtype=np.float64)
        rb = np.asarray(model_rows(i, i + step), dtype=np.float64).reshape(tb.shape)
        d = tb - rb
        err2 += float(np.vdot(d, d))
        norm2 += float(np.vdot(tb, tb))
        np.clip(rb, 0.0, 1.0, out=d)
        d -= tb
        clipped2 += float(np.vdot(d, d))
    if not (np.isfinite(err2) and np.isfinite(norm2)):
        raise ParameterError("the model's pixels are not all finite")
    if norm2 == 0.0:
        relative = 0.0 if err2 == 0.0 else float("inf")
    else:
        relative = float(np.sqrt(err2 / norm2))
    mse = clipped2 / max(1, t.size)
    return {
        "relative_error": relative,
        "psnr": None if mse == 0.0 else float(10.0 * np.log10(1.0 / mse)),
    }


def _finite(x: float) -> float | None:
    """JSON has no infinity: a perfect reconstruction's PSNR is reported as null."""
    return float(x) if np.isfinite(x) else None


def _combine_relative(errors: Sequence[float], norms: Sequence[float]) -> float:
    """Relative error of several matrices together from each one's relative error."""
    total = float(np.sqrt(sum(n * n for n in norms)))
    if total == 0.0:
        return float(np.sqrt(np.mean(np.square(errors)))) if errors else 0.0
    return float(np.sqrt(sum((e * n) ** 2 for e, n in zip(errors, norms, strict=True))) / total)


# --------------------------------------------------------------------------- one image


def decompose_image(
    image: imageio.LoadedImage, options: Options, progress: Progress | None = None
) -> Decomposition:
    """Decompose one loaded image with ``options``; pure computation, no files."""
    channels = options.channels_for(image)
    dtype = np.dtype(options.dtype)
    # A grey image's pixels are used as they are (the engine never writes to its
    # input): no float64 copy is made, only the working-dtype matrix.
    if image.pixels.ndim == 2:
        mats = [image.pixels]
    else:
        mats = imageio.to_matrices(image.pixels, channels)
    # What is decomposed is the loaded pixels themselves, except a colour image's
    # luminance: no second float64 copy of a large image stays alive, and the
    # float64 matrices are dropped once converted to the working dtype.
    target = mats[0] if channels == "gray" and image.pixels.ndim == 3 else image.pixels
    mats = [m.astype(dtype, copy=False) for m in mats]
    labels = ["R", "G", "B"] if len(mats) == 3 else [""]
    parts = []
    start = time.perf_counter()
    for label, mat in zip(labels, mats, strict=True):
        callback = None
        if progress is not None:
            prefix = f"{label} " if label else ""

            def callback(stage: str, it: int, err: float, _p: str = prefix) -> Any:
                return progress(_p + stage, it, err)

        parts.append(
            engine.factorize_deep(
                mat.astype(dtype, copy=False),
                options.ranks,
                callback=callback,
                **options.engine_kwargs(),
            )
        )
    seconds = {
        "factorize": time.perf_counter() - start,
        "greedy": sum(p.seconds["greedy"] for p in parts),
        "fine_tune": sum(p.seconds["fine_tune"] for p in parts),
    }
    return Decomposition(image, options, channels, target, parts, seconds)


def _joined(mats: Sequence[np.ndarray], axis: int) -> np.ndarray:
    return mats[0] if len(mats) == 1 else np.concatenate(mats, axis=axis)


def write_result(
    decomposition: Decomposition, folder: Path, input_path: str, *, replace_existing: bool = False
) -> dict[str, Any]:
    """Write every picture, the model and the report into ``folder``, atomically as a whole."""
    start = time.perf_counter()
    d = decomposition
    report = d.report(input_path)
    with storage.staged_folder(folder, replace=replace_existing) as tmp:
        original = imageio.to_pil(d.target)
        storage.save_image(tmp / "original.png", original)
        recons = []
        for depth_row in report["depths"]:
            depth = int(depth_row["depth"])
            # Converted a block of rows at a time: the model is never held in full.
            pic = imageio.to_pil_by_rows(d.target.shape, d._model_rows(depth))
            storage.save_image(tmp / f"reconstruction_depth{depth}.png", pic)
            if depth == d.depth:
                storage.save_image(tmp / "reconstruction.png", pic)
            label = f"depth {depth} (rank {depth_row['rank']}): error {100 * depth_row['relative_error']:.1f}%"
            recons.append((pic, label))
        features, coefficients = [], []
        for layer in range(1, d.depth + 1):
            W = _joined([p.Ws[layer - 1] for p in d.parts], axis=1)
            H = _joined([p.Hs[layer - 1] for p in d.parts], axis=0)
            Weff = _joined([p.effective_features(layer) for p in d.parts], axis=1)
            feat = render.features_image(W)
            coef = render.coefficients_image(H)
            storage.save_image(tmp / f"features_layer{layer}.png", feat)
            storage.save_image(tmp / f"coefficients_layer{layer}.png", coef)
            storage.save_image(tmp / f"features_depth{layer}.png", render.features_image(Weff))
            features.append((feat, f"W{layer} ({W.shape[0]}x{W.shape[1]})"))
            coefficients.append((coef, f"H{layer} ({H.shape[0]}x{H.shape[1]})"))
        title = (
            f"{Path(input_path).name}: ranks {','.join(map(str, d.options.ranks))}, {d.channels}"
        )
        storage.save_image(
            tmp / "summary.png",
            render.summary_panel(title, original, recons, features, coefficients),
        )
        storage.save_model(tmp / "model.npz", model_meta(d), [(p.Ws, p.Hs) for p in d.parts])
        d.seconds["write"] = time.perf_counter() - start
        report["seconds"]["write"] = round(d.seconds["write"], 4)
        storage.write_json(tmp / "report.json", report)
    return report


def model_meta(d: Decomposition) -> dict[str, Any]:
    first = d.parts[0].Ws[0].shape[0], d.parts[0].Hs[0].shape[1]
    return {
        "image_shape": list(d.target.shape),
        "part_shape": list(first),
        "n_parts": len(d.parts),
        "depth": d.depth,
        "channels": d.channels,
        "value_range": [0.0, 1.0],
        "bit_depth": d.image.bit_depth,
        "parameters": d.options.as_dict(),
        "versions": storage.versions(),
    }


# --------------------------------------------------------------------------- reconstruct


def model_path(path: Path) -> Path:
    path = Path(path)
    return path / "model.npz" if path.is_dir() else path


def rebuild(model: storage.SavedModel, depth: int | None = None) -> np.ndarray:
    """Pixels of a saved model at ``depth`` (default deepest), unclipped float64."""
    depth = model.depth if depth is None else depth
    if not 1 <= depth <= model.depth:
        raise ParameterError(f"depth must be between 1 and {model.depth}, got {depth}")
    mats = []
    for Ws, Hs in model.parts:
        M = Ws[0].astype(np.float64)
        for W in Ws[1:depth]:
            M = M @ W
        mats.append(M @ Hs[depth - 1])
    shape = tuple(model.meta["image_shape"])
    try:
        return imageio.from_matrices(mats, str(model.meta.get("channels")), shape)
    except (ValueError, ParameterError) as exc:
        raise InputError(f"model does not match its own image shape {shape} ({exc})") from exc


def compare_to_original(
    pixels: np.ndarray, channels: str, original: Path, max_pixels: int | None = None
) -> dict[str, float | None]:
    image = imageio.load_image(original, max_pixels=max_pixels)
    mats = imageio.to_matrices(image.pixels, channels)
    target = imageio.from_matrices(mats, channels, image.pixels.shape)
    if target.shape != pixels.shape:
        raise InputError(
            f"image is {'x'.join(map(str, target.shape))} but the model rebuilds "
            f"{'x'.join(map(str, pixels.shape))}"
        )
    return pixel_errors(target, pixels)


# --------------------------------------------------------------------------- batches


@dataclass(frozen=True)
class BatchItem:
    """One input of a batch: an image to decompose, or a problem found while listing."""

    path: Path
    name: str = ""
    problem: str | None = None


def _is_image_file(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in imageio.IMAGE_SUFFIXES and not p.name.startswith(".")


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


ROW_FIELDS = (
    "input", "status", "folder", "error", "height", "width", "channels", "ranks",
    "relative_error", "psnr", "svd_floor", "seconds",
)  # fmt: skip


def process_item(
    item: BatchItem,
    options: Options,
    out: Path,
    *,
    force: bool = False,
    skip_existing: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Decompose one batch item into ``out/<name>``; failures come back as a row, not raised."""
    start = time.perf_counter()
    row: dict[str, Any] = {
        "input": str(item.path),
        "status": "failed",
        "folder": None,
        "error": None,
    }
    if item.problem is not None:
        row["error"] = item.problem
        return row
    folder = Path(out) / item.name
    row["folder"] = str(folder)
    if folder.exists() and skip_existing and not force:
        row["status"] = "skipped"
        return row
    try:
        storage.refuse_existing(folder, replace=force)
        t0 = time.perf_counter()
        image = imageio.load_image(item.path, max_pixels=options.max_pixels)
        load_seconds = time.perf_counter() - t0
        decomposition = decompose_image(image, options, progress)
        decomposition.seconds["load"] = load_seconds
        report = write_result(decomposition, folder, str(item.path), replace_existing=force)
    except MlnmfError as exc:
        row["error"] = str(exc)
        return row
    except MemoryError:
        row["error"] = (
            "not enough memory to decompose this image (try smaller ranks or --dtype float32)"
        )
        return row
    return ok_row(item, folder, report, seconds=time.perf_counter() - start)


def ok_row(
    item: BatchItem, folder: Path, report: dict[str, Any], *, seconds: float | None
) -> dict[str, Any]:
    """The summary row of an input whose result folder holds ``report``."""
    return {
        "input": str(item.path),
        "status": "ok",
        "folder": str(folder),
        "error": None,
        "height": report["image"]["height"],
        "width": report["image"]["width"],
        "channels": report["channels"],
        "ranks": ",".join(map(str, report["parameters"]["ranks"])),
        "relative_error": report["relative_error"],
        "psnr": report["psnr"],
        "svd_floor": report["svd_floor"]["relative_error"],
        "seconds": None if seconds is None else round(seconds, 4),
    }


def write_summary(
    out: Path, rows: Sequence[dict[str, Any]], options: Options, *, interrupted: bool = False
) -> dict[str, Any]:
    """Write ``summary.json`` and ``summary.csv`` for a batch and return the JSON envelope."""
    summary = summary_envelope(rows, options, interrupted=interrupted)
    storage.write_json(Path(out) / "summary.json", summary)
    storage.write_csv(Path(out) / "summary.csv", rows, ROW_FIELDS)
    return summary


def summary_envelope(
    rows: Sequence[dict[str, Any]], options: Options, *, interrupted: bool = False
) -> dict[str, Any]:
    count = {s: sum(1 for r in rows if r["status"] == s) for s in ("ok", "failed", "skipped")}
    return {
        "version": storage.REPORT_VERSION,
        "versions": storage.versions(),
        "parameters": options.as_dict(),
        "succeeded": count["ok"],
        "failed": count["failed"],
        "skipped": count["skipped"],
        "interrupted": interrupted,
        "results": list(rows),
        "errors": [
            {"input": r["input"], "error": r["error"]} for r in rows if r["status"] == "failed"
        ],
    }


def cpu_count() -> int:
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
