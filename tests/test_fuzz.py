"""Fuzzing the two loaders of untrusted files: images and saved models.

The only outcomes allowed are a correct result or the package's own error
(:class:`MlnmfError`, one line); any other exception, a warning turned error,
NaN pixels or a model whose arrays do not fit together is a bug.

``make test`` runs a bounded number of examples per test (60);
``HYPOTHESIS_PROFILE=fuzz`` (``make fuzz``) runs the fuzz profile's count
(``FUZZ_EXAMPLES``, default 2000, see tests/conftest.py).
"""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st
from imagegen import make_gray_png, valid_jpeg_bytes, valid_png_bytes
from PIL import Image

from mlnmf_cli import imageio, storage
from mlnmf_cli.errors import MlnmfError

FUZZ = fuzz_settings(60)
MAX_PIXELS = 1_000_000


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mlnmf-fuzz-") as d:
        yield Path(d)


# --------------------------------------------------------------------------- images


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        chunks.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def _png_join(chunks: list[tuple[bytes, bytes]]) -> bytes:
    out = b"\x89PNG\r\n\x1a\n"
    for kind, body in chunks:
        out += struct.pack(">I", len(body)) + kind + body
        out += struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return out


def _grey16_png() -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 65536, (5, 7), dtype=np.uint16)).save(buf, "PNG")
    return buf.getvalue()


def _palette_png() -> bytes:
    buf = io.BytesIO()
    image = Image.new("P", (6, 4), 0)
    image.putpalette([255, 0, 0, 0, 0, 255, 0, 255, 0])
    image.putpixel((1, 1), 1)
    image.putpixel((2, 2), 2)
    image.save(buf, "PNG", transparency=1)
    return buf.getvalue()


VALID_IMAGES = {
    "rgb.png": valid_png_bytes(),
    "grey16.png": _grey16_png(),
    "palette.png": _palette_png(),
    "rgb.jpg": valid_jpeg_bytes(),
}


def check_image(path: Path) -> str:
    """Load ``path``; return "ok" or "refused", fail the test on anything else."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            image = imageio.load_image(path, max_pixels=MAX_PIXELS)
    except MlnmfError as exc:
        message = str(exc)
        assert message and "\n" not in message, repr(message)
        return "refused"
    pixels = image.pixels
    assert pixels.dtype == np.float64
    assert pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3)
    assert pixels.size >= 1 and pixels.shape[0] * pixels.shape[1] <= MAX_PIXELS
    assert np.all(np.isfinite(pixels)) and pixels.min() >= 0.0 and pixels.max() <= 1.0
    return "ok"


def _mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for position, bit in flips:
        if out:
            out[position % len(out)] ^= 1 << bit
    if cut is not None:
        out = out[: cut % (len(out) + 1)]
    return bytes(out)


FLIPS = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 7)), max_size=6)
CUTS = st.none() | st.integers(0, 10**6)


@FUZZ
@given(kind=st.sampled_from(sorted(VALID_IMAGES)), flips=FLIPS, cut=CUTS)
def test_image_bit_flips_and_truncations(
    kind: str, flips: list[tuple[int, int]], cut: int | None, scratch: Path
) -> None:
    path = scratch / f"flip-{kind}"
    path.write_bytes(_mutate(VALID_IMAGES[kind], flips, cut))
    check_image(path)


@FUZZ
@given(
    kind=st.sampled_from(["rgb.png", "grey16.png", "palette.png"]),
    chunk=st.integers(0, 10),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 7)), min_size=1, max_size=6),
    inflate=st.booleans(),
)
def test_png_chunk_corruption_behind_valid_crcs(
    kind: str, chunk: int, flips: list[tuple[int, int]], inflate: bool, scratch: Path
) -> None:
    """Flip bits inside one chunk (IHDR, PLTE, tRNS, IDAT...) and fix its CRC, so the
    decoder itself, not the checksum, meets the damage; with ``inflate`` the flips
    land in the decompressed scanlines, so zlib accepts them too."""
    chunks = _png_chunks(VALID_IMAGES[kind])
    index = chunk % (len(chunks) - 1)  # never IEND
    name, body = chunks[index]
    if inflate and name == b"IDAT":
        body = zlib.compress(_mutate(zlib.decompress(body), flips, None))
    else:
        body = _mutate(body, flips, None)
    chunks[index] = (name, body)
    path = scratch / f"chunk-{kind}"
    path.write_bytes(_png_join(chunks))
    check_image(path)


@FUZZ
@given(
    width=st.integers(0, 2**32 - 1) | st.integers(0, 64),
    height=st.integers(0, 2**32 - 1) | st.integers(0, 64),
    depth=st.sampled_from([0, 1, 2, 4, 8, 16, 3, 32]),
    colour=st.sampled_from([0, 2, 3, 4, 6, 1, 5, 7]),
    interlace=st.sampled_from([0, 1, 2]),
)
def test_png_header_fields(
    width: int, height: int, depth: int, colour: int, interlace: int, scratch: Path
) -> None:
    """Any IHDR, with valid CRCs: sizes up to 2**32-1, illegal depths and colour types."""
    chunks = _png_chunks(VALID_IMAGES["rgb.png"])
    chunks[0] = (b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))
    path = scratch / "ihdr.png"
    path.write_bytes(_png_join(chunks))
    check_image(path)


@FUZZ
@given(
    prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"PK"]),
    body=st.binary(max_size=400),
    suffix=st.sampled_from([".png", ".jpg", ".gif", ".tif"]),
)
def test_image_random_bytes(prefix: bytes, body: bytes, suffix: str, scratch: Path) -> None:
    path = scratch / f"random{suffix}"
    path.write_bytes(prefix + body)
    check_image(path)


def test_valid_images_load(scratch: Path) -> None:
    for name, data in VALID_IMAGES.items():
        path = scratch / f"valid-{name}"
        path.write_bytes(data)
        assert check_image(path) == "ok", name
    assert check_image(make_gray_png(scratch / "gen.png", size=(9, 7))) == "ok"


# --------------------------------------------------------------------------- models


def _meta(n_parts: int, depth: int, shape: tuple[int, int]) -> dict:
    return {
        "image_shape": list(shape) if n_parts == 1 else [shape[0], shape[1], 3],
        "part_shape": list(shape),
        "n_parts": n_parts,
        "depth": depth,
        "channels": "gray" if n_parts == 1 else "separate",
        "value_range": [0.0, 1.0],
        "bit_depth": 8,
        "parameters": {"ranks": [4, 2][:depth]},
        "versions": storage.versions(),
    }


def _factors(n_parts: int, depth: int, shape: tuple[int, int], dtype: str) -> list:
    rng = np.random.default_rng(7)
    ranks = [4, 2, 1][:depth]
    parts = []
    for _ in range(n_parts):
        rows, Ws, Hs = shape[0], [], []
        for r in ranks:
            Ws.append(rng.random((rows, r)).astype(dtype))
            Hs.append(rng.random((r, shape[1])).astype(dtype))
            rows = r
        parts.append((Ws, Hs))
    return parts


def _model_bytes(n_parts: int = 1, depth: int = 2, dtype: str = "float32") -> bytes:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.npz"
        storage.save_model(
            path, _meta(n_parts, depth, (6, 5)), _factors(n_parts, depth, (6, 5), dtype)
        )
        return path.read_bytes()


VALID_MODELS = {
    "grey": _model_bytes(),
    "colour": _model_bytes(n_parts=3, depth=1, dtype="float64"),
}


def check_model(path: Path) -> str:
    """Load ``path``; return "ok" or "refused"; a loaded model must be self-consistent."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model = storage.load_model(path)
    except MlnmfError as exc:
        message = str(exc)
        assert message and "\n" not in message, repr(message)
        return "refused"
    assert 1 <= model.depth
    for Ws, Hs in model.parts:
        assert len(Ws) == len(Hs) == model.depth
        product = Ws[0].astype(np.float64)
        for W in Ws[1:]:
            product = product @ W
        assert product.shape[1] == Hs[-1].shape[0]
        assert np.all(np.isfinite(product @ Hs[-1]))
    return "ok"


@FUZZ
@given(kind=st.sampled_from(sorted(VALID_MODELS)), flips=FLIPS, cut=CUTS)
def test_model_bit_flips_and_truncations(
    kind: str, flips: list[tuple[int, int]], cut: int | None, scratch: Path
) -> None:
    path = scratch / f"flip-{kind}.npz"
    path.write_bytes(_mutate(VALID_MODELS[kind], flips, cut))
    check_model(path)


@FUZZ
@given(body=st.binary(max_size=600), prefix=st.sampled_from([b"", b"PK\x03\x04", b"\x93NUMPY"]))
def test_model_random_bytes(body: bytes, prefix: bytes, scratch: Path) -> None:
    path = scratch / "random.npz"
    path.write_bytes(prefix + body)
    check_model(path)


_ARRAY = st.one_of(
    st.builds(
        lambda shape, dtype: np.ones(shape, dtype=dtype),
        st.lists(st.integers(0, 7), max_size=3).map(tuple),
        st.sampled_from(["float32", "float64", "int64", "uint8", "bool", "complex64", "<U3"]),
    ),
    st.sampled_from(
        [
            np.array(np.nan, dtype=np.float32),
            np.full((6, 4), np.inf),
            np.array("{}"),
            np.array("not json"),
            np.array(1, dtype=np.int64),
            np.array(2, dtype=np.int64),
            np.array([1, 2]),
        ]
    ),
)
_KEYS = st.sampled_from(
    ["format_version", "meta", "part0_W1", "part0_W2", "part0_H1", "part0_H2", "part1_W1"]
)
_META_EDITS = st.dictionaries(
    st.sampled_from(["n_parts", "depth", "image_shape", "part_shape", "channels"]),
    st.one_of(
        st.integers(-2, 70),
        st.lists(st.integers(-1, 9), max_size=4),
        st.none(),
        st.text(max_size=3),
    ),
    max_size=3,
)


@FUZZ
@given(
    replaced=st.dictionaries(_KEYS, _ARRAY, max_size=3),
    dropped=st.sets(_KEYS, max_size=2),
    meta_edits=_META_EDITS,
)
def test_model_structure(
    replaced: dict[str, np.ndarray], dropped: set[str], meta_edits: dict, scratch: Path
) -> None:
    """Well-formed npz files whose contents are wrong: arrays swapped for others, keys
    missing, metadata fields of the wrong type or size."""
    with np.load(io.BytesIO(VALID_MODELS["grey"]), allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    meta = json.loads(str(arrays["meta"]))
    meta.update(meta_edits)
    arrays["meta"] = np.asarray(json.dumps(meta))
    arrays.update(replaced)
    for key in dropped:
        arrays.pop(key, None)
    path = scratch / "structure.npz"
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    check_model(path)


@FUZZ
@given(payload=st.sampled_from([object(), [1, "a"], {"k": 1}, None]), key=_KEYS)
def test_model_pickles_are_never_loaded(payload: object, key: str, scratch: Path) -> None:
    with np.load(io.BytesIO(VALID_MODELS["grey"]), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays[key] = np.array([payload, 1], dtype=object)
    path = scratch / "pickled.npz"
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    assert check_model(path) == "refused"


def test_valid_models_load(scratch: Path) -> None:
    for name, data in VALID_MODELS.items():
        path = scratch / f"valid-{name}.npz"
        path.write_bytes(data)
        assert check_model(path) == "ok", name
    assert zipfile.is_zipfile(io.BytesIO(VALID_MODELS["grey"]))


# =========================================================================== result names
# (issue 11, class 3) Any file names, in any number and order: the folder names are unique,
# safe (visible, printable, not the tool's own files, short enough for a staging name),
# the same from call to call, and every one can be created; every input can be shown on
# one line and written to summary.csv.

_NAME_PIECES = st.sampled_from(
    [b".", b"..", b"...", b"-2", b"a", b"A", b" ", b"\n", b"\t", b"\xff", b"\xc3\xa9", b"\\",
     b"summary.json", b"index.html", b".mlnmf.lock", b".x.abcd1234.partial", b"\xe2\x80\xa8",
     b"x" * 120, b"\xf0\x9f\x98\x80" * 20]
)  # fmt: skip
_FILE_NAME = st.lists(
    st.one_of(_NAME_PIECES, st.binary(min_size=1, max_size=12)), min_size=1, max_size=4
).map(lambda parts: b"".join(parts).replace(b"/", b"_").replace(b"\0", b"_")[:250])
_SUFFIX = st.sampled_from([b".png", b".PNG", b".jpg", b"", b".", b".tar.gz"])


@FUZZ
@given(
    names=st.lists(
        st.tuples(st.sampled_from([b"", b"d1", b"d2/.", b"\xff"]), _FILE_NAME, _SUFFIX),
        min_size=1,
        max_size=6,
    )
)
def test_result_names_are_unique_safe_and_stable(
    names: list[tuple[bytes, bytes, bytes]], scratch: Path
) -> None:
    base = os.fsencode(scratch / "names")
    paths = [
        Path(os.fsdecode(os.path.join(base, folder, stem + suffix)))
        for folder, stem, suffix in names
    ]
    got = storage.unique_names(paths)
    assert got == storage.unique_names(paths)  # stable
    assert len(set(got)) == len(got)  # unique
    for name in got:
        assert name and name.isprintable() and not name.startswith(".")
        assert "/" not in name and "\\" not in name and name not in (".", "..")
        assert name.casefold() not in storage.RESERVED_NAMES
        raw = name.encode("utf-8")  # no undecodable bytes left
        assert len(raw) <= storage.MAX_NAME_BYTES + 4
        assert len(os.fsencode(storage.hidden_prefix(name))) + len("XXXXXXXX.partial") <= 255
    target = scratch / "made"
    target.mkdir(exist_ok=True)
    for name in got:  # each can be created, and none lands elsewhere
        (target / name).mkdir()
    assert sorted(os.listdir(target)) == sorted(got)
    for name in got:
        (target / name).rmdir()
    for path in paths:
        shown = storage.display_path(path)
        assert shown.isprintable() and shown.encode("utf-8")


@FUZZ
@given(stem=_FILE_NAME)
def test_a_safe_name_is_kept_and_any_other_gets_a_stable_hash(stem: bytes) -> None:
    text = os.fsdecode(stem)
    name = storage.safe_name(text)
    assert name == storage.safe_name(text)
    if name != text:
        assert name[-9] == "-" and all(c in "0123456789abcdef" for c in name[-8:])


# --------------------------------------------------------------------------- model metadata
# (paths helper, issue 11: any metadata and any array headers give a clean refusal or a model)

_JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.sampled_from([0, 1, 2, 3, 5, 6, 64, 65, 2**31, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["gray", "stack", "separate", "GRAY", ""]),
)
_JSON = st.recursive(
    _JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
_META_KEYS = st.sampled_from(
    ["n_parts", "depth", "image_shape", "part_shape", "channels", "parameters", "value_range"]
)


def _grey_arrays() -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(VALID_MODELS["grey"]), allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def _write_npz(
    path: Path, arrays: dict[str, np.ndarray], raw: dict[str, bytes] | None = None
) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, value in arrays.items():
            buf = io.BytesIO()
            np.save(buf, value)
            zf.writestr(f"{key}.npy", buf.getvalue())
        for key, data in (raw or {}).items():
            zf.writestr(f"{key}.npy", data)


@FUZZ
@given(
    edits=st.dictionaries(_META_KEYS, _JSON, max_size=4),
    dropped=st.sets(_META_KEYS, max_size=2),
    whole=st.none() | _JSON,
    nesting=st.sampled_from([0, 0, 0, 50, 5_000, 200_000]),
)
def test_model_metadata_anything(
    edits: dict, dropped: set[str], whole: object, nesting: int, scratch: Path
) -> None:
    """Metadata of any JSON (NaN, Infinity, huge integers, wrong types, deep nesting) or
    replaced outright: the model loads self-consistently or is refused in one line."""
    arrays = _grey_arrays()
    if whole is not None:
        meta: object = whole
    else:
        meta = json.loads(str(arrays["meta"]))
        assert isinstance(meta, dict)
        meta.update(edits)
        for key in dropped:
            meta.pop(key, None)
    text = json.dumps(meta)
    if nesting:
        text = "[" * nesting + text + "]" * nesting
    arrays["meta"] = np.asarray(text)
    path = scratch / "meta.npz"
    _write_npz(path, arrays)
    check_model(path)


@FUZZ
@given(
    key=st.sampled_from(["part0_W1", "part0_H1", "part0_W2", "part0_H2", "meta", "junk"]),
    shape=st.lists(st.integers(0, 10**6), max_size=3).map(tuple),
    descr=st.sampled_from(["<f4", "<f8", ">f8", "<i8", "|u1", "<U9", "|O", "<c8"]),
    body=st.integers(0, 256),
)
def test_model_array_headers_that_lie(
    key: str, shape: tuple[int, ...], descr: str, body: int, scratch: Path
) -> None:
    """An array whose header declares any shape and dtype over a short body: refused from
    its header alone (never allocated), or a model that loads."""
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    npy = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()
    arrays = _grey_arrays()
    arrays.pop(key, None)
    path = scratch / "headers.npz"
    _write_npz(path, arrays, {key: npy + bytes(body)})
    check_model(path)
