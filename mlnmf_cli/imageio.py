"""Loading untrusted images into float matrices, and back.

Every image goes through :func:`load_image`, which follows Pillow's security
guide: an allow-list of formats, the decompression-bomb limit kept on (and
its warning treated as an error), the pixel data decoded inside the ``with``
block, EXIF orientation applied first, the first frame of an animation.
Whatever goes wrong with the file is reported as one
:class:`~mlnmf_cli.errors.InputError` whose message does not name the path
(the caller prefixes it).

Pixel values always come back as float64 in ``[0, 1]``, scaled by the real
bit depth of the data Pillow decoded:

* 1-bit images give 0 and 1; 8-bit images are divided by 255;
* 16-bit grey (Pillow modes ``I;16``, ``I;16B``, ... and mode ``I`` from a
  16-bit file) is divided by 65535, never squeezed through ``convert("L")``;
* 32-bit integers (mode ``I`` from a 32-bit file, or values above 65535) are
  divided by 2**32 - 1, negative values are clipped to 0;
* 32-bit floats (mode ``F``) are clipped to ``[0, 1]``;
* 16-bit colour is reduced to 8 bits by Pillow itself, which has no 16-bit
  colour modes; a note says so.

Transparency (LA, RGBA, PA, palette or grey with a transparent entry) is
composited over white: the background of every figure mlnmf draws. Only the
grey modes (1, L, LA, I, F and their 16-bit variants) give a 2-D array;
everything else, including a palette or RGB image that happens to hold only
greys, gives ``(H, W, 3)``.
"""

from __future__ import annotations

import errno
import os
import re
import struct
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from mlnmf_cli.errors import InputError, ParameterError, open_error
from mlnmf_cli.options import CHANNEL_MODES  # declared with the options

__all__ = [
    "ALLOWED_FORMATS",
    "CHANNEL_MODES",
    "IMAGE_SUFFIXES",
    "LoadedImage",
    "from_matrices",
    "load_image",
    "to_matrices",
]

ALLOWED_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP", "GIF")
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif"}
)

_ALLOWED_TEXT = "PNG, JPEG, TIFF, BMP, WebP, GIF"
_LUMA = np.array([0.299, 0.587, 0.114])
_GREY_MODES = frozenset({"1", "L", "LA", "I", "F"})
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
        1, 8, 16 or 32: the scale used to reach ``[0, 1]``.
    notes
        One-line remarks the user should see (alpha composited, first frame
        of an animation used, EXIF orientation applied, values clipped...).
    """

    pixels: np.ndarray
    format: str
    mode: str
    bit_depth: int
    notes: tuple[str, ...] = ()

    @property
    def is_color(self) -> bool:
        return self.pixels.ndim == 3

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)``."""
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))


@dataclass
class _Decoded:
    image: Image.Image
    format: str
    mode: str
    rawmode: str
    file_bits: int | None
    notes: list[str]


def load_image(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> LoadedImage:
    """Decode an untrusted image file into floats in ``[0, 1]``.

    Parameters
    ----------
    path
        The file to read. Only PNG, JPEG, TIFF, BMP, WebP and GIF are opened.
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
        pixels, bit_depth = _to_array(decoded)
    except (ValueError, OSError, MemoryError) as exc:
        raise InputError(
            f"image mode {decoded.mode} cannot be converted ({_detail(exc, path)})"
        ) from exc
    # In place on the one float64 array, a block of rows at a time: no
    # temporaries (not even NaN masks) as large as the image.
    pixels = np.ascontiguousarray(pixels, dtype=np.float64)
    if not pixels.flags.writeable:
        pixels = pixels.copy()
    step = max(1, _BLOCK_ELEMENTS // max(1, pixels[:1].size))
    for i in range(0, pixels.shape[0], step):
        block = pixels[i : i + step]
        np.nan_to_num(block, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
        np.clip(block, 0.0, 1.0, out=block)
    return LoadedImage(
        pixels=pixels,
        format=decoded.format,
        mode=decoded.mode,
        bit_depth=bit_depth,
        notes=tuple(decoded.notes),
    )


def _decode(path: str, max_pixels: int | None) -> _Decoded:
    """Open, check the size, and decode frame 0 with orientation applied."""
    try:
        with _PILLOW_GLOBALS_LOCK:
            default_limit = Image.MAX_IMAGE_PIXELS
            limit = default_limit if max_pixels is None else max_pixels
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    Image.MAX_IMAGE_PIXELS = limit
                    decoded = _open_and_load(path, limit)
                for message in dict.fromkeys(_detail(w.message, path) for w in caught):
                    decoded.notes.append(f"Pillow warned: {message}")
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                match = _BOMB_PIXELS.search(str(exc))
                raise InputError(_too_large(int(match.group(1)) if match else None, limit)) from exc
            finally:
                Image.MAX_IMAGE_PIXELS = default_limit
    except InputError:
        raise
    except UnidentifiedImageError as exc:
        raise InputError(_unidentified(path)) from exc
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


def _open_and_load(path: str, limit: int | None) -> _Decoded:
    notes: list[str] = []
    with Image.open(path, formats=ALLOWED_FORMATS) as im:
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
    return _Decoded(image, fmt, mode, rawmode, file_bits, notes)


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


def _to_array(decoded: _Decoded) -> tuple[np.ndarray, int]:
    """Pixels as float64 (not yet clipped) and the bit depth used to scale them."""
    im = decoded.image
    notes = decoded.notes
    mode = im.mode
    transparency = im.info.get("transparency")

    if mode == "1":
        return np.asarray(im, dtype=bool).astype(np.float64), 1
    if mode.startswith("I;16"):
        return _grey(np.asarray(im), 65535.0, transparency, notes), 16
    if mode == "I":
        return _int32_pixels(im, decoded.file_bits, transparency, notes)
    if mode == "F":
        return _float_pixels(np.asarray(im, dtype=np.float64), notes), 32
    if mode == "L":
        return _grey(np.asarray(im), 255.0, transparency, notes), 8
    if mode == "LA":
        return _over_white(np.asarray(im, dtype=np.float64) / 255.0, notes), 8

    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or transparency is not None or _palette_has_alpha(im)
        im = im.convert("RGBA" if has_alpha else "RGB")
    elif mode == "CMYK":
        im = im.convert("RGB")
        notes.append("CMYK converted to RGB without a colour profile")
    elif mode == "RGB" and transparency is not None:
        im = im.convert("RGBA")
    elif mode not in ("RGB", "RGBA"):
        im = im.convert("RGBA" if "A" in mode or "a" in mode else "RGB")

    if ";16" in decoded.rawmode:
        notes.append("16-bit colour reduced to 8 bits by Pillow")
    values = np.asarray(im, dtype=np.float64) / 255.0
    if im.mode == "RGBA":
        values = _over_white(values, notes)
    if decoded.rawmode.startswith("LA") and values.ndim == 3:
        return values[:, :, 0].copy(), 8
    return values, 8


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


def _int32_pixels(
    im: Image.Image, file_bits: int | None, transparency: object, notes: list[str]
) -> tuple[np.ndarray, int]:
    raw = np.asarray(im, dtype=np.int64)
    if raw.size and raw.min() < 0:
        notes.append("negative values clipped to 0")
        raw = np.maximum(raw, 0)
    fits_16 = raw.size == 0 or int(raw.max()) <= 65535
    bits = 16 if fits_16 and (file_bits is None or file_bits <= 16) else 32
    if bits == 16:
        return _grey(raw, 65535.0, transparency, notes), 16
    return raw.astype(np.float64) / float(2**32 - 1), 32


def _float_pixels(values: np.ndarray, notes: list[str]) -> np.ndarray:
    finite = np.isfinite(values)
    if not finite.all():
        values = np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=0.0)
        notes.append("NaN or infinite values replaced (NaN and -inf by 0, +inf by 1)")
    if values.size and (values.min() < 0.0 or values.max() > 1.0):
        notes.append("floating-point values clipped to [0, 1]")
        values = np.clip(values, 0.0, 1.0)
    return values


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


def _unidentified(path: str) -> str:
    """Why Pillow could not identify the file, judged from its first bytes."""
    try:
        with open(path, "rb") as fh:
            prefix = fh.read(16)
    except OSError:
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
    if fmt in ALLOWED_FORMATS:
        return f"truncated or corrupt image data (unreadable {fmt} header)"
    return f"format {fmt} is not supported (allowed: {_ALLOWED_TEXT})"


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


# Moved to render (pictures live there); re-exported until tests/test_imageio.py imports them
# from mlnmf_cli.render.
from mlnmf_cli.render import to_pil, to_pil_by_rows  # noqa: E402

__all__ += ["to_pil", "to_pil_by_rows"]
