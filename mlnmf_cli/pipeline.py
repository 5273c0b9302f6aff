"""From image files to result folders: the decompose and reconstruct pipelines.

This module ties the pieces together (image loading, the engine, pictures,
storage) and is what the command line and the experiments call. It does not
print: progress goes through callbacks and results come back as data.
"""

from __future__ import annotations

import io
import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlnmf_cli import engine, imageio, render, storage
from mlnmf_cli.engine import metrics
from mlnmf_cli.errors import InputError, OutputError, ParameterError, about
from mlnmf_cli.files import open_regular_file
from mlnmf_cli.options import DEFAULT_RANKS, DTYPES, Options

__all__ = [
    "DEFAULT_RANKS",
    "DTYPES",
    "Decomposition",
    "Options",
    "Progress",
    "Rebuilt",
    "compare_to_original",
    "decompose_image",
    "model_path",
    "pixel_errors",
    "rebuild",
    "reconstruct",
    "write_result",
]

Progress = Callable[[str, int, float], Any]


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

    def depth_rows(self) -> list[dict[str, float | int | None]]:
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
        depths = self.depth_rows()
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
    options.check_fits(mats[0].shape, image.size)  # said in --ranks words, before any work
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
                options=options.engine,
                callback=callback,
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
        original = render.to_pil(d.target)
        storage.save_image(tmp / "original.png", original)
        recons = []
        for depth_row in report["depths"]:
            depth = int(depth_row["depth"])
            # Converted a block of rows at a time: the model is never held in full.
            pic = render.to_pil_by_rows(d.target.shape, d._model_rows(depth))
            storage.save_image(tmp / f"reconstruction_depth{depth}.png", pic)
            if depth == d.depth:
                storage.save_image(tmp / "reconstruction.png", pic)
            recons.append(pic)
        for layer in range(1, d.depth + 1):
            W = _joined([p.Ws[layer - 1] for p in d.parts], axis=1)
            H = _joined([p.Hs[layer - 1] for p in d.parts], axis=0)
            Weff = _joined([p.effective_features(layer) for p in d.parts], axis=1)
            feat = render.features_image(W, min_size=_picture_side(W))
            coef = render.coefficients_image(H, min_size=_picture_side(H))
            storage.save_image(tmp / f"features_layer{layer}.png", feat)
            storage.save_image(tmp / f"coefficients_layer{layer}.png", coef)
            storage.save_image(
                tmp / f"features_depth{layer}.png",
                render.features_image(Weff, min_size=_picture_side(Weff)),
            )
        title = (
            f"{Path(input_path).name}: ranks {','.join(map(str, d.options.ranks))}, {d.channels}"
        )
        storage.save_image(
            tmp / "summary.png",
            render.decomposition_figure(
                title,
                original,
                recons,
                report["depths"],
                [(p.Ws, p.Hs) for p in d.parts],
                channels=d.channels,
            ),
        )
        storage.save_model(tmp / "model.npz", model_meta(d), d.parts)
        d.seconds["write"] = time.perf_counter() - start
        report["seconds"]["write"] = round(d.seconds["write"], 4)
        storage.write_json(tmp / "report.json", report)
    return report


_PICTURE_SIDE = 256


def _picture_side(M: np.ndarray) -> int:
    """The shortest side a factor's picture is stretched to (whole repeats): 256 pixels,
    less for a long thin factor (a 1 x 2,000,000 H would become 256 x 2,000,000 RGB),
    so that no picture has more than four times the factor's elements (or 2 x 256^2)."""
    longest = max(1, *M.shape)
    budget = max(2 * _PICTURE_SIDE * _PICTURE_SIDE, 4 * M.size)
    return max(1, min(_PICTURE_SIDE, budget // longest))


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
    """``path``, or the model.npz inside it when it is a folder (a path that cannot be
    examined is returned as it is: loading it names the problem)."""
    path = Path(path)
    try:
        is_dir = stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        is_dir = False
    return path / "model.npz" if is_dir else path


def rebuild(model: storage.SavedModel, depth: int | None = None) -> np.ndarray:
    """Pixels of a saved model at ``depth`` (default deepest), unclipped float64."""
    depth = model.depth if depth is None else depth
    mats = [part.reconstruct(depth, dtype=np.float64) for part in model.parts]
    shape = tuple(model.meta["image_shape"])
    try:
        return imageio.from_matrices(mats, str(model.meta.get("channels")), shape)
    except (ValueError, ParameterError) as exc:
        raise InputError(f"model does not match its own image shape {shape} ({exc})") from exc


def compare_to_original(
    pixels: np.ndarray, channels: str, original: Path, max_pixels: int | None = None
) -> dict[str, float | None]:
    open_regular_file(original, "an image file").close()  # a FIFO would block the loader
    image = imageio.load_image(original, max_pixels=max_pixels)
    mats = imageio.to_matrices(image.pixels, channels)
    target = imageio.from_matrices(mats, channels, image.pixels.shape)
    if target.shape != pixels.shape:
        raise InputError(
            f"image is {'x'.join(map(str, target.shape))} but the model rebuilds "
            f"{'x'.join(map(str, pixels.shape))}"
        )
    return pixel_errors(target, pixels)


@dataclass(frozen=True)
class Rebuilt:
    """What :func:`reconstruct` wrote: ``depth`` of the model's ``model_depth`` layers,
    with ``bits`` per sample, and with an original image its ``errors`` (relative
    error and PSNR); ``note``: what the user should know about the file (fewer bits
    than the original had)."""

    model: Path
    depth: int
    model_depth: int
    output: Path
    errors: dict[str, float | None] | None = None
    bits: int = 8
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "model": str(self.model),
            "depth": self.depth,
            "output": str(self.output),
            "bits": self.bits,
        }
        return {**d, **(self.errors or {})}


IMAGE_FORMATS = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
    ".bmp": "BMP", ".webp": "WEBP",
}  # fmt: skip
"""The formats :func:`reconstruct` writes, by file extension."""
SIXTEEN_BITS = frozenset({"PNG", "TIFF"})
"""The formats Pillow writes with 16 bits per sample (grey images only)."""
_SAVE_ARGS: dict[str, dict[str, Any]] = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}}


def image_format(path: Path) -> str:
    """The format of the image file ``path`` is to be, from its extension, or a
    :class:`ParameterError` listing the extensions that work."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_FORMATS:
        return IMAGE_FORMATS[suffix]
    what = f"extension {Path(path).suffix!r}" if suffix else "no extension"
    raise ParameterError(
        f"{path}: cannot write an image with {what} (use one of {', '.join(IMAGE_FORMATS)})"
    )


def encode_image(pixels: np.ndarray, fmt: str, bits: int) -> bytes:
    """Pixels in ``[0, 1]`` as the bytes of an image file of format ``fmt``; ``bits``
    16 (grey PNG and TIFF only) or 8."""
    from PIL import Image

    if bits == 16:
        values = np.rint(np.clip(pixels, 0.0, 1.0) * 65535.0).astype(np.uint16)
        picture = Image.fromarray(values)
    else:
        picture = render.to_pil(pixels)
    buf = io.BytesIO()
    picture.save(buf, format=fmt, **_SAVE_ARGS.get(fmt, {}))
    return buf.getvalue()


def _output_bits(saved: storage.SavedModel, pixels: np.ndarray, fmt: str) -> tuple[int, str | None]:
    """Bits per sample for the rebuilt image (16 when the original had more than 8 and
    the format holds them) and a note when bits are lost."""
    original = int(saved.meta.get("bit_depth") or 8)
    if original <= 8:
        return 8, None
    if fmt in SIXTEEN_BITS and pixels.ndim == 2:
        return 16, None
    where = f"a colour {fmt}" if fmt in SIXTEEN_BITS else fmt
    return 8, f"8 bits per sample, the most mlnmf writes in {where} (the original had {original})"


def reconstruct(
    model: Path,
    depth: int | None = None,
    out: Path | None = None,
    original: Path | None = None,
    *,
    force: bool = False,
    max_pixels: int | None = None,
) -> Rebuilt:
    """Rebuild the image of a saved model (a model.npz or a result folder) into an image file.

    ``out`` defaults to ``rebuilt_depth{d}.png`` beside the model and is never
    replaced unless ``force``; its extension picks the format (:data:`IMAGE_FORMATS`;
    16 bits per sample where the format allows it and the original had them).
    With ``original`` the result also holds the relative error and PSNR against
    that image. Errors name the file at fault; nothing is written on an error.
    """
    fmt = image_format(out) if out is not None else "PNG"
    path = model_path(model)
    with about(path):
        saved = storage.load_model(path, max_pixels=max_pixels)
        d = saved.depth if depth is None else depth
        layers = f"{saved.depth} layer" + ("" if saved.depth == 1 else "s")
        if isinstance(d, int) and d > saved.depth:
            raise ParameterError(
                f"--depth {d} is deeper than the model, which has {layers} "
                f"(try --depth {saved.depth})"
            )
        if not isinstance(d, int) or d < 1:
            raise ParameterError(f"--depth {d!r} is not a whole number from 1 to {saved.depth}")
        pixels = rebuild(saved, d)
    target = Path(out) if out is not None else path.parent / f"rebuilt_depth{d}.png"
    try:
        exists = os.path.lexists(target) or target.exists()
    except OSError as exc:
        raise OutputError(f"{target}: cannot write ({exc.strerror or exc})") from exc
    if exists and not force:
        raise OutputError(f"{target}: already exists (use --force to replace it)")
    errors = None
    if original is not None:
        with about(original):
            errors = compare_to_original(pixels, saved.meta["channels"], original, max_pixels)
    bits, note = _output_bits(saved, pixels, fmt)
    try:
        storage.write_bytes(target, encode_image(pixels, fmt, bits))
    except OSError as exc:
        raise OutputError(f"{target}: cannot write ({exc.strerror or exc})") from exc
    return Rebuilt(path, d, saved.depth, target, errors, bits, note)
