"""Atomic writes, result folders, folder names and the model.npz format."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

from mlnmf_cli import storage
from mlnmf_cli.errors import InputError, OutputError


def test_unique_names_lengthen_only_on_a_clash(tmp_path: Path) -> None:
    paths = [tmp_path / "a" / "img.png", tmp_path / "b" / "img.png", tmp_path / "b" / "other.jpg"]
    assert storage.unique_names(paths) == ["a__img", "b__img", "other"]
    assert storage.unique_names(
        [tmp_path / "x" / "a" / "i.png", tmp_path / "y" / "a" / "i.png"]
    ) == [
        "x__a__i",
        "y__a__i",
    ]
    assert storage.unique_names([tmp_path / "i.png", tmp_path / "i.png"]) == ["i", "i-2"]


def test_staged_folder_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "result"
    with pytest.raises(RuntimeError), storage.staged_folder(target, replace=False) as tmp:
        (tmp / "half.png").write_bytes(b"x")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with storage.staged_folder(target, replace=False) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one"
    with pytest.raises(OutputError, match="already exists"):
        with storage.staged_folder(target, replace=False):
            pass
    with storage.staged_folder(target, replace=True) as tmp:
        (tmp / "b.txt").write_text("two")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["result"]


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    storage.write_json(path, {"a": 1})
    with pytest.raises(ValueError):
        storage.write_json(path, {"a": float("nan")})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def _meta(depth: int = 2) -> dict:
    return {
        "image_shape": [6, 5],
        "part_shape": [6, 5],
        "n_parts": 1,
        "depth": depth,
        "channels": "gray",
    }


def _factors() -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    Ws = [rng.random((6, 3)), rng.random((3, 2))]
    Hs = [rng.random((3, 5)), rng.random((2, 5))]
    return Ws, Hs


def test_model_round_trip(tmp_path: Path) -> None:
    Ws, Hs = _factors()
    storage.save_model(tmp_path / "m.npz", _meta(), [(Ws, Hs)])
    model = storage.load_model(tmp_path / "m.npz")
    assert model.depth == 2 and model.meta["channels"] == "gray"
    for a, b in zip(model.parts[0].Ws + model.parts[0].Hs, Ws + Hs, strict=True):
        assert np.array_equal(a, b)


def test_model_with_inconsistent_shapes_is_refused(tmp_path: Path) -> None:
    Ws, Hs = _factors()
    Hs[1] = Hs[1][:, :4]
    storage.save_model(tmp_path / "m.npz", _meta(), [(Ws, Hs)])
    with pytest.raises(InputError) as info:
        storage.load_model(tmp_path / "m.npz")
    assert str(info.value) == "model arrays have inconsistent shapes: part0_H2 is 2x4, expected 2x5"


def test_model_with_pickled_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    np.savez(
        path,
        format_version=np.asarray(1),
        meta=np.asarray(json.dumps(_meta())),
        part0_W1=np.array([{"x": 1}], dtype=object),
    )
    with pytest.raises(InputError) as info:
        storage.load_model(path)
    assert str(info.value) == "model contains pickled objects; refusing to load it"


def test_model_from_another_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    np.savez(path, format_version=np.asarray(7), meta=np.asarray("{}"))
    with pytest.raises(InputError) as info:
        storage.load_model(path)
    assert str(info.value) == "unsupported model format version 7 (this mlnmf reads version 1)"


def test_truncated_model_is_refused(tmp_path: Path) -> None:
    Ws, Hs = _factors()
    storage.save_model(tmp_path / "m.npz", _meta(), [(Ws, Hs)])
    data = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"^not a valid model file"):
        storage.load_model(tmp_path / "t.npz")


def test_output_dir_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(OutputError) as info:
        storage.prepare_output_dir(f)
    assert str(info.value) == f"{f}: output path exists and is not a directory"


def test_a_write_error_becomes_one_output_error_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "result"
    with pytest.raises(OutputError) as info, storage.staged_folder(target, replace=False) as tmp:
        (tmp / "a.png").write_bytes(b"x")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(info.value) == f"cannot write the result folder {target} (No space left on device)"
    assert list(tmp_path.iterdir()) == []


def test_a_failed_replacement_keeps_the_old_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "result"
    target.mkdir()
    (target / "old.txt").write_text("old")
    real = os.replace

    def replace(src: Path, dst: Path) -> None:
        if Path(src).name.endswith(".partial"):
            raise OSError(errno.EIO, "Input/output error")
        real(src, dst)

    monkeypatch.setattr(storage.os, "replace", replace)
    with pytest.raises(OutputError), storage.staged_folder(target, replace=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["result"]
    assert (target / "old.txt").read_text() == "old"
