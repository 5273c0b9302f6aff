"""The decomposition figure (summary.png): the factors drawn by the figure itself, so
that it can sort them by energy, keep their aspect and show their scale."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from mlnmf_cli.errors import ParameterError
from mlnmf_cli.render.colours import diverging_colors, sequential_colors
from mlnmf_cli.render.layout import (
    FRAME,
    LABEL_SIZE,
    PAD,
    TITLE_SIZE,
    WHITE,
    draw_text,
    short_text,
    text_size,
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
NOT_APPLICABLE = (225, 225, 225)
BAR_COLOUR = (90, 90, 90)
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
                drawn.append(np.full((height, width, 3), NOT_APPLICABLE, dtype=np.uint8))
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
        bars[np.arange(_BAR_WIDTH)[None, :] < lengths[:, None]] = BAR_COLOUR
        bars[:, 0] = FRAME
        groups.append(bars)
    return _join(groups, axis=0)


def _colour_bar(vmax: float, diverging: bool, width: int = 120) -> Image.Image:
    """A colour bar with its end values (and 0 in the middle when diverging)."""
    low = -vmax if diverging else 0.0
    ramp = np.linspace(low, vmax, width)[None, :].repeat(10, axis=0)
    ticks = [(0, _number(low)), (width - 1, _number(vmax))]
    if diverging:
        ticks.insert(1, (width // 2, "0"))
    text_h = text_size("0", _NOTE_SIZE)[1]
    widths = [text_size(t, _NOTE_SIZE)[0] for _, t in ticks]
    full_w = width + widths[-1]
    canvas = Image.new("RGB", (full_w, 12 + text_h), WHITE)
    canvas.paste(Image.fromarray(_colour(ramp, vmax, diverging)), (0, 0))
    for (x, text), w in zip(ticks, widths, strict=True):
        left = 0 if x == 0 else min(full_w - w, x - w // 2)
        draw_text(canvas, (left, 11), text, _NOTE_SIZE)
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
    texts = [(short_text(t), LABEL_SIZE if i == 0 else _NOTE_SIZE) for i, t in enumerate(lines)]
    heights = [text_size(t, s)[1] for t, s in texts]
    width = max([image.width + 2, *(text_size(t, s)[0] for t, s in texts)])
    if footer is not None:
        width = max(width, footer.width)
    height = sum(heights) + 4 + image.height + 2 + (footer.height + 4 if footer else 0)
    canvas = Image.new("RGB", (width, height), WHITE)
    y = 0
    for (text, size), h in zip(texts, heights, strict=True):
        draw_text(canvas, (0, y), text, size)
        y += h
    y += 4
    canvas.paste(image, (1, y + 1))
    ImageDraw.Draw(canvas).rectangle((0, y, image.width + 1, y + image.height + 1), outline=FRAME)
    if footer is not None:
        canvas.paste(footer, (0, y + image.height + 6))
    return canvas


def _wrapped(paragraphs: Sequence[str], width: int, size: int = _NOTE_SIZE) -> tuple[str, ...]:
    """Paragraphs broken into lines about ``width`` pixels wide (a long word stays whole);
    words are measured one by one, so that trying several widths stays cheap."""
    space = text_size("a b", size)[0] - text_size("ab", size)[0]
    lines: list[str] = []
    for paragraph in paragraphs:
        line, used = "", 0
        for word in paragraph.split():
            word_w = text_size(word, size)[0]
            if line and used + space + word_w > width:
                lines.append(line)
                line, used = word, word_w
            else:
                line, used = (f"{line} {word}", used + space + word_w) if line else (word, word_w)
        lines.append(line)
    return tuple(lines)


def _text_block_size(lines: Sequence[str], size: int = _NOTE_SIZE) -> tuple[int, int]:
    width = max((text_size(t, size)[0] for t in lines), default=1)
    return max(1, width), max(1, text_size("Hg", size)[1] * len(lines))


def _text_block(lines: Sequence[str], size: int = _NOTE_SIZE) -> Image.Image:
    line_h = text_size("Hg", size)[1]
    canvas = Image.new("RGB", _text_block_size(lines, size), WHITE)
    for i, text in enumerate(lines):
        draw_text(canvas, (0, i * line_h), text, size)
    return canvas


def _arrange(cells: Sequence[Image.Image], axis: int) -> Image.Image:
    """Cells side by side (``axis`` 1, top-aligned) or one under the other (0), PAD apart."""
    cells = [c for c in cells if c.width > 1 or c.height > 1]
    along = [c.size[1 - axis] for c in cells]  # width when side by side
    across = [c.size[axis] for c in cells]
    length = sum(along) + PAD * max(0, len(cells) - 1)
    size = (length, max(across, default=1)) if axis == 1 else (max(across, default=1), length)
    canvas = Image.new("RGB", (max(1, size[0]), max(1, size[1])), WHITE)
    at = 0
    for cell, step in zip(cells, along, strict=True):
        canvas.paste(cell, (at, 0) if axis == 1 else (0, at))
        at += step + PAD
    return canvas


def _skyline(sizes: Sequence[tuple[int, int]], width: int) -> tuple[list[tuple[int, int]], int]:
    """Where cells of ``sizes`` (width, height) go, in order, each where it sits highest
    (then leftmost) within ``width``; and the height used."""
    skyline = np.zeros(width, dtype=np.int64)
    spots = []
    for cell_w, cell_h in sizes:
        span = min(width, cell_w + PAD)
        tops = np.lib.stride_tricks.sliding_window_view(skyline, span).max(axis=1)
        x = int(np.argmin(tops))
        y = int(tops[x])
        spots.append((x, y))
        skyline[x : x + span] = y + cell_h + PAD
    return spots, max(1, int(skyline.max()) - PAD)


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
    title_w, title_h = text_size(title, TITLE_SIZE) if title else (0, 0)
    top = PAD + (title_h + PAD if title else 0)
    canvas = Image.new("RGB", (max(body.width, title_w) + 2 * PAD, top + body.height + PAD), WHITE)
    if title:
        draw_text(canvas, (PAD, PAD), title, TITLE_SIZE)
    canvas.paste(body, (PAD, top))
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
    return _framed(short_text(title, 160), body)
