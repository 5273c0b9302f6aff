"""Pictures of what a decomposition learned, as 8-bit PIL images.

Every function is pure: it takes arrays or images and returns a new RGB
image, which the caller saves.

Factor matrices are drawn one matrix element per pixel block:

* each component (a column of W, a row of H) is divided by its own largest
  absolute value, so weak components are as visible as strong ones; a
  component that is all zero stays zero;
* a matrix without negative values uses a perceptual sequential palette
  (viridis-like: dark purple for 0, yellow for the component's maximum);
  a matrix with any negative value uses a diverging blue-white-red palette
  with 0 at exactly white;
* a side shorter than ``min_size`` is repeated by a whole factor (nearest
  neighbour, never interpolated) until it reaches ``min_size``; longer sides
  are left as they are.

Panels (summary, montage, heatmap) have a white background and labels in
Pillow's built-in font (``ImageFont.load_default(size=...)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mlnmf_cli.errors import ParameterError

__all__ = [
    "coefficients_image",
    "diverging_colors",
    "features_image",
    "heatmap",
    "matrix_image",
    "montage",
    "sequential_colors",
    "summary_panel",
]

_SEQUENTIAL_STOPS = np.array(
    [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ],
    dtype=np.float64,
)
_DIVERGING_STOPS = np.array(
    [
        (5, 48, 97),
        (33, 102, 172),
        (146, 197, 222),
        (255, 255, 255),
        (244, 165, 130),
        (178, 24, 43),
        (103, 0, 31),
    ],
    dtype=np.float64,
)

WHITE = (255, 255, 255)
_TEXT = (20, 20, 20)
_FRAME = (200, 200, 200)
_PAD = 10
_LABEL_SIZE = 14
_TITLE_SIZE = 20
_PICTURE_BOX = (384, 256)
_FACTOR_BOX = (512, 320)
_MAX_LABEL_CHARS = 80


def _interpolate(stops: np.ndarray, positions: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.empty((*values.shape, 3), dtype=np.float64)
    for channel in range(3):
        out[..., channel] = np.interp(values, positions, stops[:, channel])
    return np.rint(out).astype(np.uint8)


def sequential_colors(values: np.ndarray) -> np.ndarray:
    """Map values in ``[0, 1]`` (clipped) to viridis-like RGB, shape ``(..., 3)`` uint8."""
    positions = np.linspace(0.0, 1.0, len(_SEQUENTIAL_STOPS))
    return _interpolate(_SEQUENTIAL_STOPS, positions, np.clip(values, 0.0, 1.0))


def diverging_colors(values: np.ndarray) -> np.ndarray:
    """Map values in ``[-1, 1]`` (clipped) to blue-white-red RGB; 0 is exactly white."""
    positions = np.linspace(-1.0, 1.0, len(_DIVERGING_STOPS))
    return _interpolate(_DIVERGING_STOPS, positions, np.clip(values, -1.0, 1.0))


def _normalised(M: np.ndarray, axis: int) -> np.ndarray:
    """Each slice along ``axis`` divided by its own max |value|; non-finite handled."""
    values = np.asarray(M, dtype=np.float64)
    finite = np.isfinite(values)
    clean = np.where(finite, values, 0.0)
    scale = np.max(np.abs(clean), axis=axis, keepdims=True) if clean.size else np.ones((1, 1))
    scale = np.where(scale > 0, scale, 1.0)
    out = clean / scale
    out[np.isposinf(values)] = 1.0
    out[np.isneginf(values)] = -1.0
    return out


def _whole_factor(side: int, min_size: int) -> int:
    return 1 if side >= min_size else math.ceil(min_size / side)


def matrix_image(M: np.ndarray, *, axis: int, min_size: int = 256) -> Image.Image:
    """Draw a factor matrix, components normalised along ``axis``.

    Parameters
    ----------
    M
        A 2-D array, drawn with its rows as image rows.
    axis
        0 when the components are the columns (each column is scaled by its
        own max |value|), 1 when they are the rows.
    min_size
        Sides shorter than this are repeated by a whole factor until they
        reach it.
    """
    values = np.asarray(M)
    if values.ndim != 2:
        raise ParameterError(f"a factor matrix must be 2-D, got shape {values.shape}")
    if axis not in (0, 1):
        raise ParameterError(f"axis must be 0 or 1, got {axis!r}")
    if min_size < 1:
        raise ParameterError(f"min_size must be at least 1, got {min_size}")
    if values.size == 0:
        rows, cols = max(1, values.shape[0]), max(1, values.shape[1])
        blank = np.full((rows, cols, 3), 255, dtype=np.uint8)
        return _scale_up(blank, min_size)
    normalised = _normalised(values, axis)
    if (normalised < 0).any():
        rgb = diverging_colors(normalised)
    else:
        rgb = sequential_colors(normalised)
    return _scale_up(rgb, min_size)


def _scale_up(rgb: np.ndarray, min_size: int) -> Image.Image:
    rows, cols = rgb.shape[:2]
    rgb = np.repeat(rgb, _whole_factor(rows, min_size), axis=0)
    rgb = np.repeat(rgb, _whole_factor(cols, min_size), axis=1)
    return Image.fromarray(np.ascontiguousarray(rgb))


def features_image(W: np.ndarray, *, min_size: int = 256) -> Image.Image:
    """Draw W (m x r): the components are its columns."""
    return matrix_image(W, axis=0, min_size=min_size)


def coefficients_image(H: np.ndarray, *, min_size: int = 256) -> Image.Image:
    """Draw H (r x n): the components are its rows."""
    return matrix_image(H, axis=1, min_size=min_size)


# --- text and layout -------------------------------------------------------------


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _text_size(text: str, size: int) -> tuple[int, int]:
    """Width and line height of ``text`` in the default font."""
    font = _font(size)
    left, _top, right, _bottom = font.getbbox(text or " ")
    if isinstance(font, ImageFont.FreeTypeFont):
        ascent, descent = font.getmetrics()
        height = ascent + descent
    else:  # pragma: no cover - Pillow without FreeType
        height = font.getbbox("Hg")[3]
    return math.ceil(right - min(left, 0)), int(height)


def _short(text: str, limit: int = _MAX_LABEL_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _draw_text(
    canvas: Image.Image,
    xy: tuple[int, int],
    text: str,
    size: int,
    fill: tuple[int, int, int] = _TEXT,
) -> None:
    ImageDraw.Draw(canvas).text(xy, text, fill=fill, font=_font(size))


def _fit(image: Image.Image, box: tuple[int, int], resample: Image.Resampling) -> Image.Image:
    """Scale ``image`` to fit ``box``: whole-factor enlargement, or reduction."""
    image = image.convert("RGB")
    width, height = image.size
    box_w, box_h = box
    if width <= box_w and height <= box_h:
        factor = max(1, min(box_w // width, box_h // height))
        if factor == 1:
            return image
        return image.resize((width * factor, height * factor), Image.Resampling.NEAREST)
    ratio = min(box_w / width, box_h / height)
    size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    return image.resize(size, resample)


def _labelled_cells(
    items: Sequence[tuple[Image.Image, str]], box: tuple[int, int], resample: Image.Resampling
) -> list[tuple[Image.Image, str]]:
    return [(_fit(image, box, resample), _short(label)) for image, label in items]


def _grid(
    title: str,
    rows: Sequence[Sequence[tuple[Image.Image, str]]],
    *,
    uniform: tuple[int, int] | None = None,
) -> Image.Image:
    """Lay out labelled images row by row, label above each image, on white.

    With ``uniform`` every cell has that (width, height) for its image;
    otherwise cells are as wide as their image or label.
    """
    label_h = _text_size("Hg", _LABEL_SIZE)[1]
    title_w, title_h = _text_size(title, _TITLE_SIZE) if title else (0, 0)
    rows = [row for row in rows if row]

    uniform_w = 0
    if uniform is not None:
        labels = [_text_size(label, _LABEL_SIZE)[0] for row in rows for _, label in row]
        uniform_w = max(uniform[0], *labels, 1)

    layout: list[list[tuple[int, int, Image.Image, str]]] = []
    row_heights: list[int] = []
    panel_w = title_w + 2 * _PAD
    for row in rows:
        x = _PAD
        placed = []
        for image, label in row:
            if uniform is not None:
                width = uniform_w
                offset = (width - image.width) // 2
            else:
                width = max(image.width, _text_size(label, _LABEL_SIZE)[0])
                offset = 0
            placed.append((x, offset, image, label))
            x += width + _PAD
        layout.append(placed)
        image_h = uniform[1] if uniform is not None else max(image.height for image, _ in row)
        row_heights.append(label_h + 4 + image_h)
        panel_w = max(panel_w, x)

    top = _PAD + (title_h + _PAD if title else 0)
    panel_h = top + sum(h + _PAD for h in row_heights)
    canvas = Image.new("RGB", (max(1, panel_w), max(1, panel_h)), WHITE)
    draw = ImageDraw.Draw(canvas)
    if title:
        _draw_text(canvas, (_PAD, _PAD), title, _TITLE_SIZE)
    y = top
    for placed, row_h in zip(layout, row_heights, strict=True):
        for x, offset, image, label in placed:
            _draw_text(canvas, (x, y), label, _LABEL_SIZE)
            left, top_ = x + offset, y + label_h + 4
            canvas.paste(image, (left, top_))
            draw.rectangle(
                (left - 1, top_ - 1, left + image.width, top_ + image.height), outline=_FRAME
            )
        y += row_h + _PAD
    return canvas


def summary_panel(
    title: str,
    original: Image.Image,
    reconstructions: Sequence[tuple[Image.Image, str]],
    features: Sequence[tuple[Image.Image, str]],
    coefficients: Sequence[tuple[Image.Image, str]],
) -> Image.Image:
    """One figure for one decomposition.

    First row: the original then each reconstruction (its label should carry
    the depth and error). Second row: the features of each layer. Third row:
    the coefficients of each layer. Pictures are reduced to fit 384 x 256
    (area average) and factor matrices to fit 512 x 320 (nearest neighbour,
    so each element keeps its colour); tiny ones are enlarged by a whole
    factor.
    """
    pictures = [(original, "original"), *reconstructions]
    return _grid(
        _short(title, 160),
        [
            _labelled_cells(pictures, _PICTURE_BOX, Image.Resampling.BOX),
            _labelled_cells(features, _FACTOR_BOX, Image.Resampling.NEAREST),
            _labelled_cells(coefficients, _FACTOR_BOX, Image.Resampling.NEAREST),
        ],
    )


def montage(
    rows: Sequence[Sequence[tuple[Image.Image, str]]], *, title: str = "", cell: int = 192
) -> Image.Image:
    """A grid with one row per input (e.g. original, features, coefficients,
    reconstruction), every picture fitted into a ``cell`` x ``cell`` square
    and labelled above.
    """
    if cell < 1:
        raise ParameterError(f"cell must be at least 1, got {cell}")
    box = (cell, cell)
    fitted = [_labelled_cells(row, box, Image.Resampling.NEAREST) for row in rows]
    return _grid(_short(title, 160), fitted, uniform=box)


def heatmap(
    values: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str,
    *,
    vmin: float = 0.0,
    vmax: float = 1.0,
) -> Image.Image:
    """A table of numbers as coloured cells with the value written in each (2 decimals).

    Colours follow the sequential palette from ``vmin`` to ``vmax``; NaN
    cells are light grey and say "n/a". Tables with more than 60 rows or
    columns are drawn as small cells without numbers.
    """
    table = np.asarray(values, dtype=np.float64)
    if table.ndim != 2 or table.shape != (len(row_labels), len(col_labels)):
        raise ParameterError(
            f"heatmap values of shape {table.shape} do not match "
            f"{len(row_labels)} row labels and {len(col_labels)} column labels"
        )
    if not (math.isfinite(vmin) and math.isfinite(vmax)) or vmax <= vmin:
        raise ParameterError(f"heatmap needs finite vmin < vmax, got {vmin}, {vmax}")
    n_rows, n_cols = table.shape
    rows_text = [_short(label, 40) for label in row_labels]
    cols_text = [_short(label, 24) for label in col_labels]
    written = max(n_rows, n_cols) <= 60
    line_h = _text_size("Hg", _LABEL_SIZE)[1]

    if written:
        cell_w = (
            max(
                _text_size("-0.00", _LABEL_SIZE)[0],
                *(_text_size(t, _LABEL_SIZE)[0] for t in cols_text),
                1,
            )
            + 12
        )
        cell_h = line_h + 12
    else:
        cell_w = cell_h = max(2, min(12, 2400 // max(n_rows, n_cols, 1)))
    label_w = max((_text_size(t, _LABEL_SIZE)[0] for t in rows_text), default=0) if written else 0
    title_w, title_h = _text_size(title, _TITLE_SIZE) if title else (0, 0)
    header_h = line_h + 6 if written else 0

    left = _PAD + (label_w + _PAD if label_w else 0)
    top = _PAD + (title_h + _PAD if title else 0) + header_h
    width = max(left + n_cols * cell_w + _PAD, title_w + 2 * _PAD)
    height = top + n_rows * cell_h + _PAD
    canvas = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(canvas)
    if title:
        _draw_text(canvas, (_PAD, _PAD), title, _TITLE_SIZE)

    finite = np.isfinite(table)
    scaled = np.where(finite, (table - vmin) / (vmax - vmin), 0.0)
    colours = sequential_colors(scaled)
    colours[~finite] = (225, 225, 225)
    grid = np.repeat(np.repeat(colours, cell_h, axis=0), cell_w, axis=1)
    canvas.paste(Image.fromarray(np.ascontiguousarray(grid)), (left, top))
    if not written:
        return canvas

    font = _font(_LABEL_SIZE)
    for j, text in enumerate(cols_text):
        tw = _text_size(text, _LABEL_SIZE)[0]
        draw.text(
            (left + j * cell_w + (cell_w - tw) // 2, top - header_h), text, fill=_TEXT, font=font
        )
    for i, text in enumerate(rows_text):
        draw.text((_PAD, top + i * cell_h + 6), text, fill=_TEXT, font=font)
        for j in range(n_cols):
            value = table[i, j]
            text_ij = f"{value:.2f}" if finite[i, j] else "n/a"
            r, g, b = (int(c) for c in colours[i, j])
            ink = _TEXT if 0.299 * r + 0.587 * g + 0.114 * b > 140 else WHITE
            tw = _text_size(text_ij, _LABEL_SIZE)[0]
            x = left + j * cell_w + (cell_w - tw) // 2
            draw.text((x, top + i * cell_h + 6), text_ij, fill=ink, font=font)
    return canvas


# --------------------------------------------------------------------------- pixels

_BLOCK_ELEMENTS = 1 << 18


def to_pil(pixels: np.ndarray) -> Image.Image:
    """Floats in ``[0, 1]`` to an 8-bit ``L`` or ``RGB`` image (clipped and rounded).

    Converted in float64 a block of rows at a time (NaN to 0, +inf to 1), so the
    only full-size array made is the 8-bit result, whatever ``pixels``' dtype.
    """
    values = np.asarray(pixels)
    return to_pil_by_rows(values.shape, lambda i, j: values[i:j])


def to_pil_by_rows(shape: tuple[int, ...], rows: Callable[[int, int], np.ndarray]) -> Image.Image:
    """:func:`to_pil` of an image of ``shape`` given as ``rows(i, j)`` = its rows i to j.

    The image is never held as floats in full: each block of rows is asked for,
    converted to 8 bits and dropped.
    """
    shape = tuple(int(x) for x in shape)
    if not (len(shape) == 2 or (len(shape) == 3 and shape[2] == 3)):
        raise ParameterError(f"pixels must have shape (H, W) or (H, W, 3), got {shape}")
    data = np.empty(shape, dtype=np.uint8)
    step = max(1, _BLOCK_ELEMENTS // max(1, int(np.prod(shape[1:]))))
    for i in range(0, shape[0], step):
        target = data[i : i + step]
        block = np.array(rows(i, i + step), dtype=np.float64).reshape(target.shape)
        np.nan_to_num(block, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
        np.clip(block, 0.0, 1.0, out=block)
        block *= 255.0
        np.rint(block, out=block)
        np.copyto(target, block, casting="unsafe")
    return Image.fromarray(data)
