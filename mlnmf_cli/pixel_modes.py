"""Pillow images of every mode into float64 pixels in ``[0, 1]``, in the data's own range.

Values are mapped from the data's own range, which :attr:`Pixels.value_range`
records (the file values that became 0 and 1) and a note states whenever it is
not the plain range of the file's bit depth:

* 1-bit images give 0 and 1; 8-bit images are divided by 255;
* 16-bit grey (Pillow modes ``I;16``, ``I;16B``, ... and mode ``I`` from a
  16-bit file) is divided by 65535, never squeezed through ``convert("L")``,
  unless its values fit fewer bits: 12-bit data in a 16-bit container (values
  up to 4095) is divided by 4095, and likewise for 8, 10 and 14 bits, or for
  the bit depth a TIFF declares;
* 32-bit integers are divided by their maximum (or the 8 to 16-bit range
  they fit); signed data holding negative values is mapped linearly from its
  minimum and maximum;
* 32-bit floats (mode ``F``) already in ``[0, 1]`` are kept as they are;
  otherwise they are divided by their finite maximum, or mapped from their
  finite minimum and maximum when some are negative. NaN and -inf become the
  lowest value, +inf the highest; an image with no finite value is refused;
* 16-bit colour is reduced to 8 bits by Pillow itself, which has no 16-bit
  colour modes and keeps the high byte; a note says so. Data using fewer
  bits (12-bit colour keeps 0 to 15 there) are scaled by the bits kept.

Every Pillow mode is converted explicitly (see ``_CONVERSIONS``) or refused by
name: CMYK, YCbCr, HSV and CIELAB become RGB with a note, RGBX drops its
padding, premultiplied alpha (``RGBa``, ``La``) is undone. Transparency (LA,
RGBA, PA, palette or grey with a transparent entry) is composited over white:
the background of every figure mlnmf draws. Only the grey modes (1, L, LA, La,
I, F and the 16-bit variants) give a 2-D array; everything else, including a
palette or RGB image that happens to hold only greys, gives ``(H, W, 3)``.

:func:`to_pixels` also says how values were scaled (:class:`Pixels`), so that
reports can give the range and the peak PSNR is measured against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from PIL import Image

from mlnmf_cli.errors import InputError

__all__ = ["Decoded", "Pixels", "to_pixels"]

# Samples per tile when raw samples are read from Pillow (which copies each
# tile twice on the way): small beside any image worth tiling.
_RAW_TILE_ELEMENTS = 1 << 16
# Bit depths that integer data narrower than its container is recognised as.
_NARROW_BITS = (8, 10, 12, 14, 16)


@dataclass
class Decoded:
    """A decoded Pillow image and what the file said about its samples."""

    image: Image.Image
    format: str
    mode: str
    rawmode: str
    file_bits: int | None
    notes: list[str]
    signed: bool = False


@dataclass
class Pixels:
    """Converted pixels (float64, not yet clipped) and how they were scaled."""

    values: np.ndarray
    bit_depth: int
    value_range: tuple[float, float]
    scale: str


def to_pixels(decoded: Decoded) -> Pixels:
    """Pixels as float64 (not yet clipped), by an explicit rule for every Pillow mode."""
    mode = decoded.image.mode
    convert = _CONVERSIONS.get(mode)
    if convert is None:
        raise InputError(f"image mode {mode} is not supported")
    return convert(decoded)


def _eight_bit(values: np.ndarray) -> Pixels:
    return Pixels(values, 8, (0.0, 255.0), "8-bit: scaled by 255")


def _bilevel(decoded: Decoded) -> Pixels:
    im = decoded.image
    if im.info.get("transparency") is not None:
        grey = _grey_8(replace(decoded, image=im.convert("L")))
        return Pixels(grey.values, 1, (0.0, 1.0), "1-bit")
    return Pixels(np.asarray(im, dtype=bool).astype(np.float64), 1, (0.0, 1.0), "1-bit")


def _grey_8(decoded: Decoded) -> Pixels:
    im = decoded.image
    if decoded.signed and decoded.rawmode == "L":  # signed 8-bit TIFF samples
        return _integer_pixels(decoded, 8, True, None, np.int8)
    values = _grey(np.asarray(im), 255.0, im.info.get("transparency"), decoded.notes)
    return _eight_bit(values)


def _grey_alpha(decoded: Decoded) -> Pixels:
    im = decoded.image
    if im.mode == "La":  # premultiplied alpha: undone by Pillow
        im = im.convert("LA")
    return _eight_bit(_over_white(np.asarray(im, dtype=np.float64) / 255.0, decoded.notes))


def _grey_16(decoded: Decoded) -> Pixels:
    declared = decoded.file_bits if decoded.file_bits and decoded.file_bits < 16 else None
    return _integer_pixels(decoded, 16, False, declared)


def _grey_32(decoded: Decoded) -> Pixels:
    """Mode ``I``: 32-bit integers as Pillow stores them, from 16 or 32-bit files."""
    rawmode = decoded.rawmode
    container = 16 if (decoded.file_bits == 16 or rawmode.startswith("I;16")) else 32
    unsigned = rawmode in ("I;16", "I;16B", "I;16N", "I;32N")
    # Pillow keeps unsigned 32-bit samples in int32: read them back as uint32.
    view = np.uint32 if container == 32 and unsigned else None
    return _integer_pixels(decoded, container, not unsigned, None, view)


def _colour(decoded: Decoded) -> Pixels:
    im = decoded.image
    notes = decoded.notes
    mode = im.mode
    transparency = im.info.get("transparency")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or transparency is not None or _palette_has_alpha(im)
        im = im.convert("RGBA" if has_alpha else "RGB")
    elif mode == "RGB" and transparency is not None:
        im = im.convert("RGBA")
    elif mode == "RGBa":  # premultiplied alpha: undone by Pillow
        im = im.convert("RGBA")
    elif mode == "RGBX":  # the fourth band is padding
        im = im.convert("RGB")
    elif mode in _CONVERTED_TO_RGB:
        if mode == "LAB" and not _pillow_converts_lab():
            raise InputError("image mode LAB (CIELAB) is not supported by this Pillow")
        im = im.convert("RGB")
        notes.append(_CONVERTED_TO_RGB[mode])
    levels = np.asarray(im)
    values = levels.astype(np.float64)
    values /= 255.0
    pixels = _eight_bit(values)
    if ";16" in decoded.rawmode:
        pixels = _reduced_16_bit_colour(levels, values, notes)
    if im.mode == "RGBA":
        pixels.values = _over_white(values, notes)
    return pixels


def _reduced_16_bit_colour(levels: np.ndarray, values: np.ndarray, notes: list[str]) -> Pixels:
    """16-bit colour, of which Pillow keeps the high byte: scaled by the bits the data use.

    12-bit data (up to 4095) keep 4 bits in the high byte (0 to 15): they are
    divided by 15, not 255, so the picture is not black. ``values`` (``levels``
    / 255) is rescaled in place, the alpha channel left as it is.
    """
    colour = levels[..., :3]
    used = (int(colour.max()) if colour.size else 0).bit_length()
    if 0 < used < 8:
        full = 2 ** (used + 8) - 1
        values[..., :3] *= 255.0 / (2**used - 1)
        scale = (
            f"16-bit colour reduced to 8 bits by Pillow: {used + 8}-bit data, "
            f"scaled by {full} ({used} bits kept)"
        )
        notes.append(scale)
        return Pixels(values, 8, (0.0, float(full)), scale)
    scale = "16-bit colour reduced to 8 bits by Pillow"
    notes.append(scale)
    return Pixels(values, 8, (0.0, 65535.0), scale)


_CONVERTED_TO_RGB = {
    "CMYK": "CMYK converted to RGB without a colour profile",
    "YCbCr": "YCbCr converted to RGB",
    "HSV": "HSV converted to RGB",
    "LAB": "CIELAB converted to sRGB (D50 white point)",
}


@lru_cache(maxsize=1)
def _pillow_converts_lab() -> bool:
    """Whether this Pillow turns LAB into real sRGB (not a copy of the bands)."""
    probe = Image.new("LAB", (3, 1))
    probe.putpixel((0, 0), (255, 128, 128))  # white
    probe.putpixel((1, 0), (0, 128, 128))  # black
    probe.putpixel((2, 0), (138, 209, 198))  # sRGB red
    try:
        rgb = np.asarray(probe.convert("RGB"), dtype=int)[0]
    except (ValueError, OSError):
        return False
    expected = np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0]])
    return bool(np.abs(rgb - expected).max() <= 8)


_CONVERSIONS: dict[str, Callable[[Decoded], Pixels]] = {
    "1": _bilevel,
    "L": _grey_8,
    "LA": _grey_alpha,
    "La": _grey_alpha,
    "I;16": _grey_16,
    "I;16L": _grey_16,
    "I;16B": _grey_16,
    "I;16N": _grey_16,
    "I": _grey_32,
    "F": lambda decoded: _float_pixels(decoded.image, decoded.notes),
    **dict.fromkeys(
        ("P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "HSV", "LAB"), _colour
    ),
}


def _palette_has_alpha(im: Image.Image) -> bool:
    palette = im.palette
    return palette is not None and "A" in palette.mode


def _over_white(values: np.ndarray, notes: list[str]) -> np.ndarray:
    colour, alpha = values[..., :-1], values[..., -1:]
    notes.append("alpha channel composited over white")
    out = colour * alpha + (1.0 - alpha)
    return out[..., 0] if out.shape[-1] == 1 else out


def _grey(raw: np.ndarray, scale: float, transparency: object, notes: list[str]) -> np.ndarray:
    """Grey levels divided by ``scale``; the transparent level, if any, made white."""
    values = raw.astype(np.float64)
    values /= scale
    if isinstance(transparency, int) and not isinstance(transparency, bool):
        mask = raw == transparency
        if mask.any():
            values[mask] = 1.0
            notes.append("transparent pixels composited over white")
    return values


def _raw_tiles(
    im: Image.Image, view: type | None = None
) -> Iterator[tuple[tuple[slice, slice], np.ndarray]]:
    """The image's samples a tile at a time: ``((rows, columns), samples)``.

    Tiles of whole rows, or of parts of a row when one row alone is larger than
    a tile (a 1 x 2,000,000 image): never the whole image as one array, which
    for 32-bit samples would add half the float64 result's size to the peak.
    """
    width, height = im.size
    rows = max(1, _RAW_TILE_ELEMENTS // max(1, width))
    columns = min(width, _RAW_TILE_ELEMENTS)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        for left in range(0, width, columns):
            right = min(width, left + columns)
            tile = np.asarray(im.crop((left, top, right, bottom)))
            yield (
                (slice(top, bottom), slice(left, right)),
                (tile if view is None else tile.view(view)),
            )


def _integer_pixels(
    decoded: Decoded,
    container: int,
    signed: bool,
    declared: int | None,
    view: type | None = None,
) -> Pixels:
    """Integer grey levels mapped from the data's own range (see the module's docstring).

    The transparent level of a grey image, if any, does not count in the range
    and becomes white.
    """
    im, notes = decoded.image, decoded.notes
    transparency = im.info.get("transparency")
    if not isinstance(transparency, int) or isinstance(transparency, bool):
        transparency = None
    low, high, any_transparent = None, None, False
    for _, raw in _raw_tiles(im, view):
        opaque = raw if transparency is None else raw[raw != transparency]
        any_transparent |= opaque.size < raw.size
        if opaque.size:
            lo_block, hi_block = int(opaque.min()), int(opaque.max())
            low = lo_block if low is None else min(low, lo_block)
            high = hi_block if high is None else max(high, hi_block)
    low, high = low or 0, high or 0
    value_bits = container - 1 if signed else container
    if low < 0:
        lo, hi = float(low), float(max(high, low + 1))
        scale = f"signed {container}-bit values from {low} to {high}: mapped linearly to [0, 1]"
        notes.append(scale)
    else:
        bits = declared or next((b for b in _NARROW_BITS if b < value_bits and high < 2**b), None)
        lo = 0.0
        if high == 0 or (bits is None and container <= 16):
            hi = float(2**value_bits - 1)
            scale = f"{'signed ' if signed else ''}{container}-bit: scaled by {2**value_bits - 1}"
        elif bits is None:
            hi = float(high)
            scale = f"{container}-bit integer data: scaled by its maximum {high}"
            notes.append(scale)
        else:
            hi = float(2**bits - 1)
            scale = f"{bits}-bit data in a {container}-bit container: scaled by {2**bits - 1}"
            notes.append(scale)
    width, height = im.size
    values = np.empty((height, width), dtype=np.float64)
    for where, raw in _raw_tiles(im, view):
        block = values[where]
        np.subtract(raw, lo, out=block)
        block /= hi - lo
        if any_transparent:
            block[raw == transparency] = 1.0
    if any_transparent:
        notes.append("transparent pixels composited over white")
    return Pixels(values, container, (lo, hi), scale)


def _float_pixels(im: Image.Image, notes: list[str]) -> Pixels:
    """Floats kept in ``[0, 1]``, else mapped from their finite range; NaN and inf replaced."""
    low, high, bad = np.inf, -np.inf, 0
    for _, raw in _raw_tiles(im):
        finite = np.isfinite(raw)
        count = int(np.count_nonzero(finite))
        bad += raw.size - count
        if count:
            kept = raw[finite]
            low, high = min(low, float(kept.min())), max(high, float(kept.max()))
    width, height = im.size
    if width * height and bad == width * height:
        raise InputError("floating-point image has no finite value (all NaN or infinite)")
    if not width * height or (low >= 0.0 and high <= 1.0):
        lo, hi = 0.0, 1.0
        scale = "floating point, already in [0, 1]"
    elif low >= 0.0:
        lo, hi = 0.0, high
        scale = f"floating-point values up to {high:.6g}: scaled by their maximum"
        notes.append(scale)
    else:
        lo, hi = low, high if high > low else low + 1.0
        scale = f"floating-point values from {low:.6g} to {high:.6g}: mapped linearly to [0, 1]"
        notes.append(scale)
    values = np.empty((height, width), dtype=np.float64)
    for where, raw in _raw_tiles(im):
        block = values[where]
        block[...] = raw
        np.nan_to_num(block, copy=False, nan=lo, posinf=hi, neginf=lo)
        block -= lo
        block /= hi - lo
    if bad:
        notes.append(
            f"{bad} NaN or infinite values replaced (NaN and -inf by the lowest value, "
            "+inf by the highest)"
        )
    return Pixels(values, 32, (lo, hi), scale)
