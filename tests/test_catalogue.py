"""A catalogue of bad and odd input, driven through the real command line.

Every case checks: one clear line naming the input and the problem, the
documented exit code (0 ok, 1 error, 2 usage, 3 batch with some failures),
no traceback, no partial output; and in a batch, the other inputs still
processed and the failure listed in summary.csv and summary.json.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import imagegen as gen
import numpy as np
import pytest
from conftest import run

from mlnmf_cli import storage

SUMMARIES = {"summary.json", "summary.csv"}


def decompose(*args: str | Path) -> tuple[int, str, str]:
    return run("decompose", *args, "-q")


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def summary_csv(out: Path) -> list[dict[str, str]]:
    with open(out / "summary.csv") as fh:
        return list(csv.DictReader(fh))


def assert_nothing_written(out: Path) -> None:
    """Only the summaries: no result folder, no staging folder, no temporary file."""
    assert {p.name for p in out.iterdir()} == SUMMARIES


# --------------------------------------------------------------------------- listing inputs


def test_path_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    out = tmp_path / "out"
    code, _, stderr = decompose(missing, "-o", out)
    assert (code, stderr) == (1, f"mlnmf: error: {missing}: no such file or folder\n")
    assert_nothing_written(out)
    assert summary(out)["errors"] == [{"input": str(missing), "error": "no such file or folder"}]


def test_empty_directory(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    code, _, stderr = decompose(empty, "-o", out)
    assert (code, stderr) == (1, f"mlnmf: error: {empty}: no images found in this folder\n")
    assert_nothing_written(out)


def test_directory_with_no_images_among_other_files(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    (folder / "data.csv").write_text("a,b\n1,2\n")
    (folder / ".hidden.png").write_bytes(b"")
    (folder / "sub").mkdir()
    gen.make_gray_png(folder / "sub" / "deep.png", size=(16, 12))
    out = tmp_path / "out"
    code, _, stderr = decompose(folder, "-o", out)
    assert code == 1
    assert stderr == (
        f"mlnmf: error: {folder}: no images found in this folder "
        "(use --recursive to look in subfolders)\n"
    )
    assert_nothing_written(out)
    code, _, stderr = decompose(folder, "-o", out, "--recursive", "--ranks", "8,4")
    assert (code, stderr) == (0, "")
    assert (out / "deep" / "model.npz").is_file()


# --------------------------------------------------------------------------- bad image files

BAD_IMAGES: list[tuple[str, Callable[[Path], Path], str]] = [
    ("zero.png", gen.make_zero_byte, "empty file"),
    ("text.png", gen.make_text_as_png, "not an image Pillow can read"),
    (
        "truncated.png",
        gen.make_truncated_png,
        "truncated or corrupt image data (the file ends before the image data does)",
    ),
    (
        "truncated.jpg",
        gen.make_truncated_jpeg,
        "truncated or corrupt image data (the file ends before the image data does)",
    ),
    (
        "bomb.png",
        gen.make_decompression_bomb,
        "image has 400000000 pixels, more than the limit of 89478485 (raise it with --max-pixels)",
    ),
]


@pytest.mark.parametrize(("name", "make", "message"), BAD_IMAGES, ids=[c[0] for c in BAD_IMAGES])
def test_bad_image_file(
    name: str, make: Callable[[Path], Path], message: str, tmp_path: Path
) -> None:
    path = make(tmp_path / name)
    out = tmp_path / "out"
    code, stdout, stderr = decompose(path, "-o", out, "--ranks", "8,4")
    assert (code, stdout, stderr) == (1, "", f"mlnmf: error: {path}: {message}\n")
    assert_nothing_written(out)
    assert summary(out)["errors"] == [{"input": str(path), "error": message}]


def test_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    """A 30000 x 30000 declaration would need 900 MB to decode; refused from its header."""
    path = gen.make_decompression_bomb(tmp_path / "huge.png", width=30000, height=30000)
    assert path.stat().st_size < 200
    out = tmp_path / "out"
    code, _, stderr = decompose(path, "-o", out, "--max-pixels", "1000000000")
    assert code == 1
    assert stderr.startswith(f"mlnmf: error: {path}: truncated or corrupt image data")


def test_max_pixels_refuses_before_decoding(tmp_path: Path) -> None:
    path = gen.make_gray_png(tmp_path / "big.png", size=(100, 80))
    out = tmp_path / "out"
    code, _, stderr = decompose(path, "-o", out, "--max-pixels", "7999")
    assert code == 1
    assert stderr == (
        f"mlnmf: error: {path}: image has 8000 pixels, more than the limit of 7999 "
        "(raise it with --max-pixels)\n"
    )
    assert_nothing_written(out)


def test_batch_of_bad_files_goes_on_and_lists_every_failure(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    bad = {make(folder / name): message for name, make, message in BAD_IMAGES}
    good = [
        gen.make_gray_png(folder / "a_good.png", size=(24, 20)),
        gen.make_rgb_jpeg(folder / "z_good.jpg", size=(24, 16)),
    ]
    out = tmp_path / "out"
    code, stdout, stderr = run("decompose", folder, "-o", out, "--ranks", "8,4", "-q", "--json")
    assert code == 3
    expected = bad
    assert sorted(stderr.splitlines()) == sorted(
        f"mlnmf: error: {p}: {m}" for p, m in expected.items()
    )
    result = json.loads(stdout)
    assert result == summary(out)
    assert (result["succeeded"], result["failed"], result["skipped"]) == (2, len(expected), 0)
    assert {e["input"]: e["error"] for e in result["errors"]} == {
        str(p): m for p, m in expected.items()
    }
    rows = summary_csv(out)
    assert [r["input"] for r in rows] == sorted(str(p) for p in [*expected, *good])
    assert {r["input"]: (r["status"], r["error"]) for r in rows} == {
        **{str(p): ("failed", m) for p, m in expected.items()},
        **{str(p): ("ok", "") for p in good},
    }
    assert {p.name for p in out.iterdir()} == SUMMARIES | {"a_good", "z_good"}


# --------------------------------------------------------------------------- odd but valid images


def _report(out: Path, name: str) -> dict:
    folder = out / name
    assert (folder / "model.npz").is_file() and (folder / "summary.png").is_file()
    return json.loads((folder / "report.json").read_text())


def test_one_by_one_image(tmp_path: Path) -> None:
    path = gen.make_1x1(tmp_path / "one.png")
    out = tmp_path / "out"
    code, _, stderr = decompose(path, "-o", out, "--ranks", "8,4")
    assert (code, stderr) == (
        1,
        f"mlnmf: error: {path}: --ranks 8,4 does not fit the 1x1 image: every rank must be at "
        "most 1 (try --ranks 1,1)\n",
    )
    assert_nothing_written(out)
    code, _, stderr = decompose(path, "-o", out, "--ranks", "1,1")
    assert (code, stderr) == (0, "")
    report = _report(out, "one")
    assert (report["image"]["height"], report["image"]["width"]) == (1, 1)


@pytest.mark.parametrize("make", [gen.make_all_black, gen.make_all_white])
def test_constant_images(make: Callable[[Path], Path], tmp_path: Path) -> None:
    path = make(tmp_path / "flat.png")
    out = tmp_path / "out"
    code, _, stderr = decompose(path, "-o", out, "--ranks", "8,4")
    assert (code, stderr) == (0, "")
    report = _report(out, "flat")
    assert report["relative_error"] == pytest.approx(0.0, abs=1e-3)
    model = storage.load_model(out / "flat" / "model.npz")
    assert all(np.all(np.isfinite(a)) for Ws, Hs in model.parts for a in (*Ws, *Hs))


def test_16_bit_png(tmp_path: Path) -> None:
    path = gen.make_gray16_png(tmp_path / "deep.png")
    out = tmp_path / "out"
    code, _, stderr = decompose(path, "-o", out, "--ranks", "2,1")
    assert (code, stderr) == (0, "")
    report = _report(out, "deep")
    assert report["image"]["bit_depth"] == 16 and report["image"]["color"] is False


def test_palette_png_with_transparency(tmp_path: Path) -> None:
    path = gen.make_palette_transparent_png(tmp_path / "pal.png")
    out = tmp_path / "out"
    code, _, stderr = decompose(path, "-o", out, "--ranks", "1")
    assert (code, stderr) == (0, "")
    report = _report(out, "pal")
    assert report["image"]["notes"] == ["alpha channel composited over white"]
    assert report["image"]["color"] is True


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = gen.make_cmyk_jpeg(tmp_path / "cmyk.jpg")
    out = tmp_path / "out"
    code, _, stderr = decompose(path, "-o", out, "--ranks", "8,4")
    assert (code, stderr) == (0, "")
    report = _report(out, "cmyk")
    assert report["image"]["notes"] == ["CMYK converted to RGB without a colour profile"]


def test_animated_gif_uses_the_first_frame(tmp_path: Path) -> None:
    path = gen.make_animated_gif(tmp_path / "anim.gif")
    out = tmp_path / "out"
    code, _, stderr = decompose(path, "-o", out, "--ranks", "4,2")
    assert (code, stderr) == (0, "")
    report = _report(out, "anim")
    assert report["image"]["notes"] == ["animated GIF with 5 frames: first frame used"]


def test_exif_rotated_jpeg_is_turned_upright(tmp_path: Path) -> None:
    path = gen.make_exif_rotated_jpeg(tmp_path / "exif.jpg")
    out = tmp_path / "out"
    code, _, stderr = decompose(path, "-o", out, "--ranks", "8,4")
    assert (code, stderr) == (0, "")
    report = _report(out, "exif")
    assert (report["image"]["height"], report["image"]["width"]) == (16, 8)
    assert report["image"]["notes"] == ["EXIF orientation applied (rotated 90° clockwise)"]


def test_image_far_larger_than_the_rank(tmp_path: Path) -> None:
    path = gen.make_gray_png(tmp_path / "wide.png", size=(320, 240))
    out = tmp_path / "out"
    code, _, stderr = decompose(path, "-o", out, "--ranks", "2,1")
    assert (code, stderr) == (0, "")
    report = _report(out, "wide")
    assert report["depths"][-1]["rank"] == 1 and 0 < report["relative_error"] < 1


def test_rank_larger_than_the_image_fails_that_input_only(tmp_path: Path) -> None:
    small = gen.make_gray_png(tmp_path / "small.png", size=(6, 5))
    fine = gen.make_gray_png(tmp_path / "fine.png", size=(24, 20))
    out = tmp_path / "out"
    code, _, stderr = decompose(small, fine, "-o", out, "--ranks", "8,4")
    assert code == 3
    fit = "--ranks 8,4 does not fit the 5x6 image: every rank must be at most 5 (try --ranks 5,2)"
    assert stderr == f"mlnmf: error: {small}: {fit}\n"
    assert {p.name for p in out.iterdir()} == SUMMARIES | {"fine"}
    assert [(r["status"], r["error"]) for r in summary_csv(out)] == [
        ("failed", fit),
        ("ok", ""),
    ]


# --------------------------------------------------------------------------- bad options

USAGE = [
    (
        ["--ranks", "4,8"],
        "--ranks 4,8 must be non-increasing, each rank at most the one before it (try --ranks 8,4)",
    ),
    (
        ["--ranks", "8", "--layers", "2"],
        "--layers 2 does not match --ranks 8, which has 1 rank (give 2 ranks, or leave out "
        "--layers)",
    ),
    (
        ["--ranks", "0,4"],
        "--ranks 0,4 is not a list of positive whole numbers separated by commas, e.g. 64,32,16",
    ),
    (
        ["--ranks", "8,-3"],
        "--ranks 8,-3 is not a list of positive whole numbers separated by commas, e.g. 64,32,16",
    ),
    (
        ["--ranks", "eight,4"],
        "--ranks 'eight,4' is not a list of positive whole numbers separated by commas, e.g. 64,32,16",
    ),
    (
        ["--ranks", "2.5"],
        "--ranks 2.5 is not a list of positive whole numbers separated by commas, e.g. 64,32,16",
    ),
]


@pytest.mark.parametrize(("args", "message"), USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_bad_ranks_are_usage_errors(args: list[str], message: str, tmp_path: Path) -> None:
    path = gen.make_gray_png(tmp_path / "img.png", size=(24, 20))
    out = tmp_path / "out"
    code, stdout, stderr = decompose(path, "-o", out, *args)
    assert (code, stdout) == (2, "")
    assert stderr == f"mlnmf: error: {message} (see 'mlnmf decompose --help')\n"
    assert not out.exists()


# --------------------------------------------------------------------------- output problems


def test_output_directory_that_is_a_file(tmp_path: Path) -> None:
    path = gen.make_gray_png(tmp_path / "img.png", size=(24, 20))
    out = tmp_path / "out"
    out.write_text("I am a file")
    code, _, stderr = decompose(path, "-o", out, "--ranks", "8,4")
    assert (code, stderr) == (
        1,
        f"mlnmf: error: {out}: output path exists and is not a directory\n",
    )
    assert out.read_text() == "I am a file"


@pytest.fixture
def unwritable(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder nobody can write into, root included: the immutable attribute (chattr +i).

    Yields the folder and the system's reason for refusing a write there."""
    folder = tmp_path / "locked"
    folder.mkdir()
    chattr = shutil.which("chattr")
    locked = (
        chattr is not None
        and subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode == 0
    )
    if not locked:
        folder.chmod(0o555)
        try:
            (folder / "probe").touch()
        except PermissionError:
            pass
        else:
            folder.chmod(0o755)
            pytest.skip(
                "running as root and chattr +i is not available: cannot make a folder unwritable"
            )
    try:
        yield folder, "Operation not permitted" if locked else "Permission denied"
    finally:
        if locked:
            subprocess.run([str(chattr), "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_output_directory_without_write_permission(
    unwritable: tuple[Path, str], tmp_path: Path
) -> None:
    folder, expected = unwritable
    path = gen.make_gray_png(tmp_path / "img.png", size=(24, 20))
    for out in (folder, folder / "sub"):
        code, _, stderr = decompose(path, "-o", out, "--ranks", "8,4")
        assert (code, stderr) == (
            1,
            f"mlnmf: error: {out}: cannot write to the output directory ({expected})\n",
        )
    assert list(folder.iterdir()) == []


def test_same_file_name_in_different_folders(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = gen.make_gray_png(tmp_path / "a" / "img.png", size=(24, 20), seed=1)
    b = gen.make_gray_png(tmp_path / "b" / "img.png", size=(24, 20), seed=2)
    out = tmp_path / "out"
    code, _, stderr = decompose(a, b, "-o", out, "--ranks", "8,4")
    assert (code, stderr) == (0, "")
    assert {p.name for p in out.iterdir()} == SUMMARIES | {"a__img", "b__img"}
    assert _report(out, "a__img")["input"] == str(a)
    assert _report(out, "b__img")["input"] == str(b)


def test_existing_result_folder_without_force(tmp_path: Path) -> None:
    path = gen.make_gray_png(tmp_path / "img.png", size=(24, 20))
    other = gen.make_gray_png(tmp_path / "other.png", size=(24, 20), seed=5)
    out = tmp_path / "out"
    assert decompose(path, "-o", out, "--ranks", "8,4")[0] == 0
    before = (out / "img" / "model.npz").read_bytes()
    code, _, stderr = decompose(path, other, "-o", out, "--ranks", "4,2")
    assert code == 3
    assert stderr == (
        f"mlnmf: error: {path}: result folder {out / 'img'} already exists "
        "(use --force to replace it or --skip-existing to keep it)\n"
    )
    assert (out / "img" / "model.npz").read_bytes() == before
    assert (out / "other" / "model.npz").is_file()
    assert [r["status"] for r in summary_csv(out)] == ["failed", "ok"]
    assert {p.name for p in out.iterdir()} == SUMMARIES | {"img", "other"}
    code, _, stderr = decompose(path, "-o", out, "--ranks", "4,2", "--force")
    assert (code, stderr) == (0, "")
    assert storage.load_model(out / "img" / "model.npz").parts[0].Ws[0].shape[1] == 4


# --------------------------------------------------------------------------- bad model files


@pytest.fixture(scope="module")
def good_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("model")
    image = gen.make_gray_png(root / "img.png", size=(24, 20))
    assert decompose(image, "-o", root / "out", "--ranks", "4,2")[0] == 0
    return root / "out" / "img" / "model.npz"


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _save(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    return path


def reconstruct(model: Path, tmp_path: Path) -> tuple[int, str, str]:
    return run("reconstruct", model, "-o", tmp_path / "rebuilt.png")


def test_good_model_reconstructs(good_model: Path, tmp_path: Path) -> None:
    code, _, stderr = reconstruct(good_model, tmp_path)
    assert (code, stderr.startswith(f"wrote {tmp_path / 'rebuilt.png'}")) == (0, True)


def test_truncated_model(good_model: Path, tmp_path: Path) -> None:
    model = tmp_path / "model.npz"
    data = good_model.read_bytes()
    model.write_bytes(data[: len(data) // 2])
    code, _, stderr = reconstruct(model, tmp_path)
    assert (code, stderr) == (
        1,
        f"mlnmf: error: {model}: not a valid model file "
        "(truncated or corrupt: File is not a zip file)\n",
    )
    assert not (tmp_path / "rebuilt.png").exists()


class _Payload:
    """Unpickling this would create a file: the proof that a loader ran pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_model_with_a_pickled_object_array_is_refused_unopened(
    good_model: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    arrays = _arrays(good_model)
    arrays["part0_W1"] = np.array([_Payload(marker), 1], dtype=object)
    model = _save(tmp_path / "model.npz", arrays)
    with zipfile.ZipFile(model) as zf:
        assert b"touch" in zf.read("part0_W1.npy")
    code, _, stderr = reconstruct(model, tmp_path)
    assert (code, stderr) == (
        1,
        f"mlnmf: error: {model}: model contains pickled objects; refusing to load it\n",
    )
    assert not marker.exists()


def test_model_with_inconsistent_shapes(good_model: Path, tmp_path: Path) -> None:
    arrays = _arrays(good_model)
    arrays["part0_H2"] = np.ones((3, arrays["part0_H2"].shape[1]), dtype=np.float32)
    model = _save(tmp_path / "model.npz", arrays)
    code, _, stderr = reconstruct(model, tmp_path)
    assert (code, stderr) == (
        1,
        f"mlnmf: error: {model}: model arrays have inconsistent shapes: "
        "part0_H2 is 3x24, expected 2x24\n",
    )


def test_model_from_an_unknown_format_version(good_model: Path, tmp_path: Path) -> None:
    arrays = _arrays(good_model)
    arrays["format_version"] = np.asarray(99, dtype=np.int64)
    model = _save(tmp_path / "model.npz", arrays)
    code, _, stderr = reconstruct(model, tmp_path)
    assert (code, stderr) == (
        1,
        f"mlnmf: error: {model}: unsupported model format version 99 "
        "(this mlnmf reads version 1)\n",
    )
