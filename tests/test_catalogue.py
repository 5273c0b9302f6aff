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
        f"mlnmf: error: {path}: ranks[0] must be between 1 and min(m, n) = 1, got 8\n",
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
    assert stderr == f"mlnmf: error: {small}: ranks[0] must be between 1 and min(m, n) = 5, got 8\n"
    assert {p.name for p in out.iterdir()} == SUMMARIES | {"fine"}
    assert [(r["status"], r["error"]) for r in summary_csv(out)] == [
        ("failed", "ranks[0] must be between 1 and min(m, n) = 5, got 8"),
        ("ok", ""),
    ]


# --------------------------------------------------------------------------- bad options

USAGE = [
    (
        ["--ranks", "4,8"],
        "Invalid value: ranks must be non-increasing, got ranks[1] = 8 > ranks[0] = 4 in [4, 8]",
    ),
    (
        ["--ranks", "8", "--layers", "2"],
        "Invalid value for '--layers': --layers 2 does not match --ranks 8, which has 1 rank(s)",
    ),
    (["--ranks", "0,4"], "Invalid value for '--ranks': every rank must be at least 1, got 0"),
    (["--ranks", "8,-3"], "Invalid value for '--ranks': every rank must be at least 1, got -3"),
    (
        ["--ranks", "eight,4"],
        "Invalid value for '--ranks': ranks must be whole numbers separated by commas, "
        "got 'eight,4'",
    ),
    (
        ["--ranks", "2.5"],
        "Invalid value for '--ranks': ranks must be whole numbers separated by commas, got '2.5'",
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


# =========================================================================== paths: issue 11,
# classes 8 (tracebacks), 9 (resources) and 10 (special files and odd paths). Own helpers below.

import io as _io  # noqa: E402
import os as _os  # noqa: E402
import sys as _sys  # noqa: E402
import textwrap as _textwrap  # noqa: E402
import tracemalloc as _tracemalloc  # noqa: E402

LONG = "a" * 260  # one path component over the 255-byte limit


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


_RUN_MAIN = """
import os, signal, sys
{setup}
sys.argv = ["mlnmf", *sys.argv[1:]]
from mlnmf_cli.cli import main
main()
"""


def run_process(
    *args: str | Path, setup: str = "", unprivileged: bool = False, timeout: float = 120
) -> tuple[int, str, str]:
    """``mlnmf *args`` in a child process (signals, FIFOs, permissions); ``setup`` runs first.

    ``unprivileged``: without the power to bypass file permissions (root drops it with
    setpriv), so that a folder without search permission is one."""
    command = [_sys.executable, "-c", _RUN_MAIN.format(setup=_textwrap.dedent(setup))]
    if unprivileged and _os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: permissions cannot be tested")
        command = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *command]
    env = {**_os.environ, "NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"}
    env["OPENBLAS_NUM_THREADS"] = "1"
    done = subprocess.run(
        [*command, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert "Traceback" not in done.stderr
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[Path]:
    """A folder without read or search permission (mode 000), reopened afterwards."""
    folder = tmp_path / "locked"
    (folder / "sub").mkdir(parents=True)
    gen.make_gray_png(folder / "sub" / "img.png", size=(24, 20))
    folder.chmod(0)
    try:
        yield folder
    finally:
        folder.chmod(0o755)


# --------------------------------------------------------------------------- 8: tracebacks


def test_input_name_component_too_long_is_a_failed_input(tmp_path: Path) -> None:
    good = gen.make_gray_png(tmp_path / "good.png", size=(24, 20))
    long = tmp_path / LONG / "img.png"  # (a long result name is the result-names class)
    out = tmp_path / "out"
    code, _, stderr = decompose(long, good, "-o", out, "--ranks", "4,2")
    assert (code, stderr) == (3, f"mlnmf: error: {long}: file name too long\n")
    assert (out / "good" / "model.npz").is_file() and not (out / "img").exists()
    assert [r["status"] for r in summary_csv(out)] == ["failed", "ok"]


def test_output_name_component_too_long(tmp_path: Path) -> None:
    image = gen.make_gray_png(tmp_path / "img.png", size=(24, 20))
    out = tmp_path / LONG
    code, _, stderr = decompose(image, "-o", out, "--ranks", "4,2")
    assert (code, stderr) == (1, f"mlnmf: error: {out}: File name too long\n")
    assert _tree(tmp_path) == {"img.png"}


def test_model_name_component_too_long(tmp_path: Path) -> None:
    model = tmp_path / LONG / "model.npz"
    code, _, stderr = run("reconstruct", model, "-o", tmp_path / "r.png")
    assert (code, stderr) == (
        1,
        f"mlnmf: error: {model}: cannot read the file (File name too long)\n",
    )
    assert _tree(tmp_path) == set()


def test_reconstruct_output_name_too_long(good_model: Path, tmp_path: Path) -> None:
    target = tmp_path / f"{LONG}.png"
    code, _, stderr = run("reconstruct", good_model, "-o", target)
    assert (code, stderr) == (1, f"mlnmf: error: {target}: cannot write (File name too long)\n")
    assert _tree(tmp_path) == set()


def test_decompose_input_under_a_folder_without_search_permission(
    locked: Path, tmp_path: Path
) -> None:
    good = gen.make_gray_png(tmp_path / "good.png", size=(24, 20))
    hidden = locked / "sub" / "img.png"
    out = tmp_path / "out"
    code, _, stderr = run_process(
        "decompose", hidden, good, "-o", out, "-q", "--ranks", "4,2", unprivileged=True
    )
    assert (code, stderr) == (3, f"mlnmf: error: {hidden}: permission denied\n")
    assert (out / "good" / "model.npz").is_file() and not (out / "img").exists()
    assert summary(out)["errors"] == [{"input": str(hidden), "error": "permission denied"}]


def test_reconstruct_model_under_a_folder_without_search_permission(
    locked: Path, tmp_path: Path
) -> None:
    model = locked / "sub" / "model.npz"
    code, _, stderr = run_process("reconstruct", model, "-o", tmp_path / "r.png", unprivileged=True)
    assert (code, stderr) == (1, f"mlnmf: error: {model}: permission denied\n")
    assert not (tmp_path / "r.png").exists()


def test_compare_input_under_a_folder_without_search_permission(
    locked: Path, tmp_path: Path
) -> None:
    good = gen.make_gray_png(tmp_path / "good.png", size=(24, 20))
    hidden = locked / "sub" / "img.png"
    out = tmp_path / "cmp"
    code, _, stderr = run_process("compare", hidden, good, "-o", out, "-q", unprivileged=True)
    assert (code, stderr) == (1, f"mlnmf: error: {hidden}: permission denied\n")
    assert not out.exists() or list(out.iterdir()) == []


def _with_meta(good_model: Path, tmp_path: Path, text: str) -> Path:
    arrays = _arrays(good_model)
    arrays["meta"] = np.asarray(text)
    return _save(tmp_path / "model.npz", arrays)


def _meta_text(good_model: Path) -> str:
    return str(_arrays(good_model)["meta"])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace('"depth": 2', '"depth": NaN'),
            "model metadata holds NaN, which is not a number",
        ),
        (
            lambda t: t.replace('"depth": 2', '"depth": Infinity'),
            "model metadata holds Infinity, which is not a number",
        ),
        (
            lambda t: t.replace('"depth": 2', '"depth": -Infinity'),
            "model metadata holds -Infinity, which is not a number",
        ),
        (
            lambda t: t.replace('"depth": 2', '"depth": 1e400'),
            "model metadata holds 1e400, which is too large a number",
        ),
        (lambda t: "[" * 100_000 + "]" * 100_000, "model metadata is nested too deeply"),
        (
            lambda t: t[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
            "model metadata is nested too deeply",
        ),
        (
            lambda t: t.replace('"depth": 2', '"depth": 2.0'),
            "model metadata lacks a valid 'depth' field",
        ),
    ],
    ids=["nan", "infinity", "minus-infinity", "overflow", "nested", "nested-field", "float-depth"],
)
def test_model_metadata_that_json_cannot_hold(
    edit: Callable[[str], str], message: str, good_model: Path, tmp_path: Path
) -> None:
    model = _with_meta(good_model, tmp_path, edit(_meta_text(good_model)))
    code, _, stderr = reconstruct(model, tmp_path)
    assert (code, stderr) == (1, f"mlnmf: error: {model}: {message}\n")
    assert not (tmp_path / "rebuilt.png").exists()


def _npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()


def _zip_model(path: Path, arrays: dict[str, np.ndarray], raw: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, value in arrays.items():
            buf = _io.BytesIO()
            np.save(buf, value)
            zf.writestr(f"{key}.npy", buf.getvalue())
        for key, data in raw.items():
            zf.writestr(f"{key}.npy", data)
    return path


def test_small_model_declaring_a_ten_billion_element_array(
    good_model: Path, tmp_path: Path
) -> None:
    arrays = _arrays(good_model)
    del arrays["part0_W1"]
    npy = _npy_header((100_000, 100_000)) + bytes(64)
    model = _zip_model(tmp_path / "model.npz", arrays, {"part0_W1": npy})
    assert model.stat().st_size < 10_000
    code, _, stderr = reconstruct(model, tmp_path)
    assert (code, stderr) == (
        1,
        f"mlnmf: error: {model}: not a valid model file "
        "(array part0_W1 declares 40000000000 bytes but holds 64)\n",
    )
    assert not (tmp_path / "rebuilt.png").exists()


def test_ctrl_c_during_start_up_imports(tmp_path: Path) -> None:
    hook = """
    import importlib.abc
    class Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "typer":
                os.kill(os.getpid(), signal.SIG{which})
    sys.meta_path.insert(0, Hook())
    """
    for which in ("INT", "TERM", "HUP"):
        code, stdout, stderr = run_process(
            "decompose", tmp_path, "-o", tmp_path / "out", setup=hook.format(which=which)
        )
        assert (code, stdout, stderr) == (130, "", "mlnmf: error: interrupted\n"), which
    assert _tree(tmp_path) == set()


def test_ctrl_c_during_option_parsing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mlnmf_cli.cli import decompose as command

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "build_options", interrupted)
    image = gen.make_gray_png(tmp_path / "img.png", size=(24, 20))
    code, _, stderr = decompose(image, "-o", tmp_path / "out")
    assert (code, stderr) == (130, "mlnmf: error: interrupted\n")
    assert _tree(tmp_path) == {"img.png"}


def test_memory_error_outside_the_factorisation(
    monkeypatch: pytest.MonkeyPatch, good_model: Path, tmp_path: Path
) -> None:
    from mlnmf_cli import pipeline

    def exhausted(*args: object, **kwargs: object) -> None:
        raise MemoryError("Unable to allocate 37.3 GiB for an array with shape (10000000000,)")

    monkeypatch.setattr(pipeline, "rebuild", exhausted)
    code, _, stderr = reconstruct(good_model, tmp_path)
    assert (code, stderr) == (
        1,
        "mlnmf: error: out of memory "
        "(Unable to allocate 37.3 GiB for an array with shape (10000000000,))\n",
    )
    assert _tree(tmp_path) == set()


# --------------------------------------------------------------------------- 9: resources


def test_one_row_image_needs_memory_of_the_order_of_its_matrix(tmp_path: Path) -> None:
    """1 x 200,000 pixels (1.6 MB as float64): writing its result took 312 MB (a 256-row
    picture of the 1-row coefficients); now within a small multiple of the matrix (about
    10x wide, 20x tall: the summary figure draws W1 at the picture's height)."""
    from PIL import Image

    from mlnmf_cli import imageio, pipeline
    from mlnmf_cli.options import Options

    for shape in ((1, 200_000), (200_000, 1)):
        pixels = (np.random.default_rng(0).random(shape) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / "line.png")
        image = imageio.load_image(tmp_path / "line.png")
        decomposition = pipeline.decompose_image(image, Options(ranks=(1,)))
        _tracemalloc.start()
        try:
            pipeline.write_result(decomposition, tmp_path / f"r{shape[0]}", "line.png")
            peak = _tracemalloc.get_traced_memory()[1]
        finally:
            _tracemalloc.stop()
        assert peak < 30 * image.pixels.nbytes, (shape, peak)


_SIZE_LIMITS = [
    (
        "random-test",
        ["--size", "100000x100000"],
        "'--size': 100000x100000 means 10000000000 pixels per image",
    ),
    (
        "random-test",
        ["--size", "64x64", "--max-pixels", "1000"],
        "'--size': 64x64 means 4096 pixels per image",
    ),
    # random-test holds every image it draws: --count times --size shares the limit.
    (
        "random-test",
        ["--count", "10000"],
        "'--count': 10000 images of 128x128 mean 163840000 pixels",
    ),
    (
        "compare",
        ["--resize", "100000x100000"],
        "'--resize': 100000x100000 means 10000000000 pixels per image",
    ),
]


@pytest.mark.parametrize(
    ("command", "args", "message"), _SIZE_LIMITS, ids=["size", "size-limit", "count", "resize"]
)
def test_generated_sizes_beyond_max_pixels_are_refused_up_front(
    command: str, args: list[str], message: str, tmp_path: Path
) -> None:
    limit = args[args.index("--max-pixels") + 1] if "--max-pixels" in args else "89478485"
    inputs = []
    if command == "compare":
        inputs = [
            gen.make_gray_png(tmp_path / "a.png", size=(24, 20)),
            gen.make_gray_png(tmp_path / "b.png", size=(24, 20), seed=1),
        ]
    out = tmp_path / "out"
    code, _, stderr = run(command, *inputs, *args, "-o", out, "-q")
    assert (code, stderr) == (
        2,
        f"mlnmf: error: Invalid value for {message}, more than the limit of {limit} "
        f"(raise it with --max-pixels) (see 'mlnmf {command} --help')\n",
    )
    assert not out.exists()


def test_model_inflating_beyond_its_metadata_is_refused_before_decompressing(
    good_model: Path, tmp_path: Path
) -> None:
    arrays = _arrays(good_model)
    m, n = arrays["part0_W1"].shape[0], arrays["part0_H1"].shape[1]
    del arrays["part0_W1"]
    wide = np.zeros((m, 400_000), dtype=np.float32)  # 32 MB of zeros, about 32 kB compressed
    buf = _io.BytesIO()
    np.save(buf, wide)
    model = _zip_model(tmp_path / "model.npz", arrays, {"part0_W1": buf.getvalue()})
    del wide, buf
    assert model.stat().st_size < 200_000
    _tracemalloc.start()
    try:
        code, _, stderr = reconstruct(model, tmp_path)
        peak = _tracemalloc.get_traced_memory()[1]
    finally:
        _tracemalloc.stop()
    assert (code, stderr) == (
        1,
        f"mlnmf: error: {model}: model array part0_W1 has rank 400000, "
        f"impossible for a {m}x{n} matrix\n",
    )
    assert peak < 8_000_000
    assert not (tmp_path / "rebuilt.png").exists()


def test_model_claiming_an_image_beyond_the_pixel_limit(good_model: Path, tmp_path: Path) -> None:
    meta = json.loads(_meta_text(good_model))
    meta["image_shape"] = meta["part_shape"] = [100_000, 100_000]
    model = _with_meta(good_model, tmp_path, json.dumps(meta))
    code, _, stderr = reconstruct(model, tmp_path)
    assert (code, stderr) == (
        1,
        f"mlnmf: error: {model}: model's image has 10000000000 pixels, "
        "more than the limit of 89478485\n",
    )


def test_model_whose_metadata_disagrees_with_its_image_shape(
    good_model: Path, tmp_path: Path
) -> None:
    meta = json.loads(_meta_text(good_model))
    meta["image_shape"] = [10**30, 20]
    model = _with_meta(good_model, tmp_path, json.dumps(meta))
    m, n = meta["part_shape"]
    code, _, stderr = reconstruct(model, tmp_path)
    assert (code, stderr) == (
        1,
        f"mlnmf: error: {model}: model metadata is inconsistent: an image of shape "
        f"{10**30}x20 with channels 'gray' gives 1 matrix(es) of {10**30}x20, not 1 of {m}x{n}\n",
    )


# --------------------------------------------------------------------------- 10: special files


def test_fifo_as_model_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "model.npz"
    _os.mkfifo(fifo)
    code, _, stderr = run_process("reconstruct", fifo, "-o", tmp_path / "r.png", timeout=60)
    assert (code, stderr) == (
        1,
        f"mlnmf: error: {fifo}: is a named pipe (FIFO), not a regular file\n",
    )
    assert _tree(tmp_path) == {"model.npz"}


def test_fifo_as_original_is_refused_without_blocking(good_model: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "original.png"
    _os.mkfifo(fifo)
    code, _, stderr = run_process(
        "reconstruct", good_model, "--original", fifo, "-o", tmp_path / "r.png", timeout=60
    )
    assert (code, stderr) == (
        1,
        f"mlnmf: error: {fifo}: is a named pipe (FIFO), not a regular file\n",
    )
    assert _tree(tmp_path) == {"original.png"}


def test_fifo_named_on_the_command_line_is_a_failed_input(tmp_path: Path) -> None:
    good = gen.make_gray_png(tmp_path / "good.png", size=(24, 20))
    fifo = tmp_path / "pipe.png"
    _os.mkfifo(fifo)
    out = tmp_path / "out"
    code, _, stderr = run_process(
        "decompose", fifo, good, "-o", out, "-q", "--ranks", "4,2", timeout=60
    )
    assert (code, stderr) == (
        3,
        f"mlnmf: error: {fifo}: is a named pipe (FIFO), not a regular file\n",
    )
    assert (out / "good" / "model.npz").is_file() and not (out / "pipe").exists()


def test_fifo_with_an_image_suffix_inside_a_folder_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    gen.make_gray_png(folder / "a.png", size=(24, 20))
    _os.mkfifo(folder / "b.png")
    out = tmp_path / "out"
    code, _, stderr = decompose(folder, "-o", out, "--ranks", "4,2")
    assert (code, stderr) == (
        3,
        f"mlnmf: error: {folder / 'b.png'}: is a named pipe (FIFO), not a regular file\n",
    )
    assert (out / "a" / "model.npz").is_file() and not (out / "b").exists()


def _photos(tmp_path: Path) -> Path:
    """A folder ``photos`` holding one image, ``a.png``."""
    folder = tmp_path / "photos"
    folder.mkdir()
    gen.make_gray_png(folder / "a.png", size=(24, 20))
    return folder


def test_out_equal_to_the_input_folder(tmp_path: Path) -> None:
    folder = _photos(tmp_path)
    code, _, stderr = decompose(folder, "-o", folder, "--ranks", "4,2")
    assert (code, stderr) == (0, "")
    assert (folder / "a" / "model.npz").is_file()
    # A second run over the same folder, recursively: the result folder is not an input.
    code, _, stderr = decompose(folder, "-o", folder, "-R", "--ranks", "4,2", "--skip-existing")
    assert (code, stderr) == (0, "")
    assert [r["input"] for r in summary_csv(folder)] == [str(folder / "a.png")]


def test_out_a_parent_of_the_input_folder(tmp_path: Path) -> None:
    folder = _photos(tmp_path)
    code, _, stderr = decompose(folder, "-o", tmp_path, "--ranks", "4,2")
    assert (code, stderr) == (0, "")
    assert (tmp_path / "a" / "model.npz").is_file()
    assert (folder / "a.png").is_file()


def test_result_folder_that_would_replace_inputs_is_refused(tmp_path: Path) -> None:
    """-o over the inputs: photos.png's result folder OUT/photos is the input folder photos;
    with --force it would have replaced the user's images."""
    folder = _photos(tmp_path)
    image = gen.make_gray_png(tmp_path / "photos.png", size=(24, 20))
    code, _, stderr = decompose(image, folder, "-o", tmp_path, "--ranks", "4,2", "--force")
    assert (code, stderr) == (
        3,
        f"mlnmf: error: {image}: its result folder {tmp_path / 'photos'} would hold or replace "
        "inputs of this batch (choose another --out)\n",
    )
    assert {p.name for p in folder.iterdir()} == {"a.png"}
    assert (tmp_path / "a" / "model.npz").is_file()


def test_result_folders_under_an_input_folder_are_not_inputs(tmp_path: Path) -> None:
    folder = _photos(tmp_path)
    assert decompose(folder, "-o", folder / "results", "--ranks", "4,2")[0] == 0
    out = tmp_path / "out"
    code, _, stderr = decompose(folder, "-o", out, "-R", "--ranks", "4,2")
    assert (code, stderr) == (0, "")
    assert [r["input"] for r in summary_csv(out)] == [str(folder / "a.png")]


def test_unreadable_file_named_on_the_command_line_is_a_failed_input(tmp_path: Path) -> None:
    good = gen.make_gray_png(tmp_path / "good.png", size=(24, 20))
    bad = gen.make_gray_png(tmp_path / "bad.png", size=(24, 20))
    bad.chmod(0)
    out = tmp_path / "out"
    code, _, stderr = run_process(
        "decompose", bad, good, "-o", out, "-q", "--ranks", "4,2", unprivileged=True
    )
    assert (code, stderr) == (3, f"mlnmf: error: {bad}: permission denied\n")
    assert (out / "good" / "model.npz").is_file() and not (out / "bad").exists()
    code, _, stderr = run_process("decompose", bad, "-o", out, "-q", unprivileged=True)
    assert (code, stderr) == (1, f"mlnmf: error: {bad}: permission denied\n")


def test_unreadable_subfolder_under_recursive_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    (folder / "closed").mkdir(parents=True)
    gen.make_gray_png(folder / "a.png", size=(24, 20))
    gen.make_gray_png(folder / "closed" / "b.png", size=(24, 20))
    (folder / "closed").chmod(0)
    out = tmp_path / "out"
    try:
        code, _, stderr = run_process(
            "decompose", folder, "-R", "-o", out, "-q", "--ranks", "4,2", unprivileged=True
        )
    finally:
        (folder / "closed").chmod(0o755)
    assert (code, stderr) == (
        3,
        f"mlnmf: error: {folder / 'closed'}: cannot list this folder (permission denied)\n",
    )
    assert (out / "a" / "model.npz").is_file()


def test_symlinked_subfolder_under_recursive_is_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    gen.make_gray_png(elsewhere / "b.png", size=(24, 20))
    folder = tmp_path / "in"
    folder.mkdir()
    gen.make_gray_png(folder / "a.png", size=(24, 20))
    (folder / "link").symlink_to(elsewhere)
    out = tmp_path / "out"
    code, _, stderr = decompose(folder, "-R", "-o", out, "--ranks", "4,2")
    assert (code, stderr) == (0, "")
    assert (out / "b" / "model.npz").is_file()


def test_symlink_loop_under_recursive_is_reported_not_followed(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    gen.make_gray_png(folder / "sub" / "a.png", size=(24, 20))
    (folder / "sub" / "back").symlink_to(folder)
    out = tmp_path / "out"
    code, _, stderr = decompose(folder, "-R", "-o", out, "--ranks", "4,2")
    assert (code, stderr) == (
        3,
        f"mlnmf: error: {folder / 'sub' / 'back'}: symbolic link to {folder}, "
        "a folder already listed; not followed again\n",
    )
    assert [r["status"] for r in summary_csv(out)] == ["ok", "failed"]


def test_broken_symlink_with_an_image_suffix_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    gen.make_gray_png(folder / "a.png", size=(24, 20))
    (folder / "gone.png").symlink_to(tmp_path / "nowhere.png")
    out = tmp_path / "out"
    code, _, stderr = decompose(folder, "-o", out, "--ranks", "4,2")
    assert (code, stderr) == (3, f"mlnmf: error: {folder / 'gone.png'}: broken symbolic link\n")
    assert (out / "a" / "model.npz").is_file()


_SIGNAL_DURING_SUMMARY = """
signal.signal(signal.SIGINT, signal.{disposition})
real = os.replace
def replace(src, dst, *args, **kwargs):
    if str(dst).endswith("summary.json"):
        os.kill(os.getpid(), signal.{which})
    return real(src, dst, *args, **kwargs)
os.replace = replace
"""


@pytest.mark.parametrize("which", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_stop_signal_while_the_summary_is_written(which: str, tmp_path: Path) -> None:
    """SIGTERM or SIGHUP outside the batch loop (here in the middle of writing
    summary.json) is an interrupt like Ctrl-C: exit 130, one line, no temporary file."""
    image = gen.make_gray_png(tmp_path / "img.png", size=(24, 20))
    out = tmp_path / "out"
    setup = _SIGNAL_DURING_SUMMARY.format(disposition="default_int_handler", which=which)
    code, _, stderr = run_process(
        "decompose", image, "-o", out, "-q", "--ranks", "4,2", setup=setup
    )
    assert (code, stderr) == (130, "mlnmf: error: interrupted\n")
    assert (out / "img" / "model.npz").is_file()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert not (out / "summary.json").exists()


def test_ignored_ctrl_c_stays_ignored(tmp_path: Path) -> None:
    """A background job or nohup ignores SIGINT: the run does not re-enable it."""
    image = gen.make_gray_png(tmp_path / "img.png", size=(24, 20))
    out = tmp_path / "out"
    setup = _SIGNAL_DURING_SUMMARY.format(disposition="SIG_IGN", which="SIGINT")
    code, _, stderr = run_process(
        "decompose", image, "-o", out, "-q", "--ranks", "4,2", setup=setup
    )
    assert (code, stderr) == (0, "")
    assert (out / "summary.json").is_file() and (out / "img" / "model.npz").is_file()


def test_compare_with_result_folders_whose_reports_are_odd(tmp_path: Path) -> None:
    """A saved model's report.json only adds notes: nested past JSON's depth or a named
    pipe, it is ignored (it was a RecursionError, and a hang)."""
    a = gen.make_gray_png(tmp_path / "a.png", size=(24, 20))
    b = gen.make_gray_png(tmp_path / "b.png", size=(24, 20), seed=1)
    out = tmp_path / "out"
    assert decompose(a, b, "-o", out, "--ranks", "4,2")[0] == 0
    (out / "a" / "report.json").write_text("[" * 100_000 + "]" * 100_000)
    (out / "b" / "report.json").unlink()
    _os.mkfifo(out / "b" / "report.json")
    cmp = tmp_path / "cmp"
    code, _, stderr = run_process(
        "compare", out / "a", out / "b", "-c", "ranks=4,2", "-o", cmp, "-q", timeout=120
    )
    assert code == 0 and stderr.startswith("verdict: ") and stderr.count("\n") == 1
    assert (cmp / "compare.json").is_file()


def test_recursive_listing_of_a_tree_deeper_than_the_python_stack(tmp_path: Path) -> None:
    """Listing does not recurse: a tree deeper than the stack allows is listed whole
    (the stack is lowered here so that the tree stays small enough to delete)."""
    from mlnmf_cli import batch

    folder = tmp_path / "in"
    deepest = folder
    for _ in range(300):
        deepest = deepest / "a"
        deepest.mkdir(parents=deepest.parent == folder)
    image = gen.make_gray_png(deepest / "x.png", size=(24, 20))
    depth = len(__import__("inspect").stack())
    limit = _sys.getrecursionlimit()
    _sys.setrecursionlimit(depth + 150)
    try:
        items = batch.expand_inputs([folder], recursive=True)
    finally:
        _sys.setrecursionlimit(limit)
    assert [(item.path, item.name, item.problem) for item in items] == [(image, "x", None)]


def test_control_characters_in_a_name_keep_the_error_on_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "two\nlines\there.png"
    out = tmp_path / "out"
    code, _, stderr = decompose(missing, "-o", out)
    escaped = str(missing).replace("\n", "\\n").replace("\t", "\\t")
    assert (code, stderr) == (1, f"mlnmf: error: {escaped}: no such file or folder\n")
    assert not (out / "two").exists()
