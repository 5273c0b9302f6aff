"""Generators of test images, good and bad.

Every ``make_xxx(path) -> Path`` writes one file at ``path`` (a directory for
:func:`make_directory`) and returns it, so CLI tests can reuse them with
``tmp_path / "name.png"``. The expected pixel values are documented on each
function and exposed as module constants where a test needs them.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

GRAY16_VALUES = np.array([[0, 1000, 65535], [300, 40000, 12345]], dtype=np.uint16)
GRAY8_VALUES = np.array([[0, 64, 128, 255], [10, 20, 30, 40], [255, 0, 255, 0]], dtype=np.uint8)
RGB_VALUES = np.array(
    [[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[10, 20, 30], [200, 100, 50], [255, 255, 255]]],
    dtype=np.uint8,
)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _png_bytes(
    width: int, height: int, bit_depth: int, colour_type: int, rows: bytes, extra: bytes = b""
) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + extra
        + _png_chunk(b"IDAT", zlib.compress(rows))
        + _png_chunk(b"IEND", b"")
    )


def _write(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.write_bytes(data)
    return path


def _save(image: Image.Image, path: str | Path, **params: Any) -> Path:
    path = Path(path)
    image.save(path, **params)
    return path


# --- good images, one per mode -------------------------------------------------


def make_gray8_png(path: str | Path) -> Path:
    """Mode L, 3x4, values ``GRAY8_VALUES``."""
    return _save(Image.fromarray(GRAY8_VALUES), path)


def make_gray16_png(path: str | Path, values: np.ndarray | None = None) -> Path:
    """16-bit grey PNG (opens as ``I;16``), default 2x3 values ``GRAY16_VALUES``."""
    data = GRAY16_VALUES if values is None else np.asarray(values, dtype=np.uint16)
    return _save(Image.fromarray(data), path)


def make_gray16_tiff(path: str | Path) -> Path:
    """Little-endian 16-bit grey TIFF (mode ``I;16``), values ``GRAY16_VALUES``."""
    return _save(Image.fromarray(GRAY16_VALUES), path)


def make_gray16b_tiff(path: str | Path) -> Path:
    """Big-endian 16-bit grey TIFF (mode ``I;16B``), values ``GRAY16_VALUES``."""
    data = GRAY16_VALUES.astype(">u2").tobytes()
    height, width = GRAY16_VALUES.shape
    return _save(Image.frombytes("I;16B", (width, height), data), path)


def make_gray16_transparent_png(path: str | Path) -> Path:
    """16-bit grey PNG, 1x3 values 1000, 2000, 3000, with 2000 declared transparent."""
    rows = b"\x00" + np.array([1000, 2000, 3000], dtype=">u2").tobytes()
    trns = _png_chunk(b"tRNS", struct.pack(">H", 2000))
    return _write(path, _png_bytes(3, 1, 16, 0, rows, trns))


def make_rgb16_png(path: str | Path, values: np.ndarray | None = None) -> Path:
    """16-bit RGB PNG, default 1x2: (1000, 2000, 3000) and (65535, 0, 512); Pillow keeps 8 bits.

    ``values``: an H x W x 3 array of 16-bit levels instead."""
    if values is None:
        values = np.array([[[1000, 2000, 3000], [65535, 0, 512]]])
    data = np.asarray(values).astype(">u2")
    rows = b"".join(b"\x00" + row.tobytes() for row in data)
    return _write(path, _png_bytes(data.shape[1], data.shape[0], 16, 2, rows))


def make_int32_tiff(path: str | Path, values: np.ndarray | None = None) -> Path:
    """32-bit signed integer TIFF (mode ``I``), default 1x3 values 0, 100000, 2**31 - 1."""
    if values is None:
        values = np.array([[0, 100000, 2**31 - 1]], dtype=np.int32)
    return _save(Image.fromarray(np.asarray(values, dtype=np.int32)), path)


def make_float_tiff(path: str | Path, values: np.ndarray | None = None) -> Path:
    """32-bit float TIFF (mode ``F``), default 1x4 values 0, 0.25, 1.5, -0.5."""
    if values is None:
        values = np.array([[0.0, 0.25, 1.5, -0.5]], dtype=np.float32)
    return _save(Image.fromarray(np.asarray(values, dtype=np.float32)), path)


_TIFF_SAMPLE_FORMAT = {"u": 1, "i": 2, "f": 3, "c": 6}


def _pack_12_bits(values: np.ndarray) -> bytes:
    """Rows of 12-bit samples, most significant bits first, each row padded to a byte."""
    out = bytearray()
    for row in np.asarray(values, dtype=np.uint16).reshape(values.shape[0], -1):
        bits = "".join(format(int(v), "012b") for v in row)
        bits += "0" * (-len(bits) % 8)
        out += int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""
    return bytes(out)


def make_tiff_from_array(
    path: str | Path, values: np.ndarray, bits: int | None = None, photometric: int = 1
) -> Path:
    """An uncompressed little-endian TIFF of ``values`` (H x W, or H x W x samples), one strip.

    The sample format (unsigned, signed, float, complex) and bits per sample come
    from the dtype; ``bits=12`` packs uint16 values into 12-bit samples instead.
    Written by hand so that any layout can be made, including those Pillow
    cannot read (64-bit floats, 64-bit integers, complex samples).
    """
    data = np.asarray(values)
    height, width = data.shape[:2]
    samples = 1 if data.ndim == 2 else data.shape[2]
    sample_bits = bits or data.dtype.itemsize * 8
    body = (
        _pack_12_bits(data) if bits == 12 else data.astype(data.dtype.newbyteorder("<")).tobytes()
    )
    entries = [
        (256, 4, [width]), (257, 4, [height]), (258, 3, [sample_bits] * samples),
        (259, 3, [1]), (262, 3, [photometric]), (273, 4, [0]), (277, 3, [samples]),
        (278, 4, [height]), (279, 4, [len(body)]),
        (339, 3, [_TIFF_SAMPLE_FORMAT[data.dtype.kind]] * samples),
    ]  # fmt: skip
    ifd_size = 2 + 12 * len(entries) + 4
    extra_at = 8 + ifd_size
    extra = b""
    blobs = []
    for tag, kind, vals in entries:
        raw = struct.pack("<" + ("H" if kind == 3 else "I") * len(vals), *vals)
        if len(raw) > 4:
            blobs.append((tag, kind, len(vals), struct.pack("<I", extra_at + len(extra))))
            extra += raw
        else:
            blobs.append((tag, kind, len(vals), raw.ljust(4, b"\0")))
    strip_at = extra_at + len(extra)
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, field in blobs:
        if tag == 273:
            field = struct.pack("<I", strip_at)
        ifd += struct.pack("<HHI", tag, kind, count) + field
    ifd += struct.pack("<I", 0)
    return _write(path, b"II*\0" + struct.pack("<I", 8) + ifd + extra + body)


def make_lab_tiff(path: str | Path) -> Path:
    """CIELAB TIFF (mode ``LAB``), 1x3: sRGB red, white, black (Pillow's LAB encoding)."""
    image = Image.new("LAB", (3, 1))
    for x, lab in enumerate([(138, 209, 198), (255, 128, 128), (0, 128, 128)]):
        image.putpixel((x, 0), lab)
    return _save(image, path)


def make_multipage_tiff(path: str | Path, pages: int = 3) -> Path:
    """Grey TIFF with ``pages`` pages of 4x4, page i filled with 60 * i."""
    frames = [Image.new("L", (4, 4), 60 * i) for i in range(pages)]
    return _save(frames[0], path, save_all=True, append_images=frames[1:])


def make_fifo(path: str | Path) -> Path:
    """A named pipe (FIFO) with no writer: opening it for reading would block."""
    path = Path(path)
    os.mkfifo(path)
    return path


def make_bilevel_png(path: str | Path) -> Path:
    """Mode 1, 2x2: white, black / black, white."""
    image = Image.new("1", (2, 2), 0)
    image.putpixel((0, 0), 1)
    image.putpixel((1, 1), 1)
    return _save(image, path)


def make_la_png(path: str | Path) -> Path:
    """Mode LA, 1x3: grey 0 opaque, grey 0 fully transparent, grey 100 half (alpha 128)."""
    data = np.array([[[0, 255], [0, 0], [100, 128]]], dtype=np.uint8)
    return _save(Image.fromarray(data, "LA"), path)


def make_rgb_png(path: str | Path) -> Path:
    """Mode RGB, 2x3, values ``RGB_VALUES``."""
    return _save(Image.fromarray(RGB_VALUES), path)


def make_rgb_gray_png(path: str | Path) -> Path:
    """Mode RGB whose three channels are identical (must stay colour)."""
    grey = GRAY8_VALUES[..., None].repeat(3, axis=2)
    return _save(Image.fromarray(grey), path)


def make_rgba_png(path: str | Path) -> Path:
    """Mode RGBA, 1x2: opaque red, fully transparent blue."""
    data = np.array([[[255, 0, 0, 255], [0, 0, 255, 0]]], dtype=np.uint8)
    return _save(Image.fromarray(data), path)


def make_palette_png(path: str | Path) -> Path:
    """Mode P without transparency, 1x2: red, blue."""
    image = Image.new("P", (2, 1), 0)
    image.putpalette([255, 0, 0, 0, 0, 255])
    image.putpixel((1, 0), 1)
    return _save(image, path)


def make_palette_transparent_png(path: str | Path) -> Path:
    """Mode P, 1x2: red, then blue declared transparent (composites to white)."""
    image = Image.new("P", (2, 1), 0)
    image.putpalette([255, 0, 0, 0, 0, 255])
    image.putpixel((1, 0), 1)
    return _save(image, path, transparency=1)


def make_cmyk_jpeg(path: str | Path) -> Path:
    """CMYK JPEG, 8x8 of pure cyan (C=255): RGB (0, 255, 255) after conversion."""
    return _save(Image.new("CMYK", (8, 8), (255, 0, 0, 0)), path, quality=95)


def make_rgb_jpeg(path: str | Path, size: tuple[int, int] = (16, 8)) -> Path:
    """RGB JPEG, ``size`` = (width, height), a smooth gradient."""
    width, height = size
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    data = np.stack([x, y, 255 - x], axis=-1).astype(np.uint8)
    return _save(Image.fromarray(data), path, quality=90)


def make_exif_rotated_jpeg(path: str | Path, orientation: int = 6) -> Path:
    """JPEG stored 16 wide x 8 high, with EXIF orientation 6 (display rotated 90° cw).

    The left half is black and the right half white, so after rotation the
    top half is black.
    """
    data = np.zeros((8, 16, 3), dtype=np.uint8)
    data[:, 8:] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(Image.fromarray(data), path, exif=exif, quality=95)


def make_corrupt_exif_jpeg(path: str | Path) -> Path:
    """RGB JPEG, 4x2 black, whose EXIF block declares an entry it does not contain.

    Pillow warns "Corrupt EXIF data"; the pixels are fine.
    """
    exif = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff"
    return _save(Image.new("RGB", (4, 2)), path, exif=exif)


def make_animated_gif(path: str | Path, frames: int = 5) -> Path:
    """Animated GIF, 4x4, ``frames`` frames; frame 0 is black, the others grow lighter."""
    images = [Image.new("RGB", (4, 4), (i * 50, i * 50, i * 50)) for i in range(frames)]
    return _save(images[0], path, save_all=True, append_images=images[1:], duration=100)


def make_bmp(path: str | Path) -> Path:
    """RGB BMP, values ``RGB_VALUES``."""
    return _save(Image.fromarray(RGB_VALUES), path)


def make_webp_lossless(path: str | Path) -> Path:
    """Lossless RGB WebP, values ``RGB_VALUES``."""
    return _save(Image.fromarray(RGB_VALUES), path, lossless=True)


def make_1x1(path: str | Path) -> Path:
    """Mode L, one pixel of value 128."""
    return _save(Image.new("L", (1, 1), 128), path)


def make_all_black(path: str | Path, size: tuple[int, int] = (8, 8)) -> Path:
    """Mode L, all zeros."""
    return _save(Image.new("L", size, 0), path)


def make_all_white(path: str | Path, size: tuple[int, int] = (8, 8)) -> Path:
    """Mode L, all 255."""
    return _save(Image.new("L", size, 255), path)


def make_gray_png(path: str | Path, size: tuple[int, int] = (64, 48), seed: int = 0) -> Path:
    """Mode L of ``size`` = (width, height): a smooth pattern plus fixed-seed noise."""
    width, height = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    pattern = 0.5 + 0.25 * np.sin(xx / 5.0) + 0.2 * np.cos(yy / 7.0)
    noise = 0.05 * rng.random((height, width))
    data = np.clip(np.rint((pattern + noise) * 255), 0, 255).astype(np.uint8)
    return _save(Image.fromarray(data), path)


# --- bad files -----------------------------------------------------------------


def make_zero_byte(path: str | Path) -> Path:
    """An empty file."""
    return _write(path, b"")


def make_text_as_png(path: str | Path) -> Path:
    """Plain text under an image name."""
    return _write(path, b"this is not an image, just some text\n")


def make_truncated_png(path: str | Path) -> Path:
    """A 64x64 PNG cut in the middle of its image data."""
    full = Path(path).with_suffix(".full.png")
    make_gray_png(full, size=(64, 64))
    data = full.read_bytes()
    full.unlink()
    return _write(path, data[: len(data) // 2])


def make_truncated_jpeg(path: str | Path) -> Path:
    """A 64x64 JPEG cut in the middle of its entropy-coded data."""
    full = Path(path).with_suffix(".full.jpg")
    make_rgb_jpeg(full, size=(64, 64))
    data = full.read_bytes()
    full.unlink()
    return _write(path, data[: len(data) // 2])


def make_png_header_only(path: str | Path) -> Path:
    """The 8-byte PNG signature and nothing else."""
    return _write(path, b"\x89PNG\r\n\x1a\n")


def make_decompression_bomb(path: str | Path, width: int = 20000, height: int = 20000) -> Path:
    """A PNG of a few dozen bytes that declares ``width`` x ``height`` grey pixels.

    The default declares 400,000,000 pixels, more than twice Pillow's default
    limit, so Pillow raises ``DecompressionBombError``; 10000 x 10000 lies
    between the limit and twice the limit, where Pillow only warns.
    """
    return _write(path, _png_bytes(width, height, 8, 0, b"\x00" * 16))


def make_ico(path: str | Path) -> Path:
    """A valid Windows icon: a format Pillow reads but mlnmf refuses."""
    return _save(Image.new("RGB", (16, 16), (10, 20, 30)), path, format="ICO")


def make_pcx(path: str | Path) -> Path:
    """A valid PCX image: a format Pillow reads but mlnmf refuses."""
    return _save(Image.new("RGB", (4, 4), (10, 20, 30)), path, format="PCX")


def make_xpm(path: str | Path) -> Path:
    """A valid 2x2 XPM image: a format Pillow reads but mlnmf refuses."""
    text = (
        "/* XPM */\n"
        "static char *x[] = {\n"
        '"2 2 2 1",\n'
        '"a c #000000",\n'
        '"b c #FFFFFF",\n'
        '"ab",\n'
        '"ba"\n'
        "};\n"
    )
    return _write(path, text.encode("ascii"))


def make_directory(path: str | Path) -> Path:
    """A directory named like an image."""
    path = Path(path)
    path.mkdir()
    return path


def valid_png_bytes() -> bytes:
    """A small valid RGB PNG, for fuzzing."""
    rng = np.random.default_rng(1)

    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def valid_jpeg_bytes() -> bytes:
    """A small valid RGB JPEG, for fuzzing."""
    rng = np.random.default_rng(2)

    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()
