from __future__ import annotations

import errno
import os
import socket
import struct
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import imagegen as gen
import numpy as np
import pytest
from peak import traced_peak
from PIL import Image, ImageFile

from mlnmf_cli import files, imageio, pixel_modes
from mlnmf_cli.errors import InputError, ParameterError
from mlnmf_cli.imageio import (
    CHANNEL_MODES,
    LoadedImage,
    from_matrices,
    load_image,
    to_matrices,
)
from mlnmf_cli.render import to_pil, to_pil_by_rows

WHITE_NOTE = "alpha channel composited over white"
TRUNCATED = "truncated or corrupt image data (the file ends before the image data does)"


def check_pixels(img: LoadedImage) -> None:
    assert img.pixels.dtype == np.float64
    assert np.all(np.isfinite(img.pixels))
    assert img.pixels.min() >= 0.0
    assert img.pixels.max() <= 1.0


# --- good images -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("maker", "name", "fmt", "mode"),
    [
        (gen.make_gray16_png, "a.png", "PNG", "I;16"),
        (gen.make_gray16_tiff, "a.tif", "TIFF", "I;16"),
        (gen.make_gray16b_tiff, "a.tif", "TIFF", "I;16B"),
    ],
)
def test_16_bit_grey_keeps_16_bits(
    maker: Callable[[Path], Path], name: str, fmt: str, mode: str, tmp_path: Path
) -> None:
    img = load_image(maker(tmp_path / name))
    assert (img.format, img.mode, img.bit_depth, img.is_color) == (fmt, mode, 16, False)
    assert img.size == gen.GRAY16_VALUES.shape
    np.testing.assert_array_equal(img.pixels, gen.GRAY16_VALUES / 65535.0)
    assert img.pixels[0, 1] == 1000 / 65535  # not 3 / 255
    assert img.notes == ()


def test_16_bit_grey_transparent_level_becomes_white(tmp_path: Path) -> None:
    # The transparent level (2000 here) does not count in the data's range.
    img = load_image(gen.make_gray16_transparent_png(tmp_path / "t.png"))
    np.testing.assert_array_equal(img.pixels, [[1000 / 4095, 1.0, 3000 / 4095]])
    assert img.notes == (
        "12-bit data in a 16-bit container: scaled by 4095",
        "transparent pixels composited over white",
    )


def test_16_bit_colour_is_reduced_by_pillow_and_said_so(tmp_path: Path) -> None:
    img = load_image(gen.make_rgb16_png(tmp_path / "c.png"))
    assert (img.mode, img.bit_depth, img.pixels.shape) == ("RGB", 8, (1, 2, 3))
    np.testing.assert_array_equal(img.pixels[0, 1] * 255, [255, 0, 2])
    assert img.notes == ("16-bit colour reduced to 8 bits by Pillow",)


def test_12_bit_colour_is_scaled_by_the_bits_pillow_keeps(tmp_path: Path) -> None:
    """Pillow keeps the high byte of 16-bit colour: 12-bit data leave 0 to 15 there."""
    values = np.array([[[0, 1000, 4080], [4095, 2000, 17]]])
    img = load_image(gen.make_rgb16_png(tmp_path / "c.png", values))
    np.testing.assert_allclose(img.pixels, (values >> 8) / 15)
    assert (img.bit_depth, img.value_range) == (8, (0.0, 4095.0))
    assert img.notes == (
        "16-bit colour reduced to 8 bits by Pillow: 12-bit data, scaled by 4095 (4 bits kept)",
    )


def test_gray8(tmp_path: Path) -> None:
    img = load_image(gen.make_gray8_png(tmp_path / "g.png"))
    assert (img.format, img.mode, img.bit_depth, img.is_color) == ("PNG", "L", 8, False)
    np.testing.assert_array_equal(img.pixels, gen.GRAY8_VALUES / 255.0)


def test_bilevel(tmp_path: Path) -> None:
    img = load_image(gen.make_bilevel_png(tmp_path / "b.png"))
    assert (img.mode, img.bit_depth) == ("1", 1)
    np.testing.assert_array_equal(img.pixels, [[1.0, 0.0], [0.0, 1.0]])


def test_int32_scaled_by_its_maximum(tmp_path: Path) -> None:
    img = load_image(gen.make_int32_tiff(tmp_path / "i.tif"))
    assert (img.mode, img.bit_depth, img.is_color) == ("I", 32, False)
    top = 2**31 - 1
    np.testing.assert_array_equal(img.pixels, [[0.0, 100000 / top, 1.0]])
    assert img.value_range == (0.0, top) and img.peak == top
    assert img.notes == (f"32-bit integer data: scaled by its maximum {top}",)


def test_int32_negative_values_mapped_from_their_range(tmp_path: Path) -> None:
    img = load_image(gen.make_int32_tiff(tmp_path / "i.tif", np.array([[-5, 70000, 0]])))
    np.testing.assert_allclose(img.pixels, [[0.0, 1.0, 5 / 70005]], rtol=1e-15)
    assert img.value_range == (-5.0, 70000.0) and img.peak == 70005.0
    assert img.notes == ("signed 32-bit values from -5 to 70000: mapped linearly to [0, 1]",)


def test_float_with_negatives_mapped_from_its_range(tmp_path: Path) -> None:
    img = load_image(gen.make_float_tiff(tmp_path / "f.tif"))  # 0, 0.25, 1.5, -0.5
    assert (img.mode, img.bit_depth) == ("F", 32)
    np.testing.assert_array_equal(img.pixels, [[0.25, 0.375, 1.0, 0.0]])
    assert img.value_range == (-0.5, 1.5)
    assert img.notes == ("floating-point values from -0.5 to 1.5: mapped linearly to [0, 1]",)


def test_float_above_one_scaled_by_its_maximum_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0.0, 1.0, 250.0, 1000.0]], dtype=np.float32)
    img = load_image(gen.make_float_tiff(tmp_path / "f.tif", values))
    np.testing.assert_array_equal(img.pixels, [[0.0, 0.001, 0.25, 1.0]])
    assert (img.value_range, img.peak) == ((0.0, 1000.0), 1000.0)
    assert img.scale == "floating-point values up to 1000: scaled by their maximum"
    assert img.notes == (img.scale,)


def test_float_in_range_has_no_note(tmp_path: Path) -> None:
    img = load_image(gen.make_float_tiff(tmp_path / "f.tif", np.array([[0.0, 0.5, 1.0]])))
    np.testing.assert_array_equal(img.pixels, [[0.0, 0.5, 1.0]])
    assert img.notes == () and img.value_range == (0.0, 1.0)


def test_float_nan_and_inf_replaced_by_the_ends_of_the_range(tmp_path: Path) -> None:
    values = np.array([[np.nan, np.inf, -np.inf, 0.5, 4.0]], dtype=np.float32)
    img = load_image(gen.make_float_tiff(tmp_path / "f.tif", values))
    np.testing.assert_array_equal(img.pixels, [[0.0, 1.0, 0.0, 0.125, 1.0]])
    assert img.notes == (
        "floating-point values up to 4: scaled by their maximum",
        "3 NaN or infinite values replaced (NaN and -inf by the lowest value, +inf by the highest)",
    )


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_float_without_a_finite_value_is_refused(value: float, tmp_path: Path) -> None:
    path = gen.make_float_tiff(tmp_path / "f.tif", np.full((2, 3), value, dtype=np.float32))
    with pytest.raises(InputError) as info:
        load_image(path)
    assert str(info.value) == "floating-point image has no finite value (all NaN or infinite)"


@pytest.mark.parametrize(
    ("value", "expected", "value_range"),
    [(7.0, 1.0, (0.0, 7.0)), (-7.0, 0.0, (-7.0, -6.0)), (0.3, 0.3, (0.0, 1.0))],
)
def test_constant_float_images(
    value: float, expected: float, value_range: tuple[float, float], tmp_path: Path
) -> None:
    path = gen.make_float_tiff(tmp_path / "f.tif", np.full((2, 2), value, dtype=np.float32))
    img = load_image(path)
    np.testing.assert_allclose(img.pixels, expected, rtol=1e-7)
    assert img.value_range == pytest.approx(value_range)


@pytest.mark.parametrize(
    ("top", "bits"), [(200, 8), (1000, 10), (4080, 12), (16000, 14), (16384, 16)]
)
def test_16_bit_container_scaled_by_the_bits_its_data_uses(
    top: int, bits: int, tmp_path: Path
) -> None:
    values = np.array([[0, top // 2, top]], dtype=np.uint16)
    img = load_image(gen.make_gray16_png(tmp_path / "g.png", values))
    peak = 2**bits - 1
    np.testing.assert_array_equal(img.pixels, values / peak)
    assert (img.bit_depth, img.value_range, img.peak) == (16, (0.0, peak), peak)
    note = f"{bits}-bit data in a 16-bit container: scaled by {peak}"
    assert img.notes == (() if bits == 16 else (note,))
    assert img.scale == ("16-bit: scaled by 65535" if bits == 16 else note)


def test_all_zero_16_bit_image_stays_black(tmp_path: Path) -> None:
    img = load_image(gen.make_gray16_png(tmp_path / "g.png", np.zeros((2, 2), np.uint16)))
    np.testing.assert_array_equal(img.pixels, 0.0)
    assert (img.value_range, img.notes) == ((0.0, 65535.0), ())


def test_12_bit_tiff_declared_by_its_header(tmp_path: Path) -> None:
    values = np.array([[0, 7, 4000]], np.uint16)
    img = load_image(gen.make_tiff_from_array(tmp_path / "t.tif", values, bits=12))
    np.testing.assert_array_equal(img.pixels, values / 4095)
    assert img.notes == ("12-bit data in a 16-bit container: scaled by 4095",)


@pytest.mark.parametrize(
    ("dtype", "values", "expected", "note"),
    [
        (np.int16, [[-300, 0, 3000]], [[0.0, 300 / 3300, 1.0]],
         "signed 16-bit values from -300 to 3000: mapped linearly to [0, 1]"),
        (np.int16, [[0, 30000]], [[0.0, 30000 / 32767]], None),
        (np.int8, [[-3, 5]], [[0.0, 1.0]],
         "signed 8-bit values from -3 to 5: mapped linearly to [0, 1]"),
        (np.uint32, [[0, 3_000_000_000]], [[0.0, 1.0]],
         "32-bit integer data: scaled by its maximum 3000000000"),
    ],
)  # fmt: skip
def test_signed_and_unsigned_tiff_integers(
    dtype: type, values: list, expected: list, note: str | None, tmp_path: Path
) -> None:
    path = gen.make_tiff_from_array(tmp_path / "t.tif", np.array(values, dtype=dtype))
    img = load_image(path)
    np.testing.assert_allclose(img.pixels, expected, rtol=1e-15)
    assert img.notes == (() if note is None else (note,))


@pytest.mark.parametrize(
    ("dtype", "layout"),
    [
        (np.float64, "1 x 64-bit floating-point, grey"),
        (np.uint64, "1 x 64-bit unsigned integer, grey"),
        (np.complex64, "1 x 64-bit complex floating-point, grey"),
        ((np.uint8, 7), "7 x 8-bit unsigned integer, grey"),
    ],
)
def test_tiff_layouts_pillow_cannot_decode_are_named(
    dtype: type | tuple[type, int], layout: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    dtype, samples = dtype if isinstance(dtype, tuple) else (dtype, 1)
    path = gen.make_tiff_from_array(tmp_path / "t.tif", np.zeros((2, 2, samples), dtype=dtype))
    with pytest.raises(InputError) as info:
        load_image(path)
    assert str(info.value) == f"TIFF layout not supported by Pillow ({layout})"
    assert capfd.readouterr() == ("", "")  # Pillow's log of 7 samples is not printed


def test_lab_tiff_becomes_srgb_colour_not_one_grey_channel(tmp_path: Path) -> None:
    img = load_image(gen.make_lab_tiff(tmp_path / "lab.tif"))
    assert (img.mode, img.is_color) == ("LAB", True)
    np.testing.assert_allclose(
        img.pixels[0] * 255, [[255, 0, 0], [255, 255, 255], [0, 0, 0]], atol=6
    )
    assert img.notes == ("CIELAB converted to sRGB (D50 white point)",)


def test_lab_is_refused_by_name_when_pillow_cannot_convert_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pixel_modes, "_pillow_converts_lab", lambda: False)
    with pytest.raises(InputError) as info:
        load_image(gen.make_lab_tiff(tmp_path / "lab.tif"))
    assert str(info.value) == "image mode LAB (CIELAB) is not supported by this Pillow"


@pytest.mark.parametrize(
    ("mode", "colour", "expected", "notes"),
    [
        ("YCbCr", (76, 85, 255), [255, 0, 0], ("YCbCr converted to RGB",)),
        (
            "CMYK",
            (0, 255, 255, 0),
            [255, 0, 0],
            ("CMYK converted to RGB without a colour profile",),
        ),
        ("RGBX", (255, 0, 0, 7), [255, 0, 0], ()),
        ("RGBa", (128, 0, 0, 128), [255, 127, 127], ("alpha channel composited over white",)),
    ],
)
def test_other_colour_modes_are_converted(
    mode: str, colour: tuple, expected: list, notes: tuple, tmp_path: Path
) -> None:
    image = Image.new(mode, (2, 1), colour)
    decoded = pixel_modes.Decoded(image, "TIFF", mode, mode, 8, [])
    pixels = pixel_modes.to_pixels(decoded)
    assert pixels.values.shape == (1, 2, 3)
    np.testing.assert_allclose(pixels.values[0, 0] * 255, expected, atol=2)
    assert tuple(decoded.notes) == notes


def test_hsv_is_converted() -> None:
    decoded = pixel_modes.Decoded(
        Image.new("HSV", (1, 1), (0, 255, 255)), "TIFF", "HSV", "HSV", 8, []
    )
    np.testing.assert_array_equal(pixel_modes.to_pixels(decoded).values[0, 0], [1.0, 0.0, 0.0])


def test_an_unknown_mode_is_refused_by_name() -> None:
    image = SimpleNamespace(mode="BGR;15", info={})
    with pytest.raises(InputError) as info:
        pixel_modes.to_pixels(pixel_modes.Decoded(image, "BMP", "BGR;15", "", 16, []))  # type: ignore[arg-type]
    assert str(info.value) == "image mode BGR;15 is not supported"


def test_la_premultiplied_alpha() -> None:
    image = Image.new("La", (1, 1), (50, 128))
    decoded = pixel_modes.Decoded(image, "TIFF", "La", "La", 8, [])
    values = pixel_modes.to_pixels(decoded).values
    assert values.shape == (1, 1)
    assert values[0, 0] == pytest.approx((50 / 128) * (128 / 255) + 1 - 128 / 255, abs=2 / 255)


def test_la_composited_over_white_and_stays_grey(tmp_path: Path) -> None:
    img = load_image(gen.make_la_png(tmp_path / "la.png"))
    assert (img.mode, img.is_color) == ("LA", False)
    half = 128 / 255
    np.testing.assert_allclose(img.pixels, [[0.0, 1.0, 100 / 255 * half + 1 - half]])
    assert img.notes == (WHITE_NOTE,)


def test_rgb(tmp_path: Path) -> None:
    img = load_image(gen.make_rgb_png(tmp_path / "c.png"))
    assert (img.mode, img.bit_depth, img.is_color, img.size) == ("RGB", 8, True, (2, 3))
    np.testing.assert_array_equal(img.pixels, gen.RGB_VALUES / 255.0)


def test_rgb_with_equal_channels_stays_colour(tmp_path: Path) -> None:
    img = load_image(gen.make_rgb_gray_png(tmp_path / "c.png"))
    assert img.pixels.shape == (*gen.GRAY8_VALUES.shape, 3)


def test_rgba_composited_over_white(tmp_path: Path) -> None:
    img = load_image(gen.make_rgba_png(tmp_path / "c.png"))
    np.testing.assert_array_equal(img.pixels, [[[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]])
    assert img.notes == (WHITE_NOTE,)


def test_palette_without_transparency(tmp_path: Path) -> None:
    img = load_image(gen.make_palette_png(tmp_path / "p.png"))
    assert img.mode == "P"
    np.testing.assert_array_equal(img.pixels, [[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    assert img.notes == ()


def test_palette_with_transparency_composited_over_white(tmp_path: Path) -> None:
    img = load_image(gen.make_palette_transparent_png(tmp_path / "p.png"))
    assert img.mode == "P"
    np.testing.assert_array_equal(img.pixels, [[[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]])
    assert img.notes == (WHITE_NOTE,)


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    img = load_image(gen.make_cmyk_jpeg(tmp_path / "c.jpg"))
    assert (img.format, img.mode, img.pixels.shape) == ("JPEG", "CMYK", (8, 8, 3))
    np.testing.assert_allclose(img.pixels[4, 4], [0.0, 1.0, 1.0], atol=3 / 255)
    assert img.notes == ("CMYK converted to RGB without a colour profile",)


def test_exif_orientation_applied(tmp_path: Path) -> None:
    img = load_image(gen.make_exif_rotated_jpeg(tmp_path / "r.jpg"))
    assert img.size == (16, 8)  # stored 8 high x 16 wide
    assert img.pixels[:6].max() < 0.1  # the black left half is now on top
    assert img.pixels[10:].min() > 0.9
    assert img.notes == ("EXIF orientation applied (rotated 90° clockwise)",)


def test_exif_orientation_8(tmp_path: Path) -> None:
    img = load_image(gen.make_exif_rotated_jpeg(tmp_path / "r.jpg", orientation=8))
    assert img.size == (16, 8)
    assert img.pixels[:6].min() > 0.9  # counter-clockwise: the white right half on top
    assert img.notes == ("EXIF orientation applied (rotated 90° counter-clockwise)",)


def test_animated_gif_first_frame_with_note(tmp_path: Path) -> None:
    img = load_image(gen.make_animated_gif(tmp_path / "a.gif", frames=5))
    assert (img.format, img.pixels.shape) == ("GIF", (4, 4, 3))
    np.testing.assert_array_equal(img.pixels, 0.0)
    assert img.notes == ("animated GIF with 5 frames: first frame used",)


def test_pillow_warnings_become_notes_not_output(tmp_path: Path) -> None:
    path = gen.make_corrupt_exif_jpeg(tmp_path / "e.jpg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        img = load_image(path)
    assert img.size == (2, 4)
    assert img.notes == (
        "Pillow warned: Corrupt EXIF data. Expecting to read 12 bytes but only got 0.",
    )


@pytest.mark.parametrize(
    ("maker", "name", "fmt"),
    [(gen.make_bmp, "a.bmp", "BMP"), (gen.make_webp_lossless, "a.webp", "WEBP")],
)
def test_other_allowed_formats(
    maker: Callable[[Path], Path], name: str, fmt: str, tmp_path: Path
) -> None:
    img = load_image(maker(tmp_path / name))
    assert img.format == fmt
    np.testing.assert_array_equal(img.pixels, gen.RGB_VALUES / 255.0)


@pytest.mark.parametrize(
    ("maker", "value"),
    [(gen.make_1x1, 128 / 255), (gen.make_all_black, 0.0), (gen.make_all_white, 1.0)],
)
def test_trivial_images(maker: Callable[[Path], Path], value: float, tmp_path: Path) -> None:
    img = load_image(maker(tmp_path / "x.png"))
    check_pixels(img)
    np.testing.assert_array_equal(img.pixels, value)


def test_path_can_be_str(tmp_path: Path) -> None:
    assert load_image(str(gen.make_1x1(tmp_path / "x.png"))).size == (1, 1)


def test_every_maker_for_a_good_image_loads_cleanly(tmp_path: Path) -> None:
    good = [
        gen.make_gray8_png, gen.make_gray16_png, gen.make_rgb_png, gen.make_rgba_png,
        gen.make_la_png, gen.make_palette_png, gen.make_palette_transparent_png,
        gen.make_bilevel_png, gen.make_1x1, gen.make_gray_png,
    ]  # fmt: skip
    for i, maker in enumerate(good):
        check_pixels(load_image(maker(tmp_path / f"{i}.png")))


# --- bad files -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("maker", "name", "message"),
    [
        (gen.make_zero_byte, "z.png", "empty file"),
        (gen.make_text_as_png, "t.png", "not an image Pillow can read"),
        (gen.make_truncated_png, "t.png", TRUNCATED),
        (gen.make_truncated_jpeg, "t.jpg", TRUNCATED),
        (
            gen.make_png_header_only,
            "h.png",
            "truncated or corrupt image data (unreadable PNG header)",
        ),
        (gen.make_directory, "d.png", "is a directory, not an image file"),
        (
            gen.make_decompression_bomb,
            "b.png",
            "image has 400000000 pixels, more than the limit of 89478485 (raise it with --max-pixels)",
        ),
        (
            gen.make_ico,
            "i.ico",
            "format ICO is not supported (allowed: PNG, JPEG, TIFF, BMP, WebP, GIF)",
        ),
        (
            gen.make_pcx,
            "i.pcx",
            "format PCX is not supported (allowed: PNG, JPEG, TIFF, BMP, WebP, GIF)",
        ),
        (
            gen.make_xpm,
            "i.xpm",
            "format XPM is not supported (allowed: PNG, JPEG, TIFF, BMP, WebP, GIF)",
        ),
        (
            gen.make_ico,
            "renamed.png",
            "format ICO is not supported (allowed: PNG, JPEG, TIFF, BMP, WebP, GIF)",
        ),
    ],
)
def test_bad_files_raise_input_error(
    maker: Callable[[Path], Path], name: str, message: str, tmp_path: Path
) -> None:
    path = maker(tmp_path / name)
    with pytest.raises(InputError) as info:
        load_image(path)
    assert str(info.value) == message
    assert str(tmp_path) not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^file not found$"):
        load_image(tmp_path / "nope.png")


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            OSError(errno.EINVAL, "Invalid argument"),
            "truncated or corrupt image data (invalid offset in the file)",
        ),
        (OSError(errno.EIO, "Input/output error"), "cannot read the file (Input/output error)"),
        (MemoryError(), "not enough memory to decode the image"),
        (
            struct.error("unpack requires a buffer of 4 bytes"),
            "truncated or corrupt image data (unpack requires a buffer of 4 bytes)",
        ),
        (KeyError("x"), "truncated or corrupt image data ('x')"),
    ],
)
def test_decoder_failures_are_mapped(
    error: BaseException, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = gen.make_gray8_png(tmp_path / "g.png")

    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(Image.Image, "load", fail)
    monkeypatch.setattr(ImageFile.ImageFile, "load", fail)
    with pytest.raises(InputError) as info:
        load_image(path)
    assert str(info.value) == message


def test_bomb_between_limit_and_twice_the_limit_is_refused_without_a_warning(
    tmp_path: Path,
) -> None:
    path = gen.make_decompression_bomb(tmp_path / "b.png", 10000, 10000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError) as info:
            load_image(path)
    assert str(info.value) == (
        "image has 100000000 pixels, more than the limit of 89478485 (raise it with --max-pixels)"
    )


def test_max_pixels_lowers_the_limit(tmp_path: Path) -> None:
    path = gen.make_gray_png(tmp_path / "g.png", size=(100, 50))
    assert load_image(path, max_pixels=5000).size == (50, 100)
    with pytest.raises(InputError) as info:
        load_image(path, max_pixels=4999)
    assert str(info.value) == (
        "image has 5000 pixels, more than the limit of 4999 (raise it with --max-pixels)"
    )
    with pytest.raises(InputError, match="more than the limit of 1000 "):
        load_image(path, max_pixels=1000)  # beyond twice the limit: Pillow's own error


def test_max_pixels_raises_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow checks the limit when the header is read (PNG), when tiles are
    # allocated (TIFF) and when frames grow (GIF): all must honour max_pixels.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    png = gen.make_gray_png(tmp_path / "g.png", size=(100, 50))
    tiff = tmp_path / "big.tif"
    Image.new("I;16", (100, 50), 7).save(tiff)
    gif = tmp_path / "big.gif"
    frames = [Image.new("RGB", (100, 50), (i, i, i)) for i in (0, 90)]
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    for path in (png, tiff, gif):
        with pytest.raises(InputError, match="more than the limit of 1000 "):
            load_image(path)
        assert load_image(path, max_pixels=5000).size == (50, 100)
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_global_limit_and_warning_filters_restored(tmp_path: Path) -> None:
    before_limit, before_filters = Image.MAX_IMAGE_PIXELS, list(warnings.filters)
    load_image(gen.make_1x1(tmp_path / "x.png"), max_pixels=10)
    with pytest.raises(InputError):
        load_image(gen.make_decompression_bomb(tmp_path / "b.png"), max_pixels=10)
    assert Image.MAX_IMAGE_PIXELS == before_limit
    assert list(warnings.filters) == before_filters


def test_concurrent_loads_with_different_limits(tmp_path: Path) -> None:
    path = gen.make_gray_png(tmp_path / "g.png", size=(100, 50))
    outcomes: list[str] = []

    def run(limit: int) -> None:
        for _ in range(20):
            try:
                load_image(path, max_pixels=limit)
                outcomes.append(f"ok {limit}")
            except InputError:
                outcomes.append(f"refused {limit}")

    threads = [threading.Thread(target=run, args=(limit,)) for limit in (100, 10**6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(outcomes)) == ["ok 1000000", "refused 100"]
    assert Image.MAX_IMAGE_PIXELS == 89478485


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_max_pixels_must_be_positive_int(bad: object, tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="max_pixels must be a positive integer"):
        load_image(gen.make_1x1(tmp_path / "x.png"), max_pixels=bad)  # type: ignore[arg-type]


# --- channel layouts -------------------------------------------------------------


def test_to_matrices_colour_layouts() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.random((4, 5, 3))
    (gray,) = to_matrices(pixels, "gray")
    np.testing.assert_allclose(
        gray, 0.299 * pixels[..., 0] + 0.587 * pixels[..., 1] + 0.114 * pixels[..., 2]
    )
    (stack,) = to_matrices(pixels, "stack")
    assert stack.shape == (4, 15)
    np.testing.assert_array_equal(stack[:, 5:10], pixels[..., 1])
    separate = to_matrices(pixels, "separate")
    assert len(separate) == 3
    np.testing.assert_array_equal(separate[2], pixels[..., 2])


@pytest.mark.parametrize("channels", CHANNEL_MODES)
def test_grey_pixels_give_one_matrix_whatever_the_mode(channels: str) -> None:
    pixels = np.arange(6.0).reshape(2, 3) / 5
    (matrix,) = to_matrices(pixels, channels)
    np.testing.assert_array_equal(matrix, pixels)
    np.testing.assert_array_equal(from_matrices([matrix], channels, pixels.shape), pixels)


@pytest.mark.parametrize("channels", ["stack", "separate"])
@pytest.mark.parametrize("shape", [(4, 5, 3), (1, 1, 3), (7, 2, 3)])
def test_colour_round_trip_is_exact(channels: str, shape: tuple[int, int, int]) -> None:
    pixels = np.random.default_rng(1).random(shape)
    back = from_matrices(to_matrices(pixels, channels), channels, pixels.shape)
    np.testing.assert_array_equal(back, pixels)


def test_gray_on_colour_returns_the_luminance_image() -> None:
    pixels = np.random.default_rng(2).random((3, 4, 3))
    matrices = to_matrices(pixels, "gray")
    back = from_matrices(matrices, "gray", pixels.shape)
    assert back.shape == (3, 4)
    np.testing.assert_array_equal(back, matrices[0])


def test_unknown_channel_mode() -> None:
    message = "unknown channel mode 'rgb' (allowed: gray, stack, separate)"
    with pytest.raises(ParameterError) as info:
        to_matrices(np.zeros((2, 2)), "rgb")
    assert str(info.value) == message
    with pytest.raises(ParameterError):
        from_matrices([np.zeros((2, 2))], "rgb", (2, 2))


def test_from_matrices_checks_shapes() -> None:
    with pytest.raises(ParameterError, match="needs 3 matrix"):
        from_matrices([np.zeros((2, 2))] * 2, "separate", (2, 2, 3))
    with pytest.raises(ParameterError, match=r"shape \(2, 6\)"):
        from_matrices([np.zeros((2, 5))], "stack", (2, 2, 3))


# --- to_pil ----------------------------------------------------------------------


def test_to_pil_rounds_and_clips() -> None:
    image = to_pil(np.array([[0.0, 0.499 / 255, 0.5 / 255 + 1e-9, 1.7 / 255, -3.0, 2.0, np.nan]]))
    assert image.mode == "L"
    assert list(np.asarray(image)[0]) == [0, 0, 1, 2, 0, 255, 0]


def test_to_pil_colour_and_round_trip_of_8_bit_values(tmp_path: Path) -> None:
    img = load_image(gen.make_rgb_png(tmp_path / "c.png"))
    image = to_pil(img.pixels)
    assert image.mode == "RGB" and image.size == (3, 2)
    np.testing.assert_array_equal(np.asarray(image), gen.RGB_VALUES)


def test_to_pil_rejects_other_shapes() -> None:
    with pytest.raises(ParameterError):
        to_pil(np.zeros((2, 2, 4)))


def _reference_pil(pixels: np.ndarray) -> np.ndarray:
    """The former to_pil, on full float64 copies."""
    values = np.nan_to_num(np.asarray(pixels, dtype=np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


@pytest.mark.parametrize("shape", [(1, 1), (700, 450), (300, 200, 3)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_to_pil_by_blocks_is_the_full_conversion(shape: tuple[int, ...], dtype: type) -> None:
    rng = np.random.default_rng(3)
    pixels = rng.normal(0.5, 0.6, shape)
    pixels.flat[::7] = np.round(pixels.flat[::7] * 510) / 510  # exact half levels
    pixels.flat[::97] = np.nan
    pixels.flat[::89] = np.inf
    pixels.flat[::83] = -np.inf
    pixels = pixels.astype(dtype)
    expected = _reference_pil(pixels)
    np.testing.assert_array_equal(np.asarray(to_pil(pixels)), expected)
    by_rows = to_pil_by_rows(pixels.shape, lambda i, j: pixels[i:j])
    np.testing.assert_array_equal(np.asarray(by_rows), expected)


def test_to_pil_by_rows_rejects_other_shapes() -> None:
    with pytest.raises(ParameterError):
        to_pil_by_rows((2, 2, 4), lambda i, j: np.zeros((j - i, 2, 4)))


def test_to_pil_makes_no_full_size_float_copy() -> None:
    pixels = np.random.default_rng(4).random((1536, 1024))  # 12 MiB of float64
    assert traced_peak(lambda: to_pil(pixels)) < pixels.nbytes / 2


def test_load_image_peak_memory_is_close_to_its_result(tmp_path: Path) -> None:
    values = np.random.default_rng(5).integers(0, 256, (1536, 1024), dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "big.png")
    result: list[LoadedImage] = []
    peak = traced_peak(lambda: result.append(load_image(tmp_path / "big.png")))
    np.testing.assert_array_equal(result[0].pixels, values / 255.0)
    # The float64 result plus the 8-bit decode; no float64 temporaries.
    assert peak < 1.3 * result[0].pixels.nbytes


@pytest.mark.parametrize(
    ("shape", "dtype", "top"),
    [
        ((1, 2_000_000), np.float32, 1000.0),  # one row larger than any block
        ((2_000_000, 1), np.float32, 1000.0),
        ((1500, 1400), np.float32, 1000.0),
        ((1, 2_000_000), np.int32, -7),  # signed: mapped from the range
        ((1500, 1400), np.uint16, 4000),  # 12-bit in 16: two passes over the samples
    ],
)
def test_peak_memory_of_wide_and_deep_images_is_close_to_the_result(
    shape: tuple[int, int], dtype: type, top: float, tmp_path: Path
) -> None:
    """Loading is bounded by the float64 matrix: no full-size copy of the samples,
    not even for one very long row (a 1 x 2,000,000 image)."""
    rng = np.random.default_rng(6)
    values = (rng.random(shape) * top).astype(dtype)
    path = tmp_path / ("big.png" if dtype == np.uint16 else "big.tif")
    Image.fromarray(values).save(path)
    result: list[LoadedImage] = []
    peak = traced_peak(lambda: result.append(load_image(path)))
    lo, hi = result[0].value_range
    expected = (values.astype(np.float64) - lo) / (hi - lo)
    np.testing.assert_allclose(result[0].pixels, expected, rtol=1e-12)
    assert peak < 1.2 * result[0].pixels.nbytes


# --- special files ---------------------------------------------------------------


@pytest.fixture
def special_files(tmp_path: Path) -> Iterator[dict[str, Path]]:
    fifo = gen.make_fifo(tmp_path / "pipe.png")
    folder = gen.make_directory(tmp_path / "folder.png")
    sock_path = tmp_path / "s.png"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    link = tmp_path / "link.png"
    link.symlink_to(fifo)
    try:
        yield {
            "is a named pipe (FIFO), not a regular file": fifo,
            "is a socket, not a regular file": sock_path,
            "is a character device, not a regular file": Path("/dev/null"),
            "is a directory, not an image file": folder,
            "is a named pipe (FIFO), not a regular file ": link,  # through a symlink
        }
    finally:
        server.close()


def test_special_files_are_refused_unopened(
    special_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    real_open = os.open

    def spy(path: object, *args: object, **kwargs: object) -> int:
        opened.append(os.fspath(path))  # type: ignore[arg-type]
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", spy)
    for message, path in special_files.items():
        for call in (load_image, imageio.check_regular_file, imageio.open_regular_file):
            with pytest.raises(InputError) as info:
                call(path)
            assert str(info.value) == message.strip()
    assert opened == []


def test_a_file_swapped_for_a_fifo_after_the_check_still_cannot_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check on the open descriptor: a FIFO opened with O_NONBLOCK is refused at once."""
    fifo = gen.make_fifo(tmp_path / "pipe.png")
    monkeypatch.setattr(files, "check_regular_file", lambda path, kind: None)
    with pytest.raises(InputError) as info:
        imageio.open_regular_file(fifo)
    assert str(info.value) == "is a named pipe (FIFO), not a regular file"


def test_open_regular_file_reads_regular_files_and_names_what_was_expected(
    tmp_path: Path,
) -> None:
    path = tmp_path / "model.npz"
    path.write_bytes(b"abc")
    link = tmp_path / "link.npz"
    link.symlink_to(path)
    for p in (path, link, str(path)):
        with imageio.open_regular_file(p, "a model file") as fh:
            assert fh.read() == b"abc"
    with pytest.raises(InputError, match=r"^is a directory, not a model file$"):
        imageio.check_regular_file(tmp_path, "a model file")
    with pytest.raises(InputError, match=r"^file not found$"):
        imageio.open_regular_file(tmp_path / "nope.npz", "a model file")
