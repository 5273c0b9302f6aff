"""Colours and exact pictures of matrices and pixels, as 8-bit PIL images.

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
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image

from mlnmf_cli.errors import ParameterError

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
