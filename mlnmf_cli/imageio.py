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
data's own range (12-bit data in a 16-bit file by 4095, floats by their finite
range...): :mod:`mlnmf_cli.pixel_modes` converts every Pillow mode or refuses
it by name, and :attr:`LoadedImage.value_range` records what became 0 and 1.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import struct
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, TiffImagePlugin, UnidentifiedImageError

from mlnmf_cli.errors import InputError, ParameterError, open_error
from mlnmf_cli.files import check_regular_file, open_regular_file
from mlnmf_cli.options import CHANNEL_MODES  # declared with the options
from mlnmf_cli.pixel_modes import Decoded, to_pixels

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
]

ALLOWED_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP", "GIF")
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif"}
)

_ALLOWED_TEXT = "PNG, JPEG, TIFF, BMP, WebP, GIF"
_LUMA = np.array([0.299, 0.587, 0.114])
_MAX_DETAIL = 160
# Entries per block when whole images are converted a block of rows at a time.
_BLOCK_ELEMENTS = 1 << 18

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


# --------------------------------------------------------------------------- decoding


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
        converted = to_pixels(decoded)
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


def _decode(path: str, max_pixels: int | None) -> Decoded:
    """Open, check the size, and decode frame 0 with orientation applied."""
    with open_regular_file(path, "an image file") as fh:
        try:
            return _decode_open(fh, path, max_pixels)
        except InputError:
            raise
        except UnidentifiedImageError as exc:
            raise InputError(_unidentified(fh, path)) from exc


def _decode_open(fh: BinaryIO, path: str, max_pixels: int | None) -> Decoded:
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


def _open_and_load(fh: BinaryIO, limit: int | None) -> Decoded:
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
    return Decoded(image, fmt, mode, rawmode, file_bits, notes, _tiff_signed(im, fmt))


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
