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

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mlnmf_cli.errors import ParameterError

__all__ = [
    "coefficients_image",
    "component_energies",
    "component_orders",
    "decomposition_figure",
    "diverging_colors",
    "features_image",
    "heatmap",
    "matrix_image",
    "montage",
    "sequential_colors",
    "sorted_factors",
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
    # uint8 output filled a channel at a time: no float64 copy with three channels.
    out = np.empty((*values.shape, 3), dtype=np.uint8)
    for channel in range(3):
        out[..., channel] = np.rint(np.interp(values, positions, stops[:, channel]))
    return out


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


@lru_cache(maxsize=4096)
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
    # Undecodable bytes in a file name (lone surrogates) have no glyph: shown as "?".
    text = str(text).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = " ".join(text.replace("\ufffd", "?").split())
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


# --- the decomposition figure ------------------------------------------------------
#
# summary_panel above draws factor pictures made elsewhere; decomposition_figure
# draws the factors itself, so that it can sort them, keep their aspect and show
# their scale.

WRAP_ASPECT = 4.0
"""A picture whose long side is more than this many times its short side is wrapped."""

_FIGURE_PICTURE = 256  # pictures (after wrapping) fit a square of this side
_COMPONENT_SPAN = 256  # the longest component axis is drawn about this long...
_MAX_SPAN = 512  # ...and never longer than this
_MAX_CELL = 8  # pixels per component at most
_MAX_ENLARGE = 32  # small pictures are enlarged by a whole factor up to this
_GAP = 4  # white gap between channel blocks and between wrapped pieces
_BAR_WIDTH = 48
_LEGEND_WIDTHS = (220, 300, 400, 520)
_NOTE_SIZE = 12
_NOT_APPLICABLE = (225, 225, 225)
_BAR = (90, 90, 90)
_CHANNEL_NAMES = ("R", "G", "B")


def component_energies(W: np.ndarray, H: np.ndarray) -> np.ndarray:
    """Energy of each component of ``W @ H``: norm of W's column k times norm of H's row k."""
    W, H = np.asarray(W, dtype=np.float64), np.asarray(H, dtype=np.float64)
    if W.ndim != 2 or H.ndim != 2 or W.shape[1] != H.shape[0]:
        raise ParameterError(f"W {W.shape} and H {H.shape} do not make a product W @ H")
    W, H = np.nan_to_num(W, posinf=0.0, neginf=0.0), np.nan_to_num(H, posinf=0.0, neginf=0.0)
    return np.linalg.norm(W, axis=0) * np.linalg.norm(H, axis=1)


def component_orders(Ws: Sequence[np.ndarray], Hs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """For each layer, its components' indices strongest first (ties keep the engine's order)."""
    return [
        np.argsort(-component_energies(W, H), kind="stable") for W, H in zip(Ws, Hs, strict=True)
    ]


def sorted_factors(
    Ws: Sequence[np.ndarray], Hs: Sequence[np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The factors with every layer's components in order of energy, strongest first.

    Layer l's order permutes W_l's columns and H_l's rows, and W_(l+1)'s rows,
    which stand for layer l's components: every product ``W_1 ... W_d H_d`` is
    unchanged. The arrays given are not modified.
    """
    orders = component_orders(Ws, Hs)
    sorted_Ws, sorted_Hs = [], []
    previous: np.ndarray | None = None
    for W, H, order in zip(Ws, Hs, orders, strict=True):
        W = np.asarray(W)
        if previous is not None:
            W = W[previous]
        sorted_Ws.append(W[:, order])
        sorted_Hs.append(np.asarray(H)[order])
        previous = order
    return sorted_Ws, sorted_Hs


def _resample(values: np.ndarray, axis: int, length: int) -> np.ndarray:
    """``values`` drawn ``length`` long along ``axis``: repeated (nearest) when enlarged,
    each output pixel the mean of the input it covers when reduced."""
    n = values.shape[axis]
    length = max(1, int(length))
    if length == n or n == 0:
        return values
    if length > n:
        return np.take(values, (np.arange(length) * n) // length, axis=axis)
    moved = np.moveaxis(values, axis, 0)
    total = np.concatenate([np.zeros((1, *moved.shape[1:])), np.cumsum(moved, axis=0)])
    edges = np.linspace(0.0, n, length + 1)
    k = np.minimum(np.floor(edges).astype(int), n - 1)
    frac = (edges - k).reshape(-1, *([1] * (moved.ndim - 1)))
    at = total[k] + frac * (total[k + 1] - total[k])
    return np.moveaxis(np.diff(at, axis=0) * (length / n), 0, axis)


@dataclass(frozen=True)
class _Geometry:
    """How an m x n picture is drawn: ``scale`` drawn pixels per pixel, then cut into
    ``pieces`` along its long side (``axis``: 1 for a wide picture, 0 for a tall one)."""

    rows: int
    cols: int
    pieces: int
    axis: int
    scale: float


def _geometry(m: int, n: int, box: int = _FIGURE_PICTURE) -> _Geometry:
    m, n = max(1, m), max(1, n)
    axis = 1 if n >= m else 0
    long, short = (n, m) if axis == 1 else (m, n)
    pieces = 1 if long <= WRAP_ASPECT * short else math.ceil(math.sqrt(long / (2 * short)))
    fit = min(box / math.ceil(long / pieces), box / (short * pieces))
    scale = float(min(_MAX_ENLARGE, math.floor(fit))) if fit >= 1 else fit
    return _Geometry(max(1, round(m * scale)), max(1, round(n * scale)), pieces, axis, scale)


def _wrap(rgb: np.ndarray, pieces: int, axis: int) -> np.ndarray:
    """Cut ``rgb`` into ``pieces`` along ``axis`` and lay them across the other axis,
    white gaps between them (a wide picture's pieces one under the other)."""
    if pieces <= 1:
        return rgb
    bounds = np.linspace(0, rgb.shape[axis], pieces + 1).round().astype(int)
    longest = int(np.max(np.diff(bounds)))
    across = 1 - axis
    laid: list[np.ndarray] = []
    for a, b in itertools.pairwise(bounds):
        piece = np.take(rgb, np.arange(a, b), axis=axis)
        pad_shape = list(piece.shape)
        pad_shape[axis] = longest - (b - a)
        if laid:
            gap_shape = list(piece.shape)
            gap_shape[axis] = longest
            gap_shape[across] = _GAP
            laid.append(np.full(gap_shape, 255, dtype=np.uint8))
        laid.append(np.concatenate([piece, np.full(pad_shape, 255, dtype=np.uint8)], axis=axis))
    return np.concatenate(laid, axis=across)


def _picture(image: Image.Image, geometry: _Geometry) -> np.ndarray:
    size = (geometry.cols, geometry.rows)
    if size != image.size:  # resized first: a large picture is never copied whole
        reduce = size[0] < image.width or size[1] < image.height
        image = image.resize(size, Image.Resampling.BOX if reduce else Image.Resampling.NEAREST)
    return _wrap(np.asarray(image.convert("RGB")), geometry.pieces, geometry.axis)


def _scale_of(blocks: Sequence[Sequence[np.ndarray | None]]) -> tuple[float, bool]:
    """A matrix's shared colour scale: its largest finite |value|, and whether any is negative."""
    largest, negative = 0.0, False
    for row in blocks:
        for block in row:
            if block is None or block.size == 0:
                continue
            finite = block[np.isfinite(block)]
            if finite.size:
                largest = max(largest, float(np.max(np.abs(finite))))
                negative = negative or bool(np.any(finite < 0))
    return (largest if largest > 0 else 1.0), negative


def _colour(values: np.ndarray, vmax: float, diverging: bool) -> np.ndarray:
    clean = np.nan_to_num(values, nan=0.0, posinf=vmax, neginf=-vmax) / vmax
    return diverging_colors(clean) if diverging else sequential_colors(clean)


def _join(parts: Sequence[np.ndarray], axis: int) -> np.ndarray:
    """Arrays side by side (``axis`` 1) or one under the other (0), white gaps between."""
    laid: list[np.ndarray] = []
    for part in parts:
        if laid:
            shape = list(part.shape)
            shape[axis] = _GAP
            laid.append(np.full(shape, 255, dtype=np.uint8))
        laid.append(part)
    return np.concatenate(laid, axis=axis)


def _blocks_image(
    blocks: Sequence[Sequence[np.ndarray | None]],
    rows_px: Sequence[int],
    cols_px: Sequence[int],
) -> tuple[np.ndarray, float, bool]:
    """A matrix made of blocks (None: no such values, drawn light grey) on one colour scale."""
    vmax, diverging = _scale_of(blocks)
    band = []
    for row, height in zip(blocks, rows_px, strict=True):
        drawn = []
        for block, width in zip(row, cols_px, strict=True):
            if block is None:
                drawn.append(np.full((height, width, 3), _NOT_APPLICABLE, dtype=np.uint8))
            else:
                values = np.asarray(block, dtype=np.float64)
                values = _resample(_resample(values, 0, height), 1, width)
                drawn.append(_colour(values, vmax, diverging))
        band.append(_join(drawn, axis=1))
    return _join(band, axis=0), vmax, diverging


def _energy_bars(energies: Sequence[np.ndarray], rows_px: Sequence[int]) -> np.ndarray:
    """One horizontal bar per component, as long as its share of the largest energy,
    aligned with the rows of H drawn ``rows_px`` high per channel block."""
    top = max((float(np.max(e)) for e in energies if e.size), default=0.0) or 1.0
    groups = []
    for e, height in zip(energies, rows_px, strict=True):
        per_row = _resample(np.asarray(e, dtype=np.float64) / top, 0, height)
        lengths = np.rint(np.clip(per_row, 0.0, 1.0) * _BAR_WIDTH).astype(int)
        bars = np.full((height, _BAR_WIDTH, 3), 255, dtype=np.uint8)
        bars[np.arange(_BAR_WIDTH)[None, :] < lengths[:, None]] = _BAR
        bars[:, 0] = _FRAME
        groups.append(bars)
    return _join(groups, axis=0)


def _colour_bar(vmax: float, diverging: bool, width: int = 120) -> Image.Image:
    """A colour bar with its end values (and 0 in the middle when diverging)."""
    low = -vmax if diverging else 0.0
    ramp = np.linspace(low, vmax, width)[None, :].repeat(10, axis=0)
    ticks = [(0, _number(low)), (width - 1, _number(vmax))]
    if diverging:
        ticks.insert(1, (width // 2, "0"))
    text_h = _text_size("0", _NOTE_SIZE)[1]
    widths = [_text_size(t, _NOTE_SIZE)[0] for _, t in ticks]
    full_w = width + widths[-1]
    canvas = Image.new("RGB", (full_w, 12 + text_h), WHITE)
    canvas.paste(Image.fromarray(_colour(ramp, vmax, diverging)), (0, 0))
    for (x, text), w in zip(ticks, widths, strict=True):
        left = 0 if x == 0 else min(full_w - w, x - w // 2)
        _draw_text(canvas, (left, 11), text, _NOTE_SIZE)
    return canvas


def _number(x: float) -> str:
    return "0" if x == 0 else f"{x:.3g}"


def _cell(
    image: Image.Image | np.ndarray,
    lines: Sequence[str],
    footer: Image.Image | None = None,
) -> Image.Image:
    """``image`` framed, its label lines above (the first one larger) and ``footer`` below."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.ascontiguousarray(image))
    texts = [(_short(t), _LABEL_SIZE if i == 0 else _NOTE_SIZE) for i, t in enumerate(lines)]
    heights = [_text_size(t, s)[1] for t, s in texts]
    width = max([image.width + 2, *(_text_size(t, s)[0] for t, s in texts)])
    if footer is not None:
        width = max(width, footer.width)
    height = sum(heights) + 4 + image.height + 2 + (footer.height + 4 if footer else 0)
    canvas = Image.new("RGB", (width, height), WHITE)
    y = 0
    for (text, size), h in zip(texts, heights, strict=True):
        _draw_text(canvas, (0, y), text, size)
        y += h
    y += 4
    canvas.paste(image, (1, y + 1))
    ImageDraw.Draw(canvas).rectangle((0, y, image.width + 1, y + image.height + 1), outline=_FRAME)
    if footer is not None:
        canvas.paste(footer, (0, y + image.height + 6))
    return canvas


def _wrapped(paragraphs: Sequence[str], width: int, size: int = _NOTE_SIZE) -> tuple[str, ...]:
    """Paragraphs broken into lines about ``width`` pixels wide (a long word stays whole);
    words are measured one by one, so that trying several widths stays cheap."""
    space = _text_size("a b", size)[0] - _text_size("ab", size)[0]
    lines: list[str] = []
    for paragraph in paragraphs:
        line, used = "", 0
        for word in paragraph.split():
            word_w = _text_size(word, size)[0]
            if line and used + space + word_w > width:
                lines.append(line)
                line, used = word, word_w
            else:
                line, used = (f"{line} {word}", used + space + word_w) if line else (word, word_w)
        lines.append(line)
    return tuple(lines)


def _text_block_size(lines: Sequence[str], size: int = _NOTE_SIZE) -> tuple[int, int]:
    width = max((_text_size(t, size)[0] for t in lines), default=1)
    return max(1, width), max(1, _text_size("Hg", size)[1] * len(lines))


def _text_block(lines: Sequence[str], size: int = _NOTE_SIZE) -> Image.Image:
    line_h = _text_size("Hg", size)[1]
    canvas = Image.new("RGB", _text_block_size(lines, size), WHITE)
    for i, text in enumerate(lines):
        _draw_text(canvas, (0, i * line_h), text, size)
    return canvas


def _arrange(cells: Sequence[Image.Image], axis: int) -> Image.Image:
    """Cells side by side (``axis`` 1, top-aligned) or one under the other (0), _PAD apart."""
    cells = [c for c in cells if c.width > 1 or c.height > 1]
    along = [c.size[1 - axis] for c in cells]  # width when side by side
    across = [c.size[axis] for c in cells]
    length = sum(along) + _PAD * max(0, len(cells) - 1)
    size = (length, max(across, default=1)) if axis == 1 else (max(across, default=1), length)
    canvas = Image.new("RGB", (max(1, size[0]), max(1, size[1])), WHITE)
    at = 0
    for cell, step in zip(cells, along, strict=True):
        canvas.paste(cell, (at, 0) if axis == 1 else (0, at))
        at += step + _PAD
    return canvas


def _skyline(sizes: Sequence[tuple[int, int]], width: int) -> tuple[list[tuple[int, int]], int]:
    """Where cells of ``sizes`` (width, height) go, in order, each where it sits highest
    (then leftmost) within ``width``; and the height used."""
    skyline = np.zeros(width, dtype=np.int64)
    spots = []
    for cell_w, cell_h in sizes:
        span = min(width, cell_w + _PAD)
        tops = np.lib.stride_tricks.sliding_window_view(skyline, span).max(axis=1)
        x = int(np.argmin(tops))
        y = int(tops[x])
        spots.append((x, y))
        skyline[x : x + span] = y + cell_h + _PAD
    return spots, max(1, int(skyline.max()) - _PAD)


def _pack(
    arrangements: Sequence[Sequence[Image.Image | tuple[str, ...]]], width: int
) -> Image.Image:
    """The arrangement of cells (each a list in reading order; a tuple of strings is a text
    block, drawn only if chosen) that packs lowest within ``width`` (or the widest cell):
    short cells fill the space beside tall ones."""

    def size(cell: Image.Image | tuple[str, ...]) -> tuple[int, int]:
        return cell.size if isinstance(cell, Image.Image) else _text_block_size(cell)

    width = max([width, *(size(c)[0] for cells in arrangements for c in cells)])
    best = min(
        ((cells, *_skyline([size(c) for c in cells], width)) for cells in arrangements),
        key=lambda found: found[2],
    )
    cells, spots, height = best
    canvas = Image.new("RGB", (width, height), WHITE)
    for cell, spot in zip(cells, spots, strict=True):
        canvas.paste(cell if isinstance(cell, Image.Image) else _text_block(cell), spot)
    return canvas


def _framed(title: str, body: Image.Image) -> Image.Image:
    """``body`` under ``title`` with a white margin."""
    title_w, title_h = _text_size(title, _TITLE_SIZE) if title else (0, 0)
    top = _PAD + (title_h + _PAD if title else 0)
    canvas = Image.new(
        "RGB", (max(body.width, title_w) + 2 * _PAD, top + body.height + _PAD), WHITE
    )
    if title:
        _draw_text(canvas, (_PAD, _PAD), title, _TITLE_SIZE)
    canvas.paste(body, (_PAD, top))
    return canvas


def _percent(x: Any) -> str:
    return "n/a" if x is None else f"{100 * float(x):.2f}%"


def _depth_lines(row: Mapping[str, Any]) -> list[str]:
    psnr = row.get("psnr")
    return [
        f"depth {row.get('depth', '?')} (rank {row.get('rank', '?')})",
        f"error {_percent(row.get('relative_error'))}, SVD floor {_percent(row.get('svd_floor'))}",
        "PSNR " + ("inf (exact)" if psnr is None else f"{float(psnr):.1f} dB"),
    ]


def decomposition_figure(
    title: str,
    original: Image.Image,
    reconstructions: Sequence[Image.Image],
    depths: Sequence[Mapping[str, Any]],
    parts: Sequence[tuple[Sequence[np.ndarray], Sequence[np.ndarray]]],
    *,
    channels: str = "gray",
) -> Image.Image:
    """One figure for one decomposition, drawn from the factors themselves.

    Parameters
    ----------
    title
        The first line, e.g. the input's name.
    original, reconstructions
        The picture that was decomposed and its model at each depth (one per depth).
    depths
        One mapping per depth with ``depth``, ``rank``, ``relative_error``,
        ``svd_floor`` and ``psnr`` (the report's ``depths`` rows).
    parts
        ``(Ws, Hs)`` of each factorised matrix, in the engine's order: one part,
        or three (R, G, B) for ``channels="separate"``.
    channels
        ``"gray"``, ``"stack"`` (H's columns are R, G, B side by side) or ``"separate"``.

    The first row holds the original and a legend saying how to read the rest;
    then one row per depth d: the model at depth d with its error, SVD floor
    and PSNR, W_d and H_d (as in ``W_1 ... W_d H_d``), and the energy of each
    component beside H_d. Components are sorted by energy, strongest first,
    consistently through the layers (:func:`sorted_factors`). Each matrix is
    coloured on one linear scale, shown by the colour bar under it. Cells are
    square (W_3 of 32 x 16 is drawn twice as tall as wide), except that a
    pixel axis is drawn at the pictures' scale so that W_1 lines up with the
    image's rows and H_d with its columns. Pictures more than
    :data:`WRAP_ASPECT` times as wide as tall (or tall as wide) are cut into
    pieces laid one under the other (side by side), and H (W_1) with them.
    Channel blocks are separated by white gaps; in ``separate`` mode W_d
    (d > 1) is block-diagonal, with the blocks that do not exist in light grey.
    """
    if not parts:
        raise ParameterError("a decomposition figure needs at least one part")
    n_depths = len(parts[0][0])
    if len(reconstructions) != n_depths or len(depths) != n_depths:
        raise ParameterError(
            f"{n_depths} layers but {len(reconstructions)} reconstructions "
            f"and {len(depths)} depth rows"
        )
    ordered = [sorted_factors(Ws, Hs) for Ws, Hs in parts]
    m = int(ordered[0][0][0].shape[0])
    n_matrix = int(ordered[0][1][0].shape[1])
    stacked = channels == "stack" and len(parts) == 1 and n_matrix % 3 == 0
    n = n_matrix // 3 if stacked else n_matrix
    geometry = _geometry(original.height, original.width)
    if (original.height, original.width) != (m, n):  # the matrices rule the drawing
        geometry = _geometry(m, n)

    widest = max(sum(W.shape[1] for W in (p[0][d] for p in ordered)) for d in range(n_depths))
    widest = max(widest, sum(p[0][0].shape[1] for p in ordered))
    # Wrapped H (wide pictures) repeats its component axis once per piece.
    span = _COMPONENT_SPAN // (geometry.pieces if geometry.axis == 1 else 1)
    unit = float(min(_MAX_CELL, max(1, span // max(1, widest))))
    if widest * unit > _MAX_SPAN:
        unit = _MAX_SPAN / widest

    def px(count: int) -> int:
        return max(1, round(count * unit))

    separate = len(parts) > 1
    names = _CHANNEL_NAMES if len(parts) == 3 else tuple(str(i + 1) for i in range(len(parts)))
    legend = [
        f"{m} x {n} pixels, channels {channels}, ranks "
        + ",".join(str(int(r.get("rank", 0))) for r in depths)
        + ". Model at depth d: W1 ... Wd Hd.",
        "Colours: each factor matrix on ONE linear scale, from 0 (or -max) to its largest "
        "|value|: the colour bar under it gives the values.",
        "Components are sorted by energy |w_k|*|h_k|, strongest first, the same order for "
        "W's columns (left to right), H's rows (top to bottom) and the next W's rows; "
        "the bars beside H show the energies.",
        "model.npz and the factor PNGs keep the engine's order; the factor PNGs scale each "
        "component to its own maximum and have no legend.",
    ]
    if stacked:
        legend.append("H's columns: R, G, B side by side (white gaps).")
    if separate:
        legend.append(
            f"Channels {', '.join(names)} are factorised apart: blocks in that order; "
            "light grey: no such coefficient."
        )
    if geometry.pieces > 1:
        direction = "one under the other" if geometry.axis == 1 else "side by side"
        legend.append(
            f"Wrapped: pictures and factors cut in {geometry.pieces} pieces, {direction}."
        )

    blocks_note = f" ({'|'.join(names)})" if separate else ""
    pictures = [_cell(_picture(original, geometry), [f"original ({m}x{n})", "", ""])]
    w_cells: list[Image.Image] = []
    h_cells: list[Image.Image] = []
    for d in range(n_depths):
        Ws = [p[0][d] for p in ordered]
        Hs = [p[1][d] for p in ordered]
        ranks = [H.shape[0] for H in Hs]
        pictures.append(_cell(_picture(reconstructions[d], geometry), _depth_lines(depths[d])))
        # W_d: image rows x components (d = 1), or layer d-1's components x layer d's.
        if d == 0:
            w_blocks: list[list[np.ndarray | None]] = [list(Ws)]
            w_rows, w_shape = [geometry.rows], f"{m}x{sum(ranks)}"
        else:
            w_blocks = [[W if i == j else None for j, W in enumerate(Ws)] for i, W in enumerate(Ws)]
            w_rows = [px(W.shape[0]) for W in Ws]
            w_shape = f"{sum(W.shape[0] for W in Ws)}x{sum(ranks)}"
        w_rgb, w_max, w_div = _blocks_image(w_blocks, w_rows, [px(r) for r in ranks])
        if d == 0 and geometry.axis == 0:
            w_rgb = _wrap(w_rgb, geometry.pieces, 0)
        w_cells.append(
            _cell(
                w_rgb,
                [
                    f"W{d + 1} ({w_shape})",
                    ("rows x comp." if d == 0 else f"L{d} x L{d + 1} comp.") + blocks_note,
                ],
                _colour_bar(w_max, w_div, min(120, max(64, w_rgb.shape[1]))),
            )
        )
        # H_d: components x image columns (R, G, B blocks side by side under "stack").
        if stacked:
            h_blocks: list[list[np.ndarray | None]] = [list(np.split(Hs[0], 3, axis=1))]
        else:
            h_blocks = [[H] for H in Hs]
        h_rgb, h_max, h_div = _blocks_image(
            h_blocks, [px(r) for r in ranks], [geometry.cols] * len(h_blocks[0])
        )
        if geometry.axis == 1 and geometry.pieces > 1:
            h_rgb = _wrap(h_rgb, geometry.pieces, 1)
        energies = [component_energies(W, H) for W, H in zip(Ws, Hs, strict=True)]
        bars = _energy_bars(energies, [px(r) for r in ranks])
        height = max(h_rgb.shape[0], bars.shape[0])
        beside = np.full((height, h_rgb.shape[1] + _GAP + 2 + _BAR_WIDTH, 3), 255, dtype=np.uint8)
        beside[: h_rgb.shape[0], : h_rgb.shape[1]] = h_rgb
        beside[: bars.shape[0], -_BAR_WIDTH:] = bars
        strongest = max((float(np.max(e)) for e in energies if e.size), default=0.0)
        h_cells.append(
            _cell(
                beside,
                [
                    f"H{d + 1} ({sum(ranks)}x{Hs[0].shape[1]}), energy bars",
                    f"comp.{blocks_note} x columns{' (R|G|B)' if stacked else ''}; "
                    f"longest bar {_number(strongest)}",
                ],
                _colour_bar(h_max, h_div),
            )
        )
    top_row = _arrange(pictures, 1)
    factors = [cell for pair in zip(w_cells, h_cells, strict=True) for cell in pair]
    # W_d beside H_d, or the Ws then the Hs, or the Hs then the Ws; the legend
    # last, as wide as packs tightest.
    orders = [factors, [*w_cells, *h_cells], [*h_cells, *w_cells]]
    texts = [_wrapped(legend, w) for w in _LEGEND_WIDTHS]
    packed = _pack([[*cells, text] for cells in orders for text in texts], top_row.width)
    body = _arrange([top_row, packed], 0)
    return _framed(_short(title, 160), body)


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
