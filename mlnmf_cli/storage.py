"""Writing results safely and reading saved models back.

Everything here is about files: atomic writes (temporary name, then rename),
result folders that appear whole or not at all, and ``model.npz`` files that
are read with ``allow_pickle=False`` and checked before anything trusts them.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import platform
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from mlnmf_cli import __version__
from mlnmf_cli.engine.model import Model
from mlnmf_cli.errors import InputError, OutputError, open_error

MODEL_FORMAT_VERSION = 1
REPORT_VERSION = "1"


def versions() -> dict[str, str]:
    """Versions of everything that shapes a result, recorded in every report."""
    import PIL

    return {
        "mlnmf": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
    }


# --------------------------------------------------------------------------- atomic files


def _atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    def write(fh: IO[bytes]) -> None:
        fh.write(data)

    _atomic_write(path, write)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, allow_nan=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in JSON")


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in fields})
    write_text(path, buf.getvalue())


def save_image(path: Path, image: Any) -> None:
    """Save a PIL image as PNG, atomically."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------- result folders


def prepare_output_dir(out: Path) -> Path:
    """Create ``out`` if needed and check that results can be written into it."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: output path exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".mlnmf-probe-", delete=True)
        probe.close()
    except OSError as exc:
        raise OutputError(
            f"{out}: cannot write to the output directory ({exc.strerror or exc})"
        ) from exc
    return out


def refuse_existing(target: Path, *, replace: bool) -> None:
    """Raise unless ``target`` is free or the user asked to replace it."""
    if Path(target).exists() and not replace:
        raise OutputError(
            f"result folder {target} already exists "
            "(use --force to replace it or --skip-existing to keep it)"
        )


@contextlib.contextmanager
def staged_folder(target: Path, *, replace: bool) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it becomes ``target``.

    If the body fails or is interrupted, the temporary folder is removed and
    ``target`` is untouched. An existing ``target`` is replaced only when
    ``replace`` is true, and then only after the new folder is complete.
    """
    target = Path(target)
    refuse_existing(target, replace=replace)
    try:
        staging = Path(
            tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        )
    except OSError as exc:
        raise OutputError(
            f"cannot create a folder in {target.parent} ({exc.strerror or exc})"
        ) from exc
    try:
        yield staging
        _move_into_place(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputError(
            f"cannot write the result folder {target} ({exc.strerror or exc})"
        ) from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _move_into_place(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an old ``target`` goes only once the new one is in."""
    if not target.exists():
        os.replace(staging, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.replace(target, old / target.name)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(old / target.name, target)
        old.rmdir()
        raise
    shutil.rmtree(old, ignore_errors=True)


def unique_names(paths: Sequence[Path]) -> list[str]:
    """Folder names for a batch: the file stem, lengthened by parent folders on a clash.

    The same list of inputs always gives the same names, so a rerun with
    ``--skip-existing`` finds the folders it wrote before.
    """
    resolved = [Path(p).resolve() for p in paths]
    depth = [1] * len(paths)

    def name(i: int) -> str:
        parts = resolved[i].with_suffix("").parts[-depth[i] :]
        return "__".join(p.strip("/") or "root" for p in parts)

    while True:
        names = [name(i) for i in range(len(paths))]
        owners: dict[str, set[Path]] = {}
        for i, n in enumerate(names):
            owners.setdefault(n, set()).add(resolved[i])
        grow = [
            i
            for i, n in enumerate(names)
            if len(owners[n]) > 1 and depth[i] < len(resolved[i].with_suffix("").parts)
        ]
        if not grow:
            break
        for i in grow:
            depth[i] += 1
    # The same file given twice: number the repeats.
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}-{seen[n]}")
    return out


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
        "meta": np.asarray(json.dumps(dict(meta), default=_json_default)),
    }
    for c, (Ws, Hs) in enumerate(parts):
        for layer, W in enumerate(Ws, start=1):
            arrays[f"part{c}_W{layer}"] = np.ascontiguousarray(W)
        for depth, H in enumerate(Hs, start=1):
            arrays[f"part{c}_H{depth}"] = np.ascontiguousarray(H)

    def write(fh: IO[bytes]) -> None:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]

    _atomic_write(path, write)


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
    path = Path(path)
    limit = _pixel_limit(max_pixels)
    try:
        with open_regular_file(path, "a model file") as fh:
            if fh.read(4) != b"PK\x03\x04":
                raise InputError("not a valid model file (not an .npz archive)")
            fh.seek(0)
            with zipfile.ZipFile(fh) as zf:
                return _read_model(zf, limit)
    except ValueError as exc:
        raise InputError(f"not a valid model file ({_one_line(exc)})") from exc
    except (
        OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, RuntimeError,
        NotImplementedError,
    ) as exc:  # fmt: skip
        raise InputError(
            f"not a valid model file (truncated or corrupt: {_one_line(exc)})"
        ) from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _pixel_limit(max_pixels: int | None) -> int | None:
    if max_pixels is not None:
        return max_pixels
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS


# Local copy of the image branch's ``files.open_regular_file`` (same messages); to be
# replaced by the shared helper once that lands (callers: load_model, pipeline's --original).
def open_regular_file(path: Path, kind: str) -> IO[bytes]:
    """Open ``path`` for reading only if it is a regular file: never blocks on a FIFO."""
    import stat

    special = (
        (stat.S_ISFIFO, "named pipe (FIFO)"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    )

    def refuse(mode: int) -> None:
        if stat.S_ISREG(mode):
            return
        if stat.S_ISDIR(mode):
            raise InputError(f"is a directory, not {kind}")
        for test, name in special:
            if test(mode):
                raise InputError(f"is a {name}, not a regular file")
        raise InputError("not a regular file")

    try:
        refuse(os.stat(path).st_mode)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise open_error(exc, kind) from exc
    try:
        refuse(os.fstat(fd).st_mode)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


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
    infos = zf.infolist()
    if len(infos) > _MODEL_MEMBER_LIMIT:
        raise InputError(f"not an mlnmf model (more than {_MODEL_MEMBER_LIMIT} members)")
    members: dict[str, _Member] = {}
    for info in infos:
        if not info.filename.endswith(".npy") or info.is_dir():
            raise InputError("not an mlnmf model (it holds a member that is not an array)")
        members[info.filename[: -len(".npy")]] = _read_header(zf, info)
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
