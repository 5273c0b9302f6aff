"""Loading untrusted images into float matrices, and back.

Every image goes through :func:`load_image`, which follows Pillow's security
guide: an allow-list of formats, the decompression-bomb limit kept on (and
its warning treated as an error), the pixel data decoded inside the ``with``
block, EXIF orientation applied first, the first frame of an animation.
Only regular files are opened, and never in a way that could block (see
:func:`open_regular_file`): a named pipe, a device, a socket or a folder is
refused by name. Whatever goes wrong with the file is reported as one
:class:`~mlnmf_cli.errors.InputError` whose message does not name the path
(the caller prefixes it).

Pixel values always come back as float64 in ``[0, 1]``, mapped from the
data's own range, which :attr:`LoadedImage.value_range` records (the file
values that became 0 and 1) and a note states whenever it is not the plain
range of the file's bit depth:

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
  colour modes; a note says so.

Every Pillow mode is converted explicitly (see ``_CONVERSIONS``) or refused by
name: CMYK, YCbCr, HSV and CIELAB become RGB with a note, RGBX drops its
padding, premultiplied alpha (``RGBa``, ``La``) is undone. Transparency (LA,
RGBA, PA, palette or grey with a transparent entry) is composited over white:
the background of every figure mlnmf draws. Only the grey modes (1, L, LA, La,
I, F and the 16-bit variants) give a 2-D array; everything else, including a
palette or RGB image that happens to hold only greys, gives ``(H, W, 3)``.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import struct
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, TiffImagePlugin, UnidentifiedImageError

from mlnmf_cli.errors import InputError, ParameterError, open_error

__all__ = [
    "ALLOWED_FORMATS",
    "CHANNEL_MODES",
    "IMAGE_SUFFIXES",
    "LoadedImage",
    "check_regular_file",
    "from_matrices",
    "load_image",
    "open_regular_file",
    "to_matrices",
    "to_pil",
    "to_pil_by_rows",
]

ALLOWED_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP", "GIF")
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif"}
)
CHANNEL_MODES = ("gray", "stack", "separate")

_ALLOWED_TEXT = "PNG, JPEG, TIFF, BMP, WebP, GIF"
_LUMA = np.array([0.299, 0.587, 0.114])
_MAX_DETAIL = 160
# Entries per block when whole images are converted a block of rows at a time.
_BLOCK_ELEMENTS = 1 << 18
# Samples per tile when raw samples are read from Pillow (which copies each
# tile twice on the way): small beside any image worth tiling.
_RAW_TILE_ELEMENTS = 1 << 16
# Bit depths that integer data narrower than its container is recognised as.
_NARROW_BITS = (8, 10, 12, 14, 16)

_ORIENTATION_NOTES = {
    2: "mirrored left-right",
    3: "rotated 180°",
    4: "mirrored top-bottom",
    5: "mirrored along the main diagonal",
    6: "rotated 90° clockwise",
    7: "mirrored along the anti-diagonal",
    8: "rotated 90° counter-clockwise",
}

# Pillow reads its pixel limit from the global ``Image.MAX_IMAGE_PIXELS`` at
# several points (when the header is parsed, when GIF frames grow, when TIFF
# tiles are allocated), and reports a size between 1x and 2x the limit only
# through ``warnings``. To honour a per-call limit and turn that warning into
# an error, ``load_image`` sets the global and a warnings filter for the
# duration of the decode and restores both afterwards. This lock makes that
# safe between concurrent ``load_image`` calls (decoding is serialised); code
# that calls ``Image.open`` directly from another thread at the same moment
# would see the temporary limit, and mlnmf has no such code. Pillow's other
# warnings (corrupt EXIF, odd chunks...) are recorded and become notes, so
# nothing is printed behind the caller's back.
_PILLOW_GLOBALS_LOCK = threading.Lock()


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _pillow_log_captured() -> Iterator[list[str]]:
    """Pillow's log records of WARNING and above, kept instead of printed.

    With no logging configured, Python prints them to stderr (a TIFF declaring
    thousands of samples per pixel logs an error before failing): a second
    line behind the one-line message. Call with ``_PILLOW_GLOBALS_LOCK`` held:
    the ``PIL`` logger is changed for the duration.
    """
    logger = logging.getLogger("PIL")
    recorder = _Recorder()
    propagate = logger.propagate
    logger.addHandler(recorder)
    logger.propagate = False
    try:
        yield recorder.messages
    finally:
        logger.removeHandler(recorder)
        logger.propagate = propagate


_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


@dataclass(frozen=True)
class LoadedImage:
    """An image decoded to floats in ``[0, 1]``.

    Attributes
    ----------
    pixels
        float64, shape ``(H, W)`` for grey or ``(H, W, 3)`` for colour.
    format
        Pillow's name of the file format, e.g. ``"PNG"``.
    mode
        Pillow's mode of the file as opened, e.g. ``"I;16"``, ``"P"``.
    bit_depth
        Bits per sample of the decoded data: 1, 8, 16 or 32 (the container;
        :attr:`value_range` says which part of it the data uses).
    notes
        One-line remarks the user should see (alpha composited, first frame
        of an animation used, EXIF orientation applied, how values were
        scaled when not by the plain bit depth...).
    value_range
        ``(lo, hi)``: the file values that became 0 and 1, so that
        ``pixels = (file value - lo) / (hi - lo)``. ``(0, 255)`` for 8-bit
        data, ``(0, 4095)`` for 12-bit data in a 16-bit container, ``(0, 1000)``
        for floats up to 1000, ``(0, 1)`` for floats already in ``[0, 1]``.
    scale
        The same in words, for reports: e.g. ``"8-bit: scaled by 255"``,
        ``"12-bit data in a 16-bit container: scaled by 4095"``.
    """

    pixels: np.ndarray
    format: str
    mode: str
    bit_depth: int
    notes: tuple[str, ...] = ()
    value_range: tuple[float, float] = (0.0, 1.0)
    scale: str = ""

    @property
    def is_color(self) -> bool:
        return self.pixels.ndim == 3

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)``."""
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))

    @property
    def peak(self) -> float:
        """The data's peak in file units, ``hi - lo``: what 1.0 in :attr:`pixels` stands for.

        A PSNR computed on :attr:`pixels` against a peak of 1 is the PSNR of
        the file's values against this peak.
        """
        lo, hi = self.value_range
        return float(hi) - float(lo)


# --------------------------------------------------------------------------- regular files

_FILE_TYPES = (
    (stat.S_ISFIFO, "named pipe (FIFO)"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
)


def _refuse_special(mode: int, kind: str) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise InputError(f"is a directory, not {kind}")
    for test, name in _FILE_TYPES:
        if test(mode):
            raise InputError(f"is a {name}, not a regular file")
    raise InputError("not a regular file")


def check_regular_file(path: str | os.PathLike[str], kind: str = "an image file") -> None:
    """Refuse, as one :class:`InputError`, anything at ``path`` that is not a regular file.

    Only ``stat`` is called (symbolic links followed): a named pipe is never
    opened, so nothing can block. ``kind`` names what was expected, e.g.
    ``"a model file"``; it appears in the message for a folder. The message
    does not name the path (the caller prefixes it). Use
    :func:`open_regular_file` to open the file as well without a race.
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        raise open_error(exc, kind) from exc
    _refuse_special(info.st_mode, kind)


def open_regular_file(path: str | os.PathLike[str], kind: str = "an image file") -> BinaryIO:
    """Open ``path`` for binary reading if, and only if, it is a regular file.

    Checked by ``stat`` first (a FIFO, a device, a socket or a folder is never
    opened), then opened with ``O_NONBLOCK`` and checked again on the open
    descriptor, so a file swapped for a FIFO in between cannot block either.
    Errors are one-line :class:`InputError` messages without the path.
    """
    check_regular_file(path, kind)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise open_error(exc, kind) from exc
    try:
        _refuse_special(os.fstat(fd).st_mode, kind)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


# --------------------------------------------------------------------------- decoding


@dataclass
class _Decoded:
    image: Image.Image
    format: str
    mode: str
    rawmode: str
    file_bits: int | None
    notes: list[str]
    signed: bool = False


@dataclass
class _Pixels:
    """Converted pixels (float64, not yet clipped) and how they were scaled."""

    values: np.ndarray
    bit_depth: int
    value_range: tuple[float, float]
    scale: str


def load_image(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> LoadedImage:
    """Decode an untrusted image file into floats in ``[0, 1]``.

    Parameters
    ----------
    path
        The file to read: a regular file (see :func:`open_regular_file`).
        Only PNG, JPEG, TIFF, BMP, WebP and GIF are opened.
    max_pixels
        Refuse images whose declared width x height exceeds this, before any
        pixel is decoded. ``None`` keeps Pillow's ``Image.MAX_IMAGE_PIXELS``
        (about 89 million); a larger value lets bigger images in.

    Raises
    ------
    InputError
        For every file that cannot be used; the message does not name it.
    ParameterError
        If ``max_pixels`` is not a positive integer.
    """
    if max_pixels is not None and (
        isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1
    ):
        raise ParameterError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    decoded = _decode(os.fspath(path), max_pixels)
    try:
        converted = _to_array(decoded)
    except InputError:
        raise
    except (ValueError, OSError, MemoryError) as exc:
        raise InputError(
            f"image mode {decoded.mode} cannot be converted ({_detail(exc, path)})"
        ) from exc
    # In place on the one float64 array, a block of rows at a time: no
    # temporaries (not even NaN masks) as large as the image.
    pixels = np.ascontiguousarray(converted.values, dtype=np.float64)
    if not pixels.flags.writeable:
        pixels = pixels.copy()
    for block in _flat_blocks(pixels):
        np.nan_to_num(block, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
        np.clip(block, 0.0, 1.0, out=block)
    return LoadedImage(
        pixels=pixels,
        format=decoded.format,
        mode=decoded.mode,
        bit_depth=converted.bit_depth,
        notes=tuple(decoded.notes),
        value_range=converted.value_range,
        scale=converted.scale,
    )


def _flat_blocks(values: np.ndarray) -> list[np.ndarray]:
    """Views of a C-contiguous array's entries, ``_BLOCK_ELEMENTS`` at a time.

    Flat, not by rows: one row of a 1 x 2,000,000 image is itself large.
    """
    flat = values.reshape(-1)
    return [flat[i : i + _BLOCK_ELEMENTS] for i in range(0, flat.size, _BLOCK_ELEMENTS)]


def _decode(path: str, max_pixels: int | None) -> _Decoded:
    """Open, check the size, and decode frame 0 with orientation applied."""
    with open_regular_file(path, "an image file") as fh:
        try:
            return _decode_open(fh, path, max_pixels)
        except InputError:
            raise
        except UnidentifiedImageError as exc:
            raise InputError(_unidentified(fh, path)) from exc


def _decode_open(fh: BinaryIO, path: str, max_pixels: int | None) -> _Decoded:
    try:
        with _PILLOW_GLOBALS_LOCK:
            default_limit = Image.MAX_IMAGE_PIXELS
            limit = default_limit if max_pixels is None else max_pixels
            try:
                with (
                    warnings.catch_warnings(record=True) as caught,
                    _pillow_log_captured() as logged,
                ):
                    warnings.simplefilter("always")
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    Image.MAX_IMAGE_PIXELS = limit
                    decoded = _open_and_load(fh, limit)
                messages = [_detail(w.message, path) for w in caught]
                messages += [_detail(text, path) for text in logged]
                for message in dict.fromkeys(messages):
                    decoded.notes.append(f"Pillow warned: {message}")
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                match = _BOMB_PIXELS.search(str(exc))
                raise InputError(_too_large(int(match.group(1)) if match else None, limit)) from exc
            finally:
                Image.MAX_IMAGE_PIXELS = default_limit
    except (InputError, UnidentifiedImageError):
        raise
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise open_error(exc, "an image file") from exc
    except MemoryError as exc:
        raise InputError("not enough memory to decode the image") from exc
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.EOVERFLOW):
            # A seek to an offset the corrupt file itself declared.
            raise InputError(
                "truncated or corrupt image data (invalid offset in the file)"
            ) from exc
        if exc.errno is not None:
            raise InputError(f"cannot read the file ({exc.strerror or exc.errno})") from exc
        raise InputError(f"truncated or corrupt image data ({_detail(exc, path)})") from exc
    except Exception as exc:
        # Pillow's decoders signal damaged data with many exception types
        # (SyntaxError, ValueError, struct.error, EOFError, IndexError,
        # TypeError, KeyError, ZeroDivisionError...). All of them mean the same
        # thing to the user, and none may escape as a traceback.
        raise InputError(f"truncated or corrupt image data ({_detail(exc, path)})") from exc
    return decoded


def _open_and_load(fh: BinaryIO, limit: int | None) -> _Decoded:
    notes: list[str] = []
    with Image.open(fh, formats=ALLOWED_FORMATS) as im:
        width, height = im.size
        if limit is not None and width * height > limit:
            raise InputError(_too_large(width * height, limit))
        fmt = im.format or "unknown"
        mode = im.mode
        rawmode = _rawmode(im)
        file_bits = _file_bits(im, fmt, rawmode)
        frames = _frame_count(im)
        if frames != 1:
            count = f" with {frames} frames" if frames else ""
            kind = "animated GIF" if fmt == "GIF" else f"multi-frame {fmt}"
            notes.append(f"{kind}{count}: first frame used")
            im.seek(0)
        im.load()
        orientation = _orientation(im, notes)
        image = ImageOps.exif_transpose(im) if orientation in _ORIENTATION_NOTES else im.copy()
        if orientation in _ORIENTATION_NOTES:
            notes.append(f"EXIF orientation applied ({_ORIENTATION_NOTES[orientation]})")
    return _Decoded(image, fmt, mode, rawmode, file_bits, notes, _tiff_signed(im, fmt))


def _tiff_signed(im: Image.Image, fmt: str) -> bool:
    """Whether a TIFF declares signed integer samples (SampleFormat 2)."""
    if fmt != "TIFF":
        return False
    tag = getattr(im, "tag_v2", {}).get(339)
    if isinstance(tag, tuple) and tag:
        tag = tag[0]
    return tag == 2


def _frame_count(im: Image.Image) -> int:
    """Number of frames, 0 if the count itself cannot be read."""
    if not getattr(im, "is_animated", False):
        return 1
    try:
        return int(getattr(im, "n_frames", 0))
    except (OSError, EOFError, ValueError, SyntaxError, struct.error):
        return 0


def _orientation(im: Image.Image, notes: list[str]) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:
        # Broken EXIF does not make the pixels unusable.
        notes.append("EXIF data unreadable: orientation not applied")
        return 1


def _rawmode(im: ImageFile.ImageFile) -> str:
    """The raw mode of the first tile: tells 16-bit files apart before decoding."""
    try:
        args = im.tile[0].args if im.tile else None
    except (AttributeError, IndexError):
        return ""
    if isinstance(args, str):
        return args
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0]
    return ""


def _file_bits(im: Image.Image, fmt: str, rawmode: str) -> int | None:
    """Bits per sample declared by the file, when Pillow exposes it."""
    if fmt == "TIFF":
        tag = getattr(im, "tag_v2", {}).get(258)
        if isinstance(tag, tuple) and tag:
            tag = tag[0]
        if isinstance(tag, int):
            return tag
    if ";16" in rawmode:
        return 16
    if ";32" in rawmode:
        return 32
    return None


# --------------------------------------------------------------------------- modes


def _to_array(decoded: _Decoded) -> _Pixels:
    """Pixels as float64 (not yet clipped), by an explicit rule for every Pillow mode."""
    mode = decoded.image.mode
    convert = _CONVERSIONS.get(mode)
    if convert is None:
        raise InputError(f"image mode {mode} is not supported")
    return convert(decoded)


def _eight_bit(values: np.ndarray) -> _Pixels:
    return _Pixels(values, 8, (0.0, 255.0), "8-bit: scaled by 255")


def _bilevel(decoded: _Decoded) -> _Pixels:
    im = decoded.image
    if im.info.get("transparency") is not None:
        grey = _grey_8(replace(decoded, image=im.convert("L")))
        return _Pixels(grey.values, 1, (0.0, 1.0), "1-bit")
    return _Pixels(np.asarray(im, dtype=bool).astype(np.float64), 1, (0.0, 1.0), "1-bit")


def _grey_8(decoded: _Decoded) -> _Pixels:
    im = decoded.image
    if decoded.signed and decoded.rawmode == "L":  # signed 8-bit TIFF samples
        return _integer_pixels(decoded, 8, True, None, np.int8)
    values = _grey(np.asarray(im), 255.0, im.info.get("transparency"), decoded.notes)
    return _eight_bit(values)


def _grey_alpha(decoded: _Decoded) -> _Pixels:
    im = decoded.image
    if im.mode == "La":  # premultiplied alpha: undone by Pillow
        im = im.convert("LA")
    return _eight_bit(_over_white(np.asarray(im, dtype=np.float64) / 255.0, decoded.notes))


def _grey_16(decoded: _Decoded) -> _Pixels:
    declared = decoded.file_bits if decoded.file_bits and decoded.file_bits < 16 else None
    return _integer_pixels(decoded, 16, False, declared)


def _grey_32(decoded: _Decoded) -> _Pixels:
    """Mode ``I``: 32-bit integers as Pillow stores them, from 16 or 32-bit files."""
    rawmode = decoded.rawmode
    container = 16 if (decoded.file_bits == 16 or rawmode.startswith("I;16")) else 32
    unsigned = rawmode in ("I;16", "I;16B", "I;16N", "I;32N")
    # Pillow keeps unsigned 32-bit samples in int32: read them back as uint32.
    view = np.uint32 if container == 32 and unsigned else None
    return _integer_pixels(decoded, container, not unsigned, None, view)


def _colour(decoded: _Decoded) -> _Pixels:
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


def _reduced_16_bit_colour(levels: np.ndarray, values: np.ndarray, notes: list[str]) -> _Pixels:
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
        return _Pixels(values, 8, (0.0, float(full)), scale)
    scale = "16-bit colour reduced to 8 bits by Pillow"
    notes.append(scale)
    return _Pixels(values, 8, (0.0, 65535.0), scale)


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


_CONVERSIONS: dict[str, Callable[[_Decoded], _Pixels]] = {
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
    decoded: _Decoded,
    container: int,
    signed: bool,
    declared: int | None,
    view: type | None = None,
) -> _Pixels:
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
    return _Pixels(values, container, (lo, hi), scale)


def _float_pixels(im: Image.Image, notes: list[str]) -> _Pixels:
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
    return _Pixels(values, 32, (lo, hi), scale)


def _too_large(pixels: int | None, limit: int | None) -> str:
    has = f"has {pixels} pixels" if pixels is not None else "has too many pixels"
    return f"image {has}, more than the limit of {limit} (raise it with --max-pixels)"


def _detail(exc: BaseException | Warning | str, path: str | os.PathLike[str]) -> str:
    """Exception text fit for one line, without the file's path."""
    text = str(exc) or type(exc).__name__
    if "truncated" in text.lower():
        return "the file ends before the image data does"
    for form in {os.fspath(path), repr(os.fspath(path)), os.path.abspath(path)}:
        text = text.replace(str(form), "<file>")
    text = " ".join(text.split())
    if len(text) > _MAX_DETAIL:
        text = text[: _MAX_DETAIL - 3] + "..."
    return text


def _unidentified(fh: BinaryIO, path: str) -> str:
    """Why Pillow could not identify the file, judged from its first bytes."""
    try:
        fh.seek(0)
        prefix = fh.read(16)
    except (OSError, ValueError):
        return "not an image Pillow can read"
    if not prefix:
        return "empty file"
    candidates = _formats_accepting(prefix)
    suffix_format = Image.registered_extensions().get(Path(path).suffix.lower())
    if suffix_format in candidates:
        candidates.remove(suffix_format)
        candidates.insert(0, suffix_format)
    if not candidates:
        return "not an image Pillow can read"
    fmt = candidates[0]
    failure = _tiff_failure(fh, path) if fmt == "TIFF" else None
    if failure is not None:
        return failure
    if fmt in ALLOWED_FORMATS:
        return f"truncated or corrupt image data (unreadable {fmt} header)"
    return f"format {fmt} is not supported (allowed: {_ALLOWED_TEXT})"


_TIFF_SAMPLE_FORMATS = {
    1: "unsigned integer",
    2: "signed integer",
    3: "floating-point",
    4: "untyped",
    5: "complex integer",
    6: "complex floating-point",
}
_TIFF_PHOTOMETRIC = {
    0: "grey",
    1: "grey",
    2: "RGB",
    3: "palette",
    4: "mask",
    5: "separated",
    6: "YCbCr",
    8: "CIELAB",
}


def _tiff_failure(fh: BinaryIO, path: str) -> str | None:
    """Why Pillow's TIFF reader refused the file, which ``Image.open`` does not tell.

    Only the header is parsed again (no pixel is decoded). A layout Pillow has
    no mode for (64-bit floats, float RGB, 5 samples...) is named as such.
    """
    try:
        with _PILLOW_GLOBALS_LOCK, _pillow_log_captured(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fh.seek(0)
            TiffImagePlugin.TiffImageFile(fh).close()
    except SyntaxError as exc:
        if str(exc) in ("unknown pixel mode", "Invalid value for samples per pixel"):
            layout = _tiff_layout(fh)
            if layout is not None:
                return f"TIFF layout not supported by Pillow ({layout})"
        return f"truncated or corrupt image data ({_detail(exc, path)})"
    except Exception as exc:
        return f"truncated or corrupt image data ({_detail(exc, path)})"
    return None


def _tiff_layout(fh: BinaryIO) -> str | None:
    """The sample layout a TIFF's first directory declares, e.g. ``"1 x 64-bit floating-point,
    grey"``; None if the directory cannot be read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fh.seek(0)
            ifd = TiffImagePlugin.ImageFileDirectory_v2(fh.read(8))
            fh.seek(ifd.next)
            ifd.load(fh)
            bits = ifd.get(258, (1,))
            kind = ifd.get(339, (1,))
            samples = int(ifd.get(277, 1))
            photometric = ifd.get(262)
    except Exception:
        return None
    bits = bits[0] if isinstance(bits, tuple) and bits else bits
    kind = kind[0] if isinstance(kind, tuple) and kind else kind
    text = f"{samples} x {bits}-bit {_TIFF_SAMPLE_FORMATS.get(kind, f'sample format {kind}')}"
    if photometric is not None:
        text += f", {_TIFF_PHOTOMETRIC.get(photometric, f'photometric {photometric}')}"
    return text


def _formats_accepting(prefix: bytes) -> list[str]:
    """Formats whose signature check accepts ``prefix``; nothing is parsed further."""
    Image.init()
    found = []
    for fmt in Image.ID:
        accept = Image.OPEN.get(fmt, (None, None))[1]
        if accept is None:
            continue  # formats without a signature would match anything
        try:
            result = accept(prefix)
        except Exception:
            continue
        if result is True or (result and not isinstance(result, str)):
            found.append(fmt)
    return found


def to_matrices(pixels: np.ndarray, channels: str) -> list[np.ndarray]:
    """The matrices to factorise for an image.

    Grey images give ``[pixels]`` whatever ``channels`` says. Colour images
    give ``[luminance]`` for ``"gray"`` (0.299 R + 0.587 G + 0.114 B),
    ``[hstack([R, G, B])]`` (H x 3W) for ``"stack"`` and ``[R, G, B]`` for
    ``"separate"``.
    """
    _check_channels(channels)
    pixels = np.asarray(pixels, dtype=np.float64)
    if pixels.ndim == 2:
        return [pixels.copy()]
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ParameterError(f"pixels must have shape (H, W) or (H, W, 3), got {pixels.shape}")
    planes = [pixels[:, :, c].copy() for c in range(3)]
    if channels == "gray":
        return [pixels @ _LUMA]
    if channels == "stack":
        return [np.hstack(planes)]
    return planes


def from_matrices(
    matrices: Sequence[np.ndarray], channels: str, shape: tuple[int, ...]
) -> np.ndarray:
    """Inverse of :func:`to_matrices`; ``shape`` is the original pixels' shape.

    ``"gray"`` on a colour shape gives an ``(H, W)`` grey image.
    """
    _check_channels(channels)
    mats = [np.asarray(m, dtype=np.float64) for m in matrices]
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] != 3):
        raise ParameterError(f"shape must be (H, W) or (H, W, 3), got {tuple(shape)}")
    height, width = int(shape[0]), int(shape[1])
    colour = len(shape) == 3
    if not colour or channels == "gray":
        _expect(mats, 1, (height, width), channels)
        return mats[0].copy()
    if channels == "stack":
        _expect(mats, 1, (height, 3 * width), channels)
        return np.stack(np.split(mats[0], 3, axis=1), axis=-1)
    _expect(mats, 3, (height, width), channels)
    return np.stack(mats, axis=-1)


def _expect(mats: list[np.ndarray], count: int, shape: tuple[int, int], channels: str) -> None:
    if len(mats) != count or any(m.shape != shape for m in mats):
        got = [m.shape for m in mats]
        raise ParameterError(
            f"channels {channels!r} needs {count} matrix(es) of shape {shape}, got {got}"
        )


def _check_channels(channels: str) -> None:
    if channels not in CHANNEL_MODES:
        raise ParameterError(
            f"unknown channel mode {channels!r} (allowed: {', '.join(CHANNEL_MODES)})"
        )


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
