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
    """A decomposition read back from ``model.npz``: one part per decomposed matrix."""

    meta: dict[str, Any]
    parts: list[tuple[list[np.ndarray], list[np.ndarray]]]  # (Ws, Hs) per part

    @property
    def depth(self) -> int:
        return len(self.parts[0][0])


def save_model(
    path: Path,
    meta: Mapping[str, Any],
    parts: Sequence[tuple[Sequence[np.ndarray], Sequence[np.ndarray]]],
) -> None:
    """Write factors and metadata as plain arrays (no pickles)."""
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


def load_model(path: Path) -> SavedModel:
    """Read and check a ``model.npz``; nothing in it is unpickled or executed."""
    return _check_model(read_npz(path))


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read with ``allow_pickle=False``; one-line errors."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            if fh.read(4) != b"PK\x03\x04":
                raise InputError("not a valid model file (not an .npz archive)")
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise open_error(exc, "a model.npz") from exc
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise InputError("model contains pickled objects; refusing to load it") from exc
        raise InputError(f"not a valid model file ({exc})") from exc
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, RuntimeError) as exc:
        raise InputError(f"not a valid model file (truncated or corrupt: {exc})") from exc
    return arrays


def _check_model(arrays: Mapping[str, np.ndarray]) -> SavedModel:
    if "format_version" not in arrays or "meta" not in arrays:
        raise InputError("not an mlnmf model (format_version or meta missing)")
    version = arrays["format_version"]
    if version.shape != () or version.dtype.kind not in "iu":
        raise InputError("not an mlnmf model (format_version is not an integer)")
    if int(version) != MODEL_FORMAT_VERSION:
        raise InputError(
            f"unsupported model format version {int(version)} (this mlnmf reads version {MODEL_FORMAT_VERSION})"
        )
    if arrays["meta"].dtype.kind != "U" or arrays["meta"].shape != ():
        raise InputError("not an mlnmf model (meta is not a string)")
    try:
        meta = json.loads(str(arrays["meta"]))
    except json.JSONDecodeError as exc:
        raise InputError(f"model metadata is not valid JSON ({exc.msg})") from exc
    if not isinstance(meta, dict):
        raise InputError("model metadata is not a JSON object")
    if meta.get("kind") == "collection":
        raise InputError(
            "this is a collection model from 'mlnmf learn' (its atoms are whole images); "
            "rebuild images with it by 'mlnmf encode MODEL IMAGE...'"
        )
    try:
        n_parts = int(meta["n_parts"])
        depth = int(meta["depth"])
        shape = tuple(int(s) for s in meta["image_shape"])
        part_shape = tuple(int(s) for s in meta["part_shape"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"model metadata lacks a valid {exc} field") from exc
    if not (
        1 <= n_parts <= 3 and 1 <= depth <= 64 and len(part_shape) == 2 and len(shape) in (2, 3)
    ):
        raise InputError("model metadata has impossible sizes")

    parts = []
    for c in range(n_parts):
        Ws: list[np.ndarray] = []
        Hs: list[np.ndarray] = []
        for layer in range(1, depth + 1):
            for kind, store in (("W", Ws), ("H", Hs)):
                key = f"part{c}_{kind}{layer}"
                if key not in arrays:
                    raise InputError(f"model is missing the array {key}")
                a = arrays[key]
                if a.ndim != 2 or a.dtype.kind != "f":
                    raise InputError(f"model array {key} is not a 2-D float matrix")
                if not np.all(np.isfinite(a)):
                    raise InputError(f"model array {key} contains NaN or infinity")
                store.append(a)
        rows = part_shape[0]
        for layer, W in enumerate(Ws, start=1):
            if W.shape[0] != rows:
                raise InputError(
                    f"model arrays have inconsistent shapes: part{c}_W{layer} is "
                    f"{W.shape[0]}x{W.shape[1]} but should have {rows} rows"
                )
            rows = W.shape[1]
            H = Hs[layer - 1]
            if H.shape != (W.shape[1], part_shape[1]):
                raise InputError(
                    f"model arrays have inconsistent shapes: part{c}_H{layer} is "
                    f"{H.shape[0]}x{H.shape[1]}, expected {W.shape[1]}x{part_shape[1]}"
                )
        parts.append((Ws, Hs))
    return SavedModel(meta=meta, parts=parts)
