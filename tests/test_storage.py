"""Atomic writes, result folders, folder names and the model.npz format."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import subprocess
import sys
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


def test_unique_names_are_safe_unique_and_stable(tmp_path: Path) -> None:
    names = storage.unique_names(
        [tmp_path / n for n in ("a.png", "a.png", "a-2.png", "..png", "summary.json.png")]
    )
    assert names[:3] == ["a", "a-3", "a-2"]
    assert names[3].startswith("_-") and names[4].startswith("summary.json-")
    # Files of one folder that differ only in their suffix keep it in their names.
    assert storage.unique_names([tmp_path / "a.png", tmp_path / "a.jpg"]) == ["a_png", "a_jpg"]
    assert storage.safe_name("plain name") == "plain name"
    assert storage.safe_name("x" * 300) == storage.safe_name("x" * 300)
    assert len(storage.safe_name("x" * 300).encode()) == storage.MAX_NAME_BYTES
    assert storage.safe_name("x" * 300) != storage.safe_name("x" * 301)


def test_display_path_is_one_printable_line() -> None:
    assert storage.display_path("/a/b c.png") == "/a/b c.png"
    assert storage.display_path(os.fsdecode(b"/a/\xff\n.png")) == "/a/\\xff\\n.png"
    assert storage.display_path("tab\there\u2028.png") == "tab\\there\\u2028.png"
    assert storage.display_path(os.fsdecode(b"caf\xe9\t.png")) == "caf\\xe9\\t.png"


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_new_files_and_folders_follow_the_umask(mask: int, tmp_path: Path) -> None:
    previous = os.umask(mask)
    try:
        storage.write_text(tmp_path / "a.txt", "x")
        with storage.staged_folder(tmp_path / "r", replace=False) as tmp:
            storage.write_text(tmp / "report.json", "{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((tmp_path / "r").stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((tmp_path / "r" / "report.json").stat().st_mode) == 0o666 & ~mask


def test_a_replaced_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("old")
    path.chmod(0o640)
    storage.write_text(path, "new")
    assert (path.read_text(), stat.S_IMODE(path.stat().st_mode)) == ("new", 0o640)


def test_temporaries_of_long_names_fit_the_name_limit(tmp_path: Path) -> None:
    path = tmp_path / ("y" * 250)
    storage.write_text(path, "x")
    with storage.staged_folder(tmp_path / ("z" * 250), replace=False) as tmp:
        assert len(tmp.name.encode()) <= 255
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y" * 250, "z" * 250]


def test_the_output_lock_nests_and_is_removed(tmp_path: Path) -> None:
    with storage.output_lock(tmp_path):
        assert (tmp_path / ".mlnmf.lock").read_text() == f"{os.getpid()}\n"
        with storage.output_lock(tmp_path):
            assert storage.holds_output_lock(tmp_path)
        assert storage.holds_output_lock(tmp_path)
    assert not storage.holds_output_lock(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path: Path) -> None:
    (tmp_path / ".mlnmf.lock").write_text("999999\n")
    with storage.output_lock(tmp_path, wait=0):
        assert (tmp_path / ".mlnmf.lock").read_text() == f"{os.getpid()}\n"
    assert list(tmp_path.iterdir()) == []


def test_the_lock_excludes_another_process(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from mlnmf_cli import storage\n"
        "try:\n"
        "    with storage.output_lock(Path(sys.argv[1]), wait=0): print('got it')\n"
        "except Exception as exc: print(exc)\n"
    )
    with storage.output_lock(tmp_path):
        busy = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True
        )
    free = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True
    )
    assert busy.stdout == (
        f"{tmp_path}: another mlnmf run (pid {os.getpid()}) is writing into this folder; "
        "wait for it to finish or choose another --out\n"
    )
    assert free.stdout == "got it\n"


@pytest.mark.parametrize("content", [b"", b"\n", b"not a pid\n"])
def test_a_holder_that_has_not_written_its_pid_yet_still_reads_busy(
    tmp_path: Path, content: bytes
) -> None:
    # The holder creates and locks the file before it writes its pid: a second
    # run that looks in between must say "busy", not crash on the empty file.
    lock = tmp_path / ".mlnmf.lock"
    lock.write_bytes(content)
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(storage.FolderBusy) as caught, storage.output_lock(tmp_path, wait=0):
            pass
    finally:
        os.close(fd)
    assert str(caught.value) == (
        f"{tmp_path}: another mlnmf run is writing into this folder; "
        "wait for it to finish or choose another --out"
    )


def _result(folder: Path, marker: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(marker)
    (folder / "model.npz").write_bytes(b"PK")
    return folder


def test_recovery_puts_back_an_old_result_and_removes_leftovers(tmp_path: Path) -> None:
    _result(tmp_path / ".a.abcd1234.old" / "a", "old a")
    _result(tmp_path / "b", "new b")
    _result(tmp_path / ".b.abcd1234.old" / "b", "old b")
    _result(tmp_path / ".c.abcd1234.partial", "half c")
    (tmp_path / ".c.abcd1234.partial" / ".model.npz.abcd1234.tmp").write_bytes(b"")
    (tmp_path / ".d.abcd1234.trash").mkdir()
    (tmp_path / ".summary.csv.abcd1234.tmp").write_text("")
    storage.recover_output(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
    assert (tmp_path / "a" / "report.json").read_text() == "old a"
    assert (tmp_path / "b" / "report.json").read_text() == "new b"


def test_recovery_keeps_what_it_did_not_write(tmp_path: Path) -> None:
    keep = [
        tmp_path / ".x.abcd1234.partial" / "notes.txt",
        tmp_path / ".y.abcd1234.old" / "y" / "diary.txt",
        tmp_path / ".z.abcd1234.old" / "z.txt",
        tmp_path / ".summary.csv.abcd1234.tmp" / "inside.txt",
        tmp_path / ".w.abcd1234.partial" / "sub" / "report.json",
    ]
    for path in keep:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("mine")
    (tmp_path / ".v.abcd1234.partial").symlink_to(tmp_path / ".x.abcd1234.partial")
    assert storage.recover_output(tmp_path) == []
    assert all(path.read_text() == "mine" for path in keep)
    assert (tmp_path / ".v.abcd1234.partial").is_symlink()


def test_staged_folder_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "result"
    with pytest.raises(RuntimeError), storage.staged_folder(target, replace=False) as tmp:
        (tmp / "half.png").write_bytes(b"x")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with storage.staged_folder(target, replace=False) as tmp:
        (tmp / "report.json").write_text("one")
    assert (target / "report.json").read_text() == "one"
    with pytest.raises(OutputError, match="already exists"):
        with storage.staged_folder(target, replace=False):
            pass
    with storage.staged_folder(target, replace=True) as tmp:
        (tmp / "report.json").write_text("two")
        (tmp / "model.npz").write_text("two")
    assert sorted(p.name for p in target.iterdir()) == ["model.npz", "report.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["result"]


@pytest.mark.parametrize("replace", [False, True])
def test_a_folder_that_appears_while_the_run_works_is_not_replaced(
    tmp_path: Path, replace: bool
) -> None:
    # Two runs into one --out (learn and encode take no lock on their parent):
    # the slower one must not replace what the faster one, or the user, put there.
    target = tmp_path / "result"
    with pytest.raises(OutputError) as err, storage.staged_folder(target, replace=replace) as tmp:
        (tmp / "report.json").write_text("mine")
        target.mkdir()
        (target / "report.json").write_text("theirs")
        if replace:  # --force: a folder mlnmf did not write is still never replaced
            (target / "thesis.tex").write_text("theirs")
    assert str(err.value).endswith(
        "; it appeared while this run was working, so this result was not written"
    )
    assert (target / "report.json").read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["result"]


@pytest.mark.parametrize("kind", ["folder", "file", "link", "dangling link"])
def test_force_replaces_only_result_folders(kind: str, tmp_path: Path) -> None:
    target = tmp_path / "result"
    real = tmp_path / "mine"
    real.mkdir()
    (real / "report.json").write_text("{}")
    if kind == "folder":
        target.mkdir()
        (target / "report.json").write_text("{}")
        (target / "thesis.tex").write_text("mine")
    elif kind == "file":
        target.write_text("mine")
    else:
        target.symlink_to(real if kind == "link" else tmp_path / "nowhere")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(OutputError) as err, storage.staged_folder(target, replace=True):
        pytest.fail("the body must not run")
    assert str(err.value) == (
        f"{target} exists and is not an mlnmf result folder; "
        "--force replaces only those (move it away or choose another --out)"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (real / "report.json").read_text() == "{}"


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
    (target / "report.json").write_text("old")
    real = os.replace

    def replace(src: Path, dst: Path) -> None:
        if Path(src).name.endswith(".partial"):
            raise OSError(errno.EIO, "Input/output error")
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OutputError, match="Input/output error"):
        with storage.staged_folder(target, replace=True) as tmp:
            (tmp / "report.json").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["result"]
    assert (target / "report.json").read_text() == "old"


def test_a_file_system_without_flock_runs_unlocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_flock(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    with storage.output_lock(tmp_path, wait=0):
        storage.write_text(tmp_path / "a.txt", "x")
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_a_lock_file_that_is_a_link_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / ".mlnmf.lock").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputError, match="cannot lock the output directory"):
        with storage.output_lock(tmp_path, wait=0):
            pass
    assert not (tmp_path / "elsewhere").exists()
