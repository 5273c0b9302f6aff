"""``model.npz`` in and out: plain arrays plus JSON metadata, read with
``allow_pickle=False`` and checked from the archive's headers before anything is
decompressed or trusted."""

from __future__ import annotations

import json
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from mlnmf_cli.engine.model import Model
from mlnmf_cli.errors import InputError
from mlnmf_cli.files import open_regular_file
from mlnmf_cli.storage.atomic import MODEL_FORMAT_VERSION, atomic_write, json_default

# --------------------------------------------------------------------------- models


@dataclass
class SavedModel:
    """A decomposition read back from ``model.npz``: one :class:`Model` per decomposed matrix."""

    meta: dict[str, Any]
    parts: list[Model]

    @property
    def depth(self) -> int:
        return self.parts[0].depth


def save_model(
    path: Path,
    meta: Mapping[str, Any],
    parts: Sequence[Any],
) -> None:
    """Write factors (models, or ``(Ws, Hs)`` pairs) and metadata as plain arrays (no pickles)."""
    arrays: dict[str, np.ndarray] = {
        "format_version": np.asarray(MODEL_FORMAT_VERSION, dtype=np.int64),
        "meta": np.asarray(json.dumps(dict(meta), default=json_default)),
    }
    for c, (Ws, Hs) in enumerate(parts):
        for layer, W in enumerate(Ws, start=1):
            arrays[f"part{c}_W{layer}"] = np.ascontiguousarray(W)
        for depth, H in enumerate(Hs, start=1):
            arrays[f"part{c}_H{depth}"] = np.ascontiguousarray(H)

    def write(fh: IO[bytes]) -> None:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]

    atomic_write(path, write)


MODEL_META_LIMIT = 1 << 20
"""Most characters of metadata JSON a model may hold (a real one holds about a thousand)."""

_NPY_HEADER_LIMIT = 10_000
_MODEL_MEMBER_LIMIT = 1024
_CHANNELS = ("gray", "stack", "separate")


def load_model(path: Path, *, max_pixels: int | None = None) -> SavedModel:
    """Read and check a ``model.npz``; nothing in it is unpickled or executed.

    Only a regular file is opened (a FIFO or a device is refused unopened).
    Every array's header is read and checked against what the metadata implies
    (the image's shape, at most ``max_pixels`` pixels, default Pillow's limit,
    and ranks no larger than the matrix allows) before any array is
    decompressed, so a small file cannot make the loader allocate more than
    the model it claims to be.
    """
    limit = _pixel_limit(max_pixels)
    return _read_archive(path, lambda zf: _read_model(zf, limit))


NPZ_BYTES_LIMIT = 1 << 31
"""The most an archive read by :func:`read_npz` may declare, all arrays together."""


def read_npz(path: Path, *, max_bytes: int = NPZ_BYTES_LIMIT) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (``allow_pickle=False``), for models of other kinds
    (a collection's), with :func:`load_model`'s safety: a regular file only, every
    member's header checked (declared size = size held, no objects) and the declared
    total at most ``max_bytes`` before anything is decompressed; one-line errors."""

    def read(zf: zipfile.ZipFile) -> dict[str, np.ndarray]:
        members = _members(zf)
        total = sum(m.info.file_size for m in members.values())
        if total > max_bytes:
            raise InputError(
                f"model declares {total} bytes of arrays, more than the limit of {max_bytes}"
            )
        return {key: _read_array(zf, m) for key, m in members.items()}

    return _read_archive(path, read)


def _read_archive(path: Path, read: Callable[[zipfile.ZipFile], Any]) -> Any:
    """``read`` of the archive at ``path`` (a regular file only); every failure one line."""
    try:
        with open_regular_file(Path(path), "a model file") as fh:
            if fh.read(4) != b"PK\x03\x04":
                raise InputError("not a valid model file (not an .npz archive)")
            fh.seek(0)
            with zipfile.ZipFile(fh) as zf:
                return read(zf)
    except ValueError as exc:
        raise InputError(f"not a valid model file ({_one_line(exc)})") from exc
    except (
        OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, RuntimeError,
        NotImplementedError,
    ) as exc:  # fmt: skip
        raise InputError(
            f"not a valid model file (truncated or corrupt: {_one_line(exc)})"
        ) from exc


def _members(zf: zipfile.ZipFile) -> dict[str, _Member]:
    """Every member's header (nothing decompressed beyond it), by array name."""
    infos = zf.infolist()
    if len(infos) > _MODEL_MEMBER_LIMIT:
        raise InputError(f"not an mlnmf model (more than {_MODEL_MEMBER_LIMIT} members)")
    members: dict[str, _Member] = {}
    for info in infos:
        if not info.filename.endswith(".npy") or info.is_dir():
            raise InputError("not an mlnmf model (it holds a member that is not an array)")
        members[info.filename[: -len(".npy")]] = _read_header(zf, info)
    return members


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _pixel_limit(max_pixels: int | None) -> int | None:
    if max_pixels is not None:
        return max_pixels
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS


@dataclass(frozen=True)
class _Member:
    """One ``.npy`` member of the archive, known from its header alone."""

    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    dtype: np.dtype[Any]


def _read_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> _Member:
    """The member's shape and dtype; its declared size must be what it holds."""
    key = info.filename[: -len(".npy")]
    fmt = np.lib.format
    with zf.open(info) as fp:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fp, max_header_size=_NPY_HEADER_LIMIT)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(fp, max_header_size=_NPY_HEADER_LIMIT)
        else:
            raise InputError(f"not a valid model file (array {key} has format {version})")
        offset = fp.tell()
    if dtype.hasobject:
        raise InputError("model contains pickled objects; refusing to load it")
    if any(s < 0 for s in shape):
        raise InputError(f"not a valid model file (array {key} has a negative size)")
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if info.file_size != offset + declared:
        raise InputError(
            f"not a valid model file (array {key} declares {declared} bytes "
            f"but holds {max(0, info.file_size - offset)})"
        )
    return _Member(info, tuple(shape), dtype)


def _read_array(zf: zipfile.ZipFile, member: _Member) -> np.ndarray:
    with zf.open(member.info) as fp:
        return np.lib.format.read_array(fp, allow_pickle=False, max_header_size=_NPY_HEADER_LIMIT)


def _read_model(zf: zipfile.ZipFile, limit: int | None) -> SavedModel:
    members = _members(zf)
    if "format_version" not in members or "meta" not in members:
        raise InputError("not an mlnmf model (format_version or meta missing)")
    version = members["format_version"]
    if version.shape != () or version.dtype.kind not in "iu":
        raise InputError("not an mlnmf model (format_version is not an integer)")
    number = int(_read_array(zf, version))
    if number != MODEL_FORMAT_VERSION:
        raise InputError(
            f"unsupported model format version {number} (this mlnmf reads version {MODEL_FORMAT_VERSION})"
        )
    meta_member = members["meta"]
    if meta_member.dtype.kind != "U" or meta_member.shape != ():
        raise InputError("not an mlnmf model (meta is not a string)")
    if meta_member.dtype.itemsize > 4 * MODEL_META_LIMIT:
        raise InputError(f"model metadata is longer than {MODEL_META_LIMIT} characters")
    meta = _parse_meta(str(_read_array(zf, meta_member)))
    if meta.get("kind") == "collection":
        raise InputError(
            "this is a collection model from 'mlnmf learn' (its atoms are whole images); "
            "rebuild images with it by 'mlnmf encode MODEL IMAGE...'"
        )
    layout = _layout(meta, limit)
    shapes = _check_shapes(members, layout)
    parts = []
    for keys in shapes:
        Ws: list[np.ndarray] = []
        Hs: list[np.ndarray] = []
        for key in keys:
            a = _read_array(zf, members[key])
            if not np.all(np.isfinite(a)):
                raise InputError(f"model array {key} contains NaN or infinity")
            (Ws if "_W" in key else Hs).append(a)
        parts.append(Model(Ws, Hs))
    return SavedModel(meta=meta, parts=parts)


def _parse_meta(text: str) -> dict[str, Any]:
    """The metadata JSON: an object of finite numbers, nested no deeper than JSON allows here."""

    def refuse_constant(name: str) -> Any:
        raise InputError(f"model metadata holds {name}, which is not a number")

    def finite_float(text: str) -> float:
        value = float(text)
        if not np.isfinite(value):
            raise InputError(f"model metadata holds {text[:20]}, which is too large a number")
        return value

    try:
        meta = json.loads(text, parse_constant=refuse_constant, parse_float=finite_float)
    except json.JSONDecodeError as exc:
        raise InputError(f"model metadata is not valid JSON ({exc.msg})") from exc
    except RecursionError as exc:
        raise InputError("model metadata is nested too deeply") from exc
    if not isinstance(meta, dict):
        raise InputError("model metadata is not a JSON object")
    return meta


@dataclass(frozen=True)
class _Layout:
    n_parts: int
    depth: int
    part_shape: tuple[int, int]


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _layout(meta: dict[str, Any], limit: int | None) -> _Layout:
    """What the metadata implies: parts, depth and the shape of each part's matrix."""
    for name, ok in (
        ("n_parts", _whole),
        ("depth", _whole),
        ("image_shape", lambda v: isinstance(v, list) and all(map(_whole, v))),
        ("part_shape", lambda v: isinstance(v, list) and all(map(_whole, v))),
        ("channels", lambda v: v in _CHANNELS),
    ):
        if name not in meta or not ok(meta[name]):
            raise InputError(f"model metadata lacks a valid {name!r} field")
    bits = meta.get("bit_depth")
    if bits is not None and not (_whole(bits) and 1 <= bits <= 32):
        raise InputError("model metadata lacks a valid 'bit_depth' field")
    parameters = meta.get("parameters", {})
    if not isinstance(parameters, dict) or not (
        "ranks" not in parameters
        or (isinstance(parameters["ranks"], list) and all(map(_whole, parameters["ranks"])))
    ):
        raise InputError("model metadata lacks a valid 'parameters' field")
    n_parts, depth, channels = meta["n_parts"], meta["depth"], meta["channels"]
    shape, part_shape = tuple(meta["image_shape"]), tuple(meta["part_shape"])
    if not (
        1 <= n_parts <= 3
        and 1 <= depth <= 64
        and len(part_shape) == 2
        and len(shape) in (2, 3)
        and min(shape) >= 1
        and (len(shape) == 2 or shape[2] == 3)
    ):
        raise InputError("model metadata has impossible sizes")
    height, width = shape[0], shape[1]
    if len(shape) == 2 or channels == "gray":
        implied = 1, (height, width)
    elif channels == "stack":
        implied = 1, (height, 3 * width)
    else:
        implied = 3, (height, width)
    if (n_parts, part_shape) != implied:
        raise InputError(
            f"model metadata is inconsistent: an image of shape {'x'.join(map(str, shape))} "
            f"with channels {channels!r} gives {implied[0]} matrix(es) of "
            f"{implied[1][0]}x{implied[1][1]}, not {n_parts} of "
            f"{'x'.join(map(str, part_shape))}"
        )
    if limit is not None and height * width > limit:
        raise InputError(
            f"model's image has {height * width} pixels, more than the limit of {limit}"
        )
    return _Layout(n_parts, depth, (part_shape[0], part_shape[1]))


def _check_shapes(members: Mapping[str, _Member], layout: _Layout) -> list[list[str]]:
    """Each part's array names (W1, H1, W2, H2, ...), their headers checked against ``layout``."""
    m, n = layout.part_shape
    parts = []
    for c in range(layout.n_parts):
        keys = []
        rows = m
        for layer in range(1, layout.depth + 1):
            for kind in ("W", "H"):
                key = f"part{c}_{kind}{layer}"
                a = members.get(key)
                if a is None:
                    raise InputError(f"model is missing the array {key}")
                if len(a.shape) != 2 or a.dtype.kind != "f":
                    raise InputError(f"model array {key} is not a 2-D float matrix")
                keys.append(key)
            W, H = members[f"part{c}_W{layer}"], members[f"part{c}_H{layer}"]
            if W.shape[0] != rows:
                raise InputError(
                    f"model arrays have inconsistent shapes: part{c}_W{layer} is "
                    f"{W.shape[0]}x{W.shape[1]} but should have {rows} rows"
                )
            rank = W.shape[1]
            if not 1 <= rank <= min(m, n):
                raise InputError(
                    f"model array part{c}_W{layer} has rank {rank}, impossible for a {m}x{n} matrix"
                )
            if H.shape != (rank, n):
                raise InputError(
                    f"model arrays have inconsistent shapes: part{c}_H{layer} is "
                    f"{H.shape[0]}x{H.shape[1]}, expected {rank}x{n}"
                )
            rows = rank
        parts.append(keys)
    return parts
