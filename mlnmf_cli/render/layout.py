"""Labelled panels: text, grids of labelled pictures, the summary panel, montages and
heatmaps. White background, labels in Pillow's built-in font
(``ImageFont.load_default(size=...)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mlnmf_cli.errors import ParameterError
from mlnmf_cli.render.colours import sequential_colors

WHITE = (255, 255, 255)
TEXT = (20, 20, 20)
FRAME = (200, 200, 200)
PAD = 10
LABEL_SIZE = 14
TITLE_SIZE = 20
_PICTURE_BOX = (384, 256)
_FACTOR_BOX = (512, 320)
_MAX_LABEL_CHARS = 80


# --- text and layout -------------------------------------------------------------


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


@lru_cache(maxsize=4096)
def text_size(text: str, size: int) -> tuple[int, int]:
    """Width and line height of ``text`` in the default font."""
    font = _font(size)
    left, _top, right, _bottom = font.getbbox(text or " ")
    if isinstance(font, ImageFont.FreeTypeFont):
        ascent, descent = font.getmetrics()
        height = ascent + descent
    else:  # pragma: no cover - Pillow without FreeType
        height = font.getbbox("Hg")[3]
    return math.ceil(right - min(left, 0)), int(height)


def short_text(text: str, limit: int = _MAX_LABEL_CHARS) -> str:
    # Undecodable bytes in a file name (lone surrogates) have no glyph: shown as "?".
    text = str(text).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = " ".join(text.replace("\ufffd", "?").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def draw_text(
    canvas: Image.Image,
    xy: tuple[int, int],
    text: str,
    size: int,
    fill: tuple[int, int, int] = TEXT,
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
    return [(_fit(image, box, resample), short_text(label)) for image, label in items]


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
    label_h = text_size("Hg", LABEL_SIZE)[1]
    title_w, title_h = text_size(title, TITLE_SIZE) if title else (0, 0)
    rows = [row for row in rows if row]

    uniform_w = 0
    if uniform is not None:
        labels = [text_size(label, LABEL_SIZE)[0] for row in rows for _, label in row]
        uniform_w = max(uniform[0], *labels, 1)

    layout: list[list[tuple[int, int, Image.Image, str]]] = []
    row_heights: list[int] = []
    panel_w = title_w + 2 * PAD
    for row in rows:
        x = PAD
        placed = []
        for image, label in row:
            if uniform is not None:
                width = uniform_w
                offset = (width - image.width) // 2
            else:
                width = max(image.width, text_size(label, LABEL_SIZE)[0])
                offset = 0
            placed.append((x, offset, image, label))
            x += width + PAD
        layout.append(placed)
        image_h = uniform[1] if uniform is not None else max(image.height for image, _ in row)
        row_heights.append(label_h + 4 + image_h)
        panel_w = max(panel_w, x)

    top = PAD + (title_h + PAD if title else 0)
    panel_h = top + sum(h + PAD for h in row_heights)
    canvas = Image.new("RGB", (max(1, panel_w), max(1, panel_h)), WHITE)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw_text(canvas, (PAD, PAD), title, TITLE_SIZE)
    y = top
    for placed, row_h in zip(layout, row_heights, strict=True):
        for x, offset, image, label in placed:
            draw_text(canvas, (x, y), label, LABEL_SIZE)
            left, top_ = x + offset, y + label_h + 4
            canvas.paste(image, (left, top_))
            draw.rectangle(
                (left - 1, top_ - 1, left + image.width, top_ + image.height), outline=FRAME
            )
        y += row_h + PAD
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
        short_text(title, 160),
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
    return _grid(short_text(title, 160), fitted, uniform=box)


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
    rows_text = [short_text(label, 40) for label in row_labels]
    cols_text = [short_text(label, 24) for label in col_labels]
    written = max(n_rows, n_cols) <= 60
    line_h = text_size("Hg", LABEL_SIZE)[1]

    if written:
        cell_w = (
            max(
                text_size("-0.00", LABEL_SIZE)[0],
                *(text_size(t, LABEL_SIZE)[0] for t in cols_text),
                1,
            )
            + 12
        )
        cell_h = line_h + 12
    else:
        cell_w = cell_h = max(2, min(12, 2400 // max(n_rows, n_cols, 1)))
    label_w = max((text_size(t, LABEL_SIZE)[0] for t in rows_text), default=0) if written else 0
    title_w, title_h = text_size(title, TITLE_SIZE) if title else (0, 0)
    header_h = line_h + 6 if written else 0

    left = PAD + (label_w + PAD if label_w else 0)
    top = PAD + (title_h + PAD if title else 0) + header_h
    width = max(left + n_cols * cell_w + PAD, title_w + 2 * PAD)
    height = top + n_rows * cell_h + PAD
    canvas = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw_text(canvas, (PAD, PAD), title, TITLE_SIZE)

    finite = np.isfinite(table)
    scaled = np.where(finite, (table - vmin) / (vmax - vmin), 0.0)
    colours = sequential_colors(scaled)
    colours[~finite] = (225, 225, 225)
    grid = np.repeat(np.repeat(colours, cell_h, axis=0), cell_w, axis=1)
    canvas.paste(Image.fromarray(np.ascontiguousarray(grid)), (left, top))
    if not written:
        return canvas

    font = _font(LABEL_SIZE)
    for j, text in enumerate(cols_text):
        tw = text_size(text, LABEL_SIZE)[0]
        draw.text(
            (left + j * cell_w + (cell_w - tw) // 2, top - header_h), text, fill=TEXT, font=font
        )
    for i, text in enumerate(rows_text):
        draw.text((PAD, top + i * cell_h + 6), text, fill=TEXT, font=font)
        for j in range(n_cols):
            value = table[i, j]
            text_ij = f"{value:.2f}" if finite[i, j] else "n/a"
            r, g, b = (int(c) for c in colours[i, j])
            ink = TEXT if 0.299 * r + 0.587 * g + 0.114 * b > 140 else WHITE
            tw = text_size(text_ij, LABEL_SIZE)[0]
            x = left + j * cell_w + (cell_w - tw) // 2
            draw.text((x, top + i * cell_h + 6), text_ij, fill=ink, font=font)
    return canvas
