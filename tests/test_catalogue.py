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
from conftest import run, terminal_signals

from mlnmf_cli import storage

SUMMARIES = {"summary.json", "summary.csv", "index.html"}


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
    # The folder's summary describes the results in it: img's earlier result keeps its row.
    assert [r["status"] for r in summary_csv(out)] == ["ok", "ok"]
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


# =========================================================================== issue 11, classes 2 and 10
# (appended by the "images" work: images misrepresented, special files given as images)

import os  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402

from PIL import Image  # noqa: E402


class _FifoWatch:
    """Records whether anyone opens a FIFO for reading, and unblocks such a reader at once.

    A loader that opens the FIFO would wait forever for a writer; this thread
    is that writer (it can only open the FIFO once a reader has), so code that
    opens FIFOs fails the test instead of hanging it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.opened = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no reader
                continue
            self.opened = True
            try:
                os.write(fd, b"written to unblock a reader that should not exist")
            finally:
                os.close(fd)

    def stop(self) -> bool:
        """Stop watching; whether the FIFO was opened for reading."""
        self._stop.set()
        self._thread.join()
        return self.opened


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    path = gen.make_fifo(tmp_path / "pipe.png")
    watch = _FifoWatch(path)
    try:
        yield path
    finally:
        assert not watch.stop(), "the FIFO was opened for reading"


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "sock.png"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    try:
        yield path
    finally:
        server.close()


def _pixels_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def test_fifo_given_as_an_image_is_refused_unopened(fifo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = decompose(fifo, "-o", out, "--ranks", "1")
    assert (code, stdout) == (1, "")
    assert stderr == f"mlnmf: error: {fifo}: is a named pipe (FIFO), not a regular file\n"
    assert_nothing_written(out)
    assert summary(out)["errors"] == [
        {"input": str(fifo), "error": "is a named pipe (FIFO), not a regular file"}
    ]


def test_fifo_in_a_batch_fails_that_input_only(fifo: Path, tmp_path: Path) -> None:
    good = gen.make_gray_png(tmp_path / "good.png", size=(24, 20))
    out = tmp_path / "out"
    code, _, stderr = decompose(fifo, good, "-o", out, "--ranks", "4,2")
    assert code == 3
    assert stderr == f"mlnmf: error: {fifo}: is a named pipe (FIFO), not a regular file\n"
    assert {p.name for p in out.iterdir()} == SUMMARIES | {"good"}
    assert [(r["input"], r["status"], r["error"]) for r in summary_csv(out)] == [
        (str(fifo), "failed", "is a named pipe (FIFO), not a regular file"),
        (str(good), "ok", ""),
    ]


@pytest.mark.parametrize("device", ["/dev/null", "/dev/zero"])
def test_character_device_given_as_an_image(device: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, _, stderr = decompose(device, "-o", out, "--ranks", "1")
    assert (code, stderr) == (
        1,
        f"mlnmf: error: {device}: is a character device, not a regular file\n",
    )
    assert_nothing_written(out)


def test_socket_given_as_an_image(unix_socket: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, _, stderr = decompose(unix_socket, "-o", out, "--ranks", "1")
    assert (code, stderr) == (1, f"mlnmf: error: {unix_socket}: is a socket, not a regular file\n")
    assert_nothing_written(out)


def test_symlink_to_a_fifo_given_as_an_image(fifo: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.png"
    link.symlink_to(fifo)
    out = tmp_path / "out"
    code, _, stderr = decompose(link, "-o", out, "--ranks", "1")
    assert (code, stderr) == (
        1,
        f"mlnmf: error: {link}: is a named pipe (FIFO), not a regular file\n",
    )
    assert_nothing_written(out)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_special_file_as_the_original_of_reconstruct(
    kind: str, good_model: Path, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    original = request.getfixturevalue("fifo") if kind == "fifo" else Path("/dev/zero")
    message = {
        "fifo": "is a named pipe (FIFO), not a regular file",
        "device": "is a character device, not a regular file",
    }[kind]
    target = tmp_path / "rebuilt.png"
    code, stdout, stderr = run("reconstruct", good_model, "-o", target, "--original", original)
    assert (code, stdout, stderr) == (1, "", f"mlnmf: error: {original}: {message}\n")
    assert not target.exists()


# --- images whose values are not 8-bit [0, 255]: kept in their own range, and said so


def _decompose_one(path: Path, tmp_path: Path, ranks: str = "1") -> tuple[dict, np.ndarray]:
    """Decompose ``path``; its report and the pixels of its original.png."""
    out = tmp_path / "out"
    code, _, _ = decompose(path, "-o", out, "--ranks", ranks)
    assert code == 0
    name = path.stem
    assert {p.name for p in out.iterdir()} == SUMMARIES | {name}
    return _report(out, name), _pixels_png(out / name / "original.png")


def _as_8_bit(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.rint((values.astype(np.float64) - lo) / (hi - lo) * 255).astype(np.uint8)


IMAGE_RANGES = [
    # (name, values, dtype, note, value_range)
    (
        "float_0_1000",
        [[0.0, 250.0, 500.0], [750.0, 1000.0, 10.0]],
        np.float32,
        "floating-point values up to 1000: scaled by their maximum",
        (0.0, 1000.0),
    ),
    (
        "float_minus1_1",
        [[-1.0, 0.0, 1.0], [0.5, -0.5, 0.25]],
        np.float32,
        "floating-point values from -1 to 1: mapped linearly to [0, 1]",
        (-1.0, 1.0),
    ),
    (
        "int32_100000",
        [[0, 25000, 50000], [100000, 75000, 1]],
        np.int32,
        "32-bit integer data: scaled by its maximum 100000",
        (0.0, 100000.0),
    ),
    (
        "int16_signed",
        [[-300, 0, 3000], [1500, -150, 30]],
        np.int16,
        "signed 16-bit values from -300 to 3000: mapped linearly to [0, 1]",
        (-300.0, 3000.0),
    ),
    (
        "int8_signed",
        [[-100, 0, 100], [50, -50, 127]],
        np.int8,
        "signed 8-bit values from -100 to 127: mapped linearly to [0, 1]",
        (-100.0, 127.0),
    ),
    (
        "uint16_12bit",
        [[0, 1000, 2000], [3000, 4080, 17]],
        np.uint16,
        "12-bit data in a 16-bit container: scaled by 4095",
        (0.0, 4095.0),
    ),
]


@pytest.mark.parametrize(
    ("name", "values", "dtype", "note", "value_range"),
    IMAGE_RANGES,
    ids=[c[0] for c in IMAGE_RANGES],
)
def test_image_kept_in_its_own_range_and_the_report_says_so(
    name: str,
    values: list,
    dtype: type,
    note: str,
    value_range: tuple[float, float],
    tmp_path: Path,
) -> None:
    data = np.array(values, dtype=dtype)
    path = gen.make_tiff_from_array(tmp_path / f"{name}.tif", data)
    report, original = _decompose_one(path, tmp_path)
    assert report["image"]["notes"] == [note]
    assert report["image"]["value_range"] == list(value_range)
    assert report["image"]["psnr_peak"] == value_range[1] - value_range[0]
    assert report["image"]["scale"] == note
    np.testing.assert_array_equal(original, _as_8_bit(data, *value_range))


def test_12_bit_png_pictures_use_the_data_range(tmp_path: Path) -> None:
    """Max 4080 in a 16-bit PNG: the picture's brightest pixel is 254, not 16 (4080 / 65535)."""
    data = np.linspace(0, 4080, 48).reshape(6, 8).astype(np.uint16)
    path = gen.make_gray16_png(tmp_path / "twelve.png", data)
    report, original = _decompose_one(path, tmp_path, "2,1")
    assert report["image"]["notes"] == ["12-bit data in a 16-bit container: scaled by 4095"]
    assert (report["image"]["bit_depth"], report["image"]["psnr_peak"]) == (16, 4095.0)
    assert original.max() == 254
    np.testing.assert_array_equal(original, _as_8_bit(data, 0.0, 4095.0))
    rebuilt = _pixels_png(tmp_path / "out" / "twelve" / "reconstruction.png")
    assert rebuilt.max() > 200  # the reconstruction is drawn in the same range


def test_12_bit_colour_png_is_not_drawn_black(tmp_path: Path) -> None:
    """Pillow keeps 8 of 16 bits of colour: 12-bit data are left 0 to 15, drawn over 0 to 15."""
    data = np.linspace(0, 4095, 6 * 8 * 3).reshape(6, 8, 3).astype(np.uint16)
    path = gen.make_rgb16_png(tmp_path / "colour12.png", data)
    report, original = _decompose_one(path, tmp_path, "2,1")
    note = "16-bit colour reduced to 8 bits by Pillow: 12-bit data, scaled by 4095 (4 bits kept)"
    assert report["image"]["notes"] == [note]
    assert (report["image"]["color"], report["image"]["psnr_peak"]) == (True, 4095.0)
    np.testing.assert_array_equal(original, np.rint((data >> 8) / 15 * 255).astype(np.uint8))
    assert original.max() == 255


def test_float_with_nan_and_inf_replaced_by_the_ends_of_its_range(tmp_path: Path) -> None:
    data = np.array([[np.nan, 0.0, 2.0], [np.inf, -np.inf, 4.0]], dtype=np.float32)
    path = gen.make_tiff_from_array(tmp_path / "holes.tif", data)
    report, original = _decompose_one(path, tmp_path)
    assert report["image"]["notes"] == [
        "floating-point values up to 4: scaled by their maximum",
        "3 NaN or infinite values replaced (NaN and -inf by the lowest value, +inf by the highest)",
    ]
    np.testing.assert_array_equal(original, [[0, 0, 128], [255, 0, 255]])


def test_lab_tiff_is_colour_not_one_grey_channel(tmp_path: Path) -> None:
    path = gen.make_lab_tiff(tmp_path / "lab.tif")
    report, original = _decompose_one(path, tmp_path)
    assert (report["image"]["mode"], report["image"]["color"]) == ("LAB", True)
    assert report["image"]["notes"] == ["CIELAB converted to sRGB (D50 white point)"]
    np.testing.assert_allclose(
        original.astype(int), [[[255, 0, 0], [255, 255, 255], [0, 0, 0]]], atol=6
    )


FLOAT_REFUSED = [
    ("all_nan", np.full((3, 4), np.nan, np.float32),
     "floating-point image has no finite value (all NaN or infinite)"),
    ("all_inf", np.full((3, 4), -np.inf, np.float32),
     "floating-point image has no finite value (all NaN or infinite)"),
    ("float64", np.ones((3, 4)),
     "TIFF layout not supported by Pillow (1 x 64-bit floating-point, grey)"),
    ("uint64", np.ones((3, 4), np.uint64),
     "TIFF layout not supported by Pillow (1 x 64-bit unsigned integer, grey)"),
    ("float16", np.ones((3, 4), np.float16),
     "TIFF layout not supported by Pillow (1 x 16-bit floating-point, grey)"),
    ("seven_samples", np.ones((3, 4, 7), np.uint8),  # Pillow also logs an error: not shown
     "TIFF layout not supported by Pillow (7 x 8-bit unsigned integer, grey)"),
    ("float_rgb", np.ones((3, 4, 3), np.float32),
     "TIFF layout not supported by Pillow (3 x 32-bit floating-point, grey)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "data", "message"), FLOAT_REFUSED, ids=[c[0] for c in FLOAT_REFUSED]
)
def test_tiff_that_cannot_be_shown_is_refused_by_name(
    name: str, data: np.ndarray, message: str, tmp_path: Path
) -> None:
    path = gen.make_tiff_from_array(tmp_path / f"{name}.tif", data)
    out = tmp_path / "out"
    code, stdout, stderr = decompose(path, "-o", out, "--ranks", "1")
    assert (code, stdout, stderr) == (1, "", f"mlnmf: error: {path}: {message}\n")
    assert_nothing_written(out)
    assert summary(out)["errors"] == [{"input": str(path), "error": message}]


# =========================================================================== safety (issue 11: 3-7)
# Result names, crash-safe --force, the folder's summaries, a shared output folder, file modes.
# Every case runs the real command line and checks the exit code, the exact stderr and what is
# (and is not) on disk afterwards. Helpers of this section start with ``_s``.

from test_batch import RESULT_FILES as _S_RESULT_FILES  # noqa: E402

_S_TOOL_FILES = {"summary.json", "summary.csv", "index.html"}


def _s_png(folder: Path, name: str | bytes, seed: int = 0) -> Path:
    """A small grey PNG under any file name (bytes for names that are not UTF-8)."""
    source = folder / f"source-{seed}.png"
    if not source.exists():
        gen.make_gray_png(source, size=(16, 12), seed=seed)
    path = Path(os.fsdecode(os.path.join(os.fsencode(folder), os.fsencode(name))))
    shutil.copyfile(source, path)
    return path


def _s_run(*args: str | Path) -> tuple[int, str]:
    code, _, stderr = run("decompose", *args, "-q", "--ranks", "4,2")
    return code, stderr


def _s_complete(folder: Path) -> dict:
    """Assert ``folder`` is a whole result; return its report."""
    assert {p.name for p in folder.iterdir()} == _S_RESULT_FILES, folder
    storage.load_model(folder / "model.npz")
    return json.loads((folder / "report.json").read_text())


def _s_rows(out: Path) -> dict[str, dict]:
    """summary.json's rows by folder name (failed rows without a folder by input)."""
    rows = json.loads((out / "summary.json").read_text())["results"]
    return {Path(r["folder"]).name if r.get("folder") else r["input"]: r for r in rows}


def _s_listing(out: Path) -> set[str]:
    return {p.name for p in out.iterdir()}


def _s_name(raw: str) -> str:
    return storage.safe_name(raw)


# --- 3: result names


def test_s_dot_dot_png_with_force_never_touches_the_output_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    other = _s_png(tmp_path, "other.png", seed=1)
    assert _s_run(other, "-o", out) == (0, "")
    (out / "notes.txt").write_text("mine")
    dots = _s_png(tmp_path, "..png")
    assert _s_run(dots, "-o", out, "--force") == (0, "")
    name = _s_name(".")
    assert name.startswith("_-") and len(name) == 10
    assert _s_listing(out) == _S_TOOL_FILES | {"other", "notes.txt", name}
    assert (out / "notes.txt").read_text() == "mine"
    assert _s_complete(out / name)["input"] == str(dots)
    _s_complete(out / "other")


def test_s_dots_and_hidden_names_become_distinct_visible_folders(tmp_path: Path) -> None:
    out = tmp_path / "out"
    inputs = [_s_png(tmp_path, n) for n in ("..png", "...png", ".hidden.png", ". .png")]
    assert _s_run(*inputs, "-o", out) == (0, "")
    names = [_s_name(s) for s in (".", "..", ".hidden", ". ")]
    assert len(set(names)) == 4 and not any(n.startswith(".") for n in names)
    assert names[2].startswith("hidden-")
    assert _s_listing(out) == _S_TOOL_FILES | set(names)
    for path, name in zip(inputs, names, strict=True):
        assert _s_complete(out / name)["input"] == str(path)


def test_s_inputs_named_like_the_tools_own_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    names = ["summary.json", "summary.csv", "index.html", "Summary.JSON", ".mlnmf.lock"]
    inputs = [_s_png(tmp_path, n + ".png") for n in names]
    assert _s_run(*inputs, "-o", out) == (0, "")
    folders = [_s_name(n) for n in names]
    assert all(
        f != n and f.startswith(n.lstrip(".") + "-") for f, n in zip(folders, names, strict=True)
    )
    assert _s_listing(out) == _S_TOOL_FILES | set(folders)
    assert (out / "summary.json").is_file() and (out / "index.html").is_file()
    assert set(_s_rows(out)) == set(folders)


def test_s_the_same_file_twice_and_a_name_like_its_repeat(tmp_path: Path) -> None:
    out = tmp_path / "out"
    a = _s_png(tmp_path, "a.png")
    a2 = _s_png(tmp_path, "a-2.png", seed=3)
    assert _s_run(a, a, a2, "-o", out) == (0, "")
    assert _s_listing(out) == _S_TOOL_FILES | {"a", "a-2", "a-3"}
    assert _s_complete(out / "a-2")["input"] == str(a2)
    assert _s_complete(out / "a-3")["input"] == str(a)
    rows = _s_rows(out)
    assert [rows[n]["input"] for n in ("a", "a-2", "a-3")] == [str(a), str(a2), str(a)]
    # Stable: the same call again finds every folder it made.
    code, stderr = _s_run(a, a, a2, "-o", out, "--skip-existing")
    assert (code, stderr) == (0, "")
    assert _s_listing(out) == _S_TOOL_FILES | {"a", "a-2", "a-3"}


def test_s_a_name_too_long_for_a_staging_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    stem = "x" * 240
    path = _s_png(tmp_path, stem + ".png")
    assert _s_run(path, "-o", out) == (0, "")
    name = _s_name(stem)
    assert len(name.encode()) <= storage.MAX_NAME_BYTES and name.startswith("x" * 150)
    assert _s_listing(out) == _S_TOOL_FILES | {name}
    _s_complete(out / name)
    assert _s_run(path, "-o", out, "--force") == (0, "")
    assert _s_listing(out) == _S_TOOL_FILES | {name}


def test_s_undecodable_bytes_and_newlines_in_a_name(tmp_path: Path) -> None:
    out = tmp_path / "out"
    path = _s_png(tmp_path, b"caf\xe9\nline.png")
    assert _s_run(path, "-o", out) == (0, "")
    name = _s_name(os.fsdecode(b"caf\xe9\nline"))
    assert name.startswith("caf__line-") and name.isprintable()
    assert _s_listing(out) == _S_TOOL_FILES | {name}
    shown = f"{tmp_path}/caf\\xe9\\nline.png"
    assert _s_complete(out / name)["input"] == shown
    assert [r["input"] for r in summary_csv(out)] == [shown]
    assert shown in (out / "index.html").read_text(encoding="utf-8")


def test_s_a_missing_input_with_a_newline_is_named_on_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    missing = tmp_path / "no\nsuch.png"
    code, stderr = _s_run(missing, "-o", out)
    assert (code, stderr) == (
        1,
        f"mlnmf: error: {tmp_path}/no\\nsuch.png: no such file or folder\n",
    )
    assert _s_listing(out) == _S_TOOL_FILES


def test_s_names_like_the_tools_staging_folders(tmp_path: Path) -> None:
    out = tmp_path / "out"
    inputs = [_s_png(tmp_path, n) for n in (".x.abcd1234.partial.png", ".y.abcd1234.old.png")]
    assert _s_run(*inputs, "-o", out) == (0, "")
    names = {_s_name(".x.abcd1234.partial"), _s_name(".y.abcd1234.old")}
    assert all(n.startswith(("x.abcd1234.partial-", "y.abcd1234.old-")) for n in names)
    assert _s_listing(out) == _S_TOOL_FILES | names
    assert _s_run(*inputs, "-o", out, "--skip-existing") == (0, "")  # not taken for leftovers
    assert _s_listing(out) == _S_TOOL_FILES | names


# --- 4: --force replacement and what killed runs leave


def _s_old_copy(out: Path, name: str) -> Path:
    """Move ``out/name`` aside as a killed --force leaves it: ``.name.XXXXXXXX.old/name``."""
    old = out / f".{name}.k1ll3d_x.old"
    old.mkdir()
    os.replace(out / name, old / name)
    return old


def test_s_a_result_left_aside_by_a_killed_force_is_put_back(tmp_path: Path) -> None:
    out = tmp_path / "out"
    img, other = _s_png(tmp_path, "img.png"), _s_png(tmp_path, "other.png", seed=2)
    assert _s_run(img, "-o", out) == (0, "")
    before = (out / "img" / "model.npz").read_bytes()
    _s_old_copy(out, "img")
    assert _s_listing(out) == _S_TOOL_FILES | {".img.k1ll3d_x.old"}
    assert _s_run(other, "-o", out) == (0, "")
    assert _s_listing(out) == _S_TOOL_FILES | {"img", "other"}
    assert (out / "img" / "model.npz").read_bytes() == before
    assert set(_s_rows(out)) == {"img", "other"}


def test_s_an_old_copy_whose_replacement_is_in_place_is_removed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    img = _s_png(tmp_path, "img.png")
    assert _s_run(img, "-o", out) == (0, "")
    old = _s_old_copy(out, "img")
    shutil.copytree(old / "img", out / "img")
    new = (out / "img" / "model.npz").read_bytes()
    assert _s_run(img, "-o", out, "--skip-existing") == (0, "")
    assert _s_listing(out) == _S_TOOL_FILES | {"img"}
    assert (out / "img" / "model.npz").read_bytes() == new


def test_s_staging_folders_and_temporaries_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    img = _s_png(tmp_path, "img.png")
    assert _s_run(img, "-o", out) == (0, "")
    (out / ".img.abcd1234.partial").mkdir()
    (out / ".img.abcd1234.partial" / "original.png").write_bytes(b"half")
    (out / ".gone.abcd_123.trash").mkdir()
    (out / ".summary.json.zz9_8765.tmp").write_text("{")
    (out / ".index.html.a1b2c3d4.tmp").write_text("<")
    assert _s_run(img, "-o", out, "--skip-existing") == (0, "")
    assert _s_listing(out) == _S_TOOL_FILES | {"img"}


def test_s_look_alikes_the_tool_did_not_write_are_kept(tmp_path: Path) -> None:
    out = tmp_path / "out"
    img = _s_png(tmp_path, "img.png")
    out.mkdir()
    mine = {
        ".notes.abcd1234.partial": "notes.txt",
        ".img.abcd1234.old": "diary.txt",
        ".other.abcd1234.trash": "keep.md",
    }
    for folder, file in mine.items():
        (out / folder).mkdir()
        (out / folder / file).write_text("user data")
    (out / ".summary.json.backup").write_text("user data")
    assert _s_run(img, "-o", out) == (0, "")
    assert _s_listing(out) == _S_TOOL_FILES | {"img", ".summary.json.backup", *mine}
    for folder, file in mine.items():
        assert (out / folder / file).read_text() == "user data"


# --- 5: the folder's summaries


def test_s_a_run_refused_with_already_exists_keeps_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "out"
    img = _s_png(tmp_path, "img.png")
    assert _s_run(img, "-o", out) == (0, "")
    code, _, stderr = run("decompose", img, "-o", out, "-q", "--ranks", "3,2")
    assert (code, stderr) == (
        1,
        f"mlnmf: error: {img}: result folder {out / 'img'} already exists "
        "(use --force to replace it or --skip-existing to keep it)\n",
    )
    assert _s_listing(out) == _S_TOOL_FILES | {"img"}
    assert [(r["input"], r["status"], r["ranks"]) for r in summary_csv(out)] == [
        (str(img), "ok", "4,2")
    ]
    assert summary(out)["succeeded"] == 1 and summary(out)["failed"] == 0


def test_s_runs_into_one_folder_add_up_newest_wins(tmp_path: Path) -> None:
    out = tmp_path / "out"
    a, b = _s_png(tmp_path, "a.png"), _s_png(tmp_path, "b.png", seed=4)
    assert _s_run(a, "-o", out) == (0, "")
    assert _s_run(b, "-o", out) == (0, "")
    code, _, stderr = run("decompose", a, "-o", out, "-q", "--ranks", "3,2", "--force")
    assert (code, stderr) == (0, "")
    assert [(r["input"], r["status"], r["ranks"]) for r in summary_csv(out)] == [
        (str(b), "ok", "4,2"),
        (str(a), "ok", "3,2"),
    ]
    assert (summary(out)["succeeded"], summary(out)["failed"]) == (2, 0)
    assert _s_listing(out) == _S_TOOL_FILES | {"a", "b"}
    # A result the user removed leaves the summary with the next run.
    shutil.rmtree(out / "b")
    code, _, stderr = run("decompose", a, "-o", out, "-q", "--ranks", "3,2", "--skip-existing")
    assert (code, stderr) == (0, "")
    assert [r["input"] for r in summary_csv(out)] == [str(a)]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("summary.csv", "id,value\n1,2\n"),
        ("summary.json", '{"mine": true}\n'),
        ("index.html", "<html><title>My photos</title></html>\n"),
    ],
)
def test_s_summary_files_the_tool_did_not_write_are_never_replaced(
    name: str, content: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text(content)
    img = _s_png(tmp_path, "img.png")
    code, stderr = _s_run(img, "-o", out)
    assert (code, stderr) == (
        1,
        f"mlnmf: error: {out / name}: this file was not written by mlnmf; "
        "move it away or choose another --out (nothing was written)\n",
    )
    assert _s_listing(out) == {name}
    assert (out / name).read_text() == content


def test_s_skipped_inputs_carry_their_numbers_and_say_when_settings_differ(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    a, b = _s_png(tmp_path, "a.png"), _s_png(tmp_path, "b.png", seed=4)
    assert _s_run(a, b, "-o", out) == (0, "")
    first = {r["input"]: r for r in summary_csv(out)}
    code, stdout, stderr = run(
        "decompose", a, b, "-o", out, "-q", "--ranks", "3,2", "--skip-existing", "--json"
    )
    assert code == 0
    assert stderr == (
        f"mlnmf: warning: {a}: kept; made with other settings (ranks 4,2 (now 3,2))\n"
        f"mlnmf: warning: {b}: kept; made with other settings (ranks 4,2 (now 3,2))\n"
    )
    rows = json.loads(stdout)["results"]
    assert [(r["status"], r["ranks"]) for r in rows] == [("skipped", "4,2")] * 2
    assert rows[0]["relative_error"] == float(first[str(a)]["relative_error"])
    assert rows[0]["note"] == "kept; made with other settings (ranks 4,2 (now 3,2))"
    # The folder's summary still describes the results as they were made.
    assert [(r["status"], r["ranks"]) for r in summary_csv(out)] == [("ok", "4,2")] * 2
    assert _s_listing(out) == _S_TOOL_FILES | {"a", "b"}
    # Same settings: skipped without a word, numbers still there.
    code, stdout, stderr = run("decompose", a, "-o", out, "-q", "--ranks", "4,2",
                               "--skip-existing", "--json")  # fmt: skip
    assert (code, stderr) == (0, "")
    row = json.loads(stdout)["results"][0]
    assert (row["status"], row["note"], row["psnr"]) == (
        "skipped",
        None,
        float(first[str(a)]["psnr"]),
    )


# --- 6: one output folder, several runs

_S_HOLD_LOCK = """
import sys, time
from pathlib import Path
from mlnmf_cli import storage
with storage.output_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_s_a_second_run_on_a_busy_folder_refuses_naming_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    out = tmp_path / "out"
    out.mkdir()
    img = _s_png(tmp_path, "img.png")
    holder = subprocess.Popen(
        [sys.executable, "-c", _S_HOLD_LOCK, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        monkeypatch.setenv("MLNMF_LOCK_WAIT", "0.2")
        code, stderr = _s_run(img, "-o", out)
        assert (code, stderr) == (
            1,
            f"mlnmf: error: {out}: another mlnmf run (pid {holder.pid}) is writing into this "
            "folder; wait for it to finish or choose another --out\n",
        )
        assert _s_listing(out) == {".mlnmf.lock"}
    finally:
        holder.communicate("")
    assert _s_listing(out) == set()
    assert _s_run(img, "-o", out) == (0, "")
    assert _s_listing(out) == _S_TOOL_FILES | {"img"}


def test_s_two_real_runs_on_one_folder_both_succeed_and_add_up(tmp_path: Path) -> None:
    import sys

    out = tmp_path / "out"
    batches = []
    for k in range(2):
        folder = tmp_path / f"in{k}"
        folder.mkdir()
        batches.append([_s_png(folder, f"img{k}_{i}.png", seed=10 * k + i) for i in range(3)])
    env = {**os.environ, "MLNMF_LOCK_WAIT": "600", "NO_COLOR": "1", "OPENBLAS_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mlnmf_cli", "decompose", "-o", str(out), "-q"]
    options = ["--ranks", "4,2", "--skip-existing"]
    runs = [
        subprocess.Popen(
            [*command, *map(str, files), *options], env=env, stderr=subprocess.PIPE, text=True
        )
        for files in batches
    ]
    results = [(p.wait(timeout=600), p.stderr.read() if p.stderr else "") for p in runs]
    assert results == [(0, ""), (0, "")]
    names = {f"img{k}_{i}" for k in range(2) for i in range(3)}
    assert _s_listing(out) == _S_TOOL_FILES | names
    for name in names:
        _s_complete(out / name)
    assert set(_s_rows(out)) == names
    assert (summary(out)["succeeded"], summary(out)["failed"]) == (6, 0)


# --- 7: file modes follow the umask


@pytest.mark.parametrize(
    ("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)]
)
def test_s_outputs_get_the_modes_of_an_ordinary_open(
    mask: int, file_mode: int, dir_mode: int, tmp_path: Path
) -> None:
    import stat

    out = tmp_path / "out"
    img = _s_png(tmp_path, "img.png")
    previous = os.umask(mask)
    try:
        assert _s_run(img, "-o", out) == (0, "")
        assert _s_run(img, "-o", out, "--force") == (0, "")
    finally:
        os.umask(previous)
    assert _s_listing(out) == _S_TOOL_FILES | {"img"}

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    assert {name: mode(out / name) for name in _S_TOOL_FILES} == dict.fromkeys(
        _S_TOOL_FILES, file_mode
    )
    assert mode(out / "img") == dir_mode
    assert {mode(p) for p in (out / "img").iterdir()} == {file_mode}


@pytest.mark.parametrize("kind", ["folder", "file", "link"])
def test_s_force_never_replaces_a_users_folder_or_file_named_like_a_result(
    kind: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    photos = _s_png(tmp_path, "photos.png")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "holiday.png").write_bytes(b"mine")
    if kind == "folder":
        shutil.copytree(elsewhere, out / "photos")
    elif kind == "file":
        (out / "photos").write_bytes(b"mine")
    else:
        (out / "photos").symlink_to(elsewhere)
    code, stderr = _s_run(photos, "-o", out, "--force")
    assert (code, stderr) == (
        1,
        f"mlnmf: error: {photos}: {out / 'photos'} exists and is not an mlnmf result folder; "
        "--force replaces only those (move it away or choose another --out)\n",
    )
    assert _s_listing(out) == _S_TOOL_FILES | {"photos"}
    assert (elsewhere / "holiday.png").read_bytes() == b"mine"
    if kind == "folder":
        assert (out / "photos" / "holiday.png").read_bytes() == b"mine"
    assert (out / "photos").is_symlink() == (kind == "link")
    assert [(r["input"], r["status"]) for r in summary_csv(out)] == [(str(photos), "failed")]


def test_s_a_lock_file_left_by_a_killed_run_is_taken_over_and_removed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / ".mlnmf.lock").write_text("4194303\n")  # a run killed with -9: nobody holds it
    img = _s_png(tmp_path, "img.png")
    assert _s_run(img, "-o", out) == (0, "")
    assert _s_listing(out) == _S_TOOL_FILES | {"img"}
    _s_complete(out / "img")


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
        [*command, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env,
        preexec_fn=terminal_signals,
    )  # fmt: skip
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
        *[
            (
                lambda t, v=v: t.replace('"bit_depth": 8', f'"bit_depth": {v}'),
                "model metadata lacks a valid 'bit_depth' field",
            )
            for v in ('"16"', "99", "0", "[8]", "true", "8.5")
        ],
    ],
    ids=["nan", "infinity", "minus-infinity", "overflow", "nested", "nested-field", "float-depth"]
    + [f"bit-depth-{v}" for v in ("string", "99", "0", "list", "bool", "float")],
)
def test_model_metadata_that_json_cannot_hold(
    edit: Callable[[str], str], message: str, good_model: Path, tmp_path: Path
) -> None:
    text = _meta_text(good_model)
    assert '"bit_depth": 8' in text
    model = _with_meta(good_model, tmp_path, edit(text))
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
        "--size 100000x100000 means 10000000000 pixels per image",
    ),
    (
        "random-test",
        ["--size", "64x64", "--max-pixels", "1000"],
        "--size 64x64 means 4096 pixels per image",
    ),
    # random-test holds every image it draws: --count times --size shares the limit.
    (
        "random-test",
        ["--count", "10000"],
        "--count 10000: 10000 images of 128x128 mean 163840000 pixels",
    ),
    (
        "compare",
        ["--resize", "100000x100000"],
        "--resize 100000x100000 means 10000000000 pixels per image",
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
        f"mlnmf: error: {message}, more than the limit of {limit} "
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
    summary.json) is an interrupt like Ctrl-C: exit 130, one line, no temporary file;
    the summary files, held together, are finished first and describe the result."""
    image = gen.make_gray_png(tmp_path / "img.png", size=(24, 20))
    out = tmp_path / "out"
    setup = _SIGNAL_DURING_SUMMARY.format(disposition="default_int_handler", which=which)
    code, _, stderr = run_process(
        "decompose", image, "-o", out, "-q", "--ranks", "4,2", setup=setup
    )
    assert (code, stderr) == (130, "mlnmf: error: interrupted\n")
    assert (out / "img" / "model.npz").is_file()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    summary = json.loads((out / "summary.json").read_text())
    assert [r["input"] for r in summary["results"]] == [str(image)]
    assert (out / "summary.csv").is_file() and (out / "index.html").is_file()


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


# --------------------------------------------------------------------------- qa
# Found by trying the tool as a newcomer and as an adversary would (the qa pass).


@pytest.mark.parametrize("command", ["compare", "random-test"])
@pytest.mark.parametrize("draws", ["10001", "99999999999999999999999"])
def test_null_draws_beyond_the_bound_are_refused_before_anything_is_written(
    command: str, draws: str, tmp_path: Path
) -> None:
    # Was a traceback (numpy: "Maximum allowed dimension exceeded") after
    # random-test had written its images, which then blocked the rerun.
    inputs: list[str | Path] = []
    if command == "compare":
        inputs = [gen.make_gray_png(tmp_path / f"{n}.png", size=(8, 8)) for n in "ab"]
    else:
        inputs = ["--count", "2", "--size", "8x8"]
    out = tmp_path / "out"
    code, stdout, stderr = run(command, *inputs, "-c", "ranks=4", "--null-draws", draws, "-o", out)
    assert (code, stdout) == (2, "")
    assert stderr == (
        f"mlnmf: error: --null-draws {draws} is not a whole number from 2 to 10000 "
        f"(see 'mlnmf {command} --help')\n"
    )
    assert not out.exists()


def test_random_test_repeats_share_the_pixel_limit(tmp_path: Path) -> None:
    # Every repeat writes its own images: 2000 repeats of three 128x128 images were
    # written one by one, and a huge --repeats hung building the list of names.
    out = tmp_path / "out"
    code, stdout, stderr = run("random-test", "--repeats", "2000", "-o", out)
    assert (code, stdout) == (2, "")
    assert stderr == (
        "mlnmf: error: --repeats 2000: 6000 images of 128x128 mean 98304000 pixels, more "
        "than the limit of 89478485 (raise it with --max-pixels) "
        "(see 'mlnmf random-test --help')\n"
    )
    assert not out.exists()
    huge = "9" * 23
    code, _, stderr = run("random-test", "--repeats", huge, "--size", "8x8", "-o", out)
    assert code == 2
    assert stderr.startswith(f"mlnmf: error: --repeats {huge}: ") and stderr.count("\n") == 1
    assert not out.exists()


def test_random_test_repeats_within_the_limit_still_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ("--count", "2", "--size", "8x8", "-c", "ranks=2", "--repeats", "2", "--null-draws", "2")
    code, _, stderr = run("random-test", *args, "-q", "-o", out)
    assert code == 0, stderr
    images = {p.name for p in out.glob("random-*.png")}
    assert images == {f"random-r0{r}-{i}.png" for r in (1, 2) for i in (1, 2)}


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ("ranks=4 ranks=2", "ranks"),
        ("ranks=4 ranks=4", "ranks"),
        ("fine-tune=off fine_tune=on", "fine_tune"),
    ],
)
def test_config_key_given_twice_is_refused(spec: str, key: str, tmp_path: Path) -> None:
    # The last value used to win without a word, and the label showed both.
    images = [gen.make_gray_png(tmp_path / f"{n}.png", size=(8, 8)) for n in "ab"]
    out = tmp_path / "out"
    code, stdout, stderr = run("compare", *images, "-c", spec, "-o", out)
    assert (code, stdout) == (2, "")
    assert stderr == (
        f"mlnmf: error: --config '{spec}': {key} is given twice (keep one) "
        "(see 'mlnmf compare --help')\n"
    )
    assert not out.exists()


def test_ctrl_c_at_the_first_import_after_the_launcher_is_one_line(tmp_path: Path) -> None:
    # Ctrl-C 20 ms after start landed in startup's own imports (typing, threading),
    # made before its handler was installed: a traceback and exit 1.
    hook = """
    import importlib.abc
    EARLY = {"mlnmf_cli", "mlnmf_cli.cli", "mlnmf_cli.cli.startup", "__future__"}
    class Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name not in EARLY:
                sys.meta_path.remove(self)
                os.kill(os.getpid(), signal.SIGINT)
    sys.meta_path.insert(0, Hook())
    """
    code, stdout, stderr = run_process("decompose", tmp_path, "-o", tmp_path / "out", setup=hook)
    assert (code, stdout, stderr) == (130, "", "mlnmf: error: interrupted\n")
    assert _tree(tmp_path) == set()


@pytest.mark.parametrize("fault", [KeyboardInterrupt, RuntimeError])
def test_random_test_stopped_midway_keeps_none_of_its_files(
    fault: type[BaseException], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Its random images stayed after Ctrl-C (or a crash) and blocked the rerun:
    # "out already holds random-r01-1.png, ... (use --force to replace them)".
    from mlnmf_cli.experiments import random_images

    def stopped(*args: object, **kwargs: object) -> None:
        raise fault("stopped")

    monkeypatch.setattr(random_images, "compare", stopped)
    out = tmp_path / "out"
    mine = out / "mine.txt"
    out.mkdir()
    mine.write_text("keep me")
    args = ("--count", "2", "--size", "8x8", "-c", "ranks=2", "--repeats", "2", "-o", out, "-q")
    if fault is KeyboardInterrupt:
        code, _, stderr = run("random-test", *args)
        assert (code, stderr) == (130, "mlnmf: error: interrupted\n")
    else:
        with pytest.raises(AssertionError, match="unexpected exception"):
            run("random-test", *args)
    assert _tree(out) == {"mine.txt"}
    monkeypatch.undo()
    code, _, stderr = run("random-test", *args)
    assert code == 0 and stderr.startswith("verdict: "), stderr
    assert {"mine.txt", "random-r01-1.png", "random-test.json"} <= _tree(out)


def test_control_characters_in_names_are_escaped_by_every_command(
    good_model: Path, tmp_path: Path
) -> None:
    # Outside decompose a tab or newline in a name became a space ("t ab.png": a file
    # that does not exist), and reconstruct's result line was split in two.
    tabbed = tmp_path / "t\tab.png"
    tabbed.write_text("not an image")
    missing = tmp_path / "no\npe"
    image = gen.make_gray_png(tmp_path / "a.png", size=(8, 8))
    esc = {"\t": "\\t", "\n": "\\n"}

    def shown(path: Path) -> str:
        return str(path).translate(str.maketrans(esc))

    cases: list[tuple[tuple[str | Path, ...], str]] = [
        (("reconstruct", missing), f"{shown(missing)}: file not found"),
        (("reconstruct", tabbed), f"{shown(tabbed)}: not a valid model file (not an .npz archive)"),
        (("compare", tabbed, image, "-q"), f"{shown(tabbed)}: not an image Pillow can read"),
        (("compare", image, missing, "-q"), f"{shown(missing)}: no such file or folder"),
        (
            ("random-test", "--control", tabbed, "--size", "8x8", "-c", "ranks=2", "-q"),
            f"{shown(tabbed)}: not an image Pillow can read",
        ),
    ]
    out = tmp_path / "out"
    for args, message in cases:
        code, stdout, stderr = run(*args, "-o", out) if args[0] != "reconstruct" else run(*args)
        assert (code, stdout, stderr) == (1, "", f"mlnmf: error: {message}\n"), args
        assert not out.exists()
    rebuilt = tmp_path / "re\nbuilt.png"
    code, _, stderr = run("reconstruct", good_model, "--out", rebuilt, "--original", tabbed)
    assert (code, stderr) == (1, f"mlnmf: error: {shown(tabbed)}: not an image Pillow can read\n")
    assert not rebuilt.exists()
    code, _, stderr = run("reconstruct", good_model, "--out", rebuilt)
    assert code == 0 and stderr.count("\n") == 1
    assert stderr.startswith(f"wrote {shown(rebuilt)} (depth ")
    assert rebuilt.is_file()


def test_compare_refuses_the_same_image_twice(tmp_path: Path) -> None:
    # It was compared with itself: "features and coefficients are about equally alike
    # (1.00 vs 1.00 above chance) and both beat their null baselines", exit 0.
    image = gen.make_gray_png(tmp_path / "a.png", size=(8, 8))
    link = tmp_path / "link.png"
    link.symlink_to(image)
    out = tmp_path / "out"
    tail = (
        ": compare needs different inputs, an image compared with itself is alike by construction"
    )
    for inputs, message in [
        ((image, image), f"{image} is given twice"),
        ((link, image), f"{link} is given twice (as {link} and {image})"),
    ]:
        code, stdout, stderr = run("compare", *inputs, "-c", "ranks=2", "-o", out, "-q")
        assert (code, stdout, stderr) == (2, "", f"mlnmf: error: {message}{tail}\n")
        assert not out.exists()
    copy = tmp_path / "copy.png"
    shutil.copy(image, copy)  # a copy is another input: allowed
    code, _, stderr = run("compare", image, copy, "-c", "ranks=2", "-o", out, "-q")
    assert code == 0 and stderr.startswith("verdict: "), stderr


_SECOND_SIGNAL_AT_EXIT = """
import atexit, time
import mlnmf_cli.batch.run as batch_run
def process_item(*args, **kwargs):
    atexit.register(os.kill, os.getpid(), signal.{second})  # as the process leaves
    os.kill(os.getpid(), signal.{first})
    time.sleep(30)
    raise AssertionError("not interrupted")
batch_run.process_item = process_item
"""


@pytest.mark.parametrize(
    ("first", "second"),
    [("SIGINT", "SIGINT"), ("SIGTERM", "SIGTERM"), ("SIGINT", "SIGTERM"), ("SIGTERM", "SIGINT")],
)
def test_a_second_stop_signal_while_stopping_changes_nothing(
    first: str, second: str, tmp_path: Path
) -> None:
    # Ctrl-C pressed twice: the second one, once the first was being handled, gave a
    # traceback (or, once the line was out, death by the signal: exit -2 or -15).
    image = gen.make_gray_png(tmp_path / "img.png", size=(24, 20))
    out = tmp_path / "out"
    setup = _SECOND_SIGNAL_AT_EXIT.format(first=first, second=second)
    code, stdout, stderr = run_process("decompose", image, "-o", out, "-q", setup=setup)
    assert (code, stdout) == (130, "")
    assert stderr == (
        f"mlnmf: error: interrupted after 0 of 1 input(s); finished results are in {out}\n"
    )
    assert _tree(out) == SUMMARIES


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (("decompose", "IMG", "-o", ""), "--out"),
        (("decompose", ""), "INPUT"),
        (("reconstruct", ""), "MODEL"),
        (("reconstruct", "MODEL", "--out", ""), "--out"),
        (("reconstruct", "MODEL", "--original", ""), "--original"),
        (("compare", "", "IMG"), "INPUT"),
        (("compare", "IMG", "IMG2", "-o", ""), "--out"),
        (("random-test", "-o", ""), "--out"),
        (("random-test", "--control", ""), "--control"),
    ],
)
def test_an_empty_path_is_refused_not_read_as_the_current_folder(
    args: tuple[str, ...],
    name: str,
    good_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # '' (an unset shell variable: -o "$OUT") was the current folder: decompose "" took
    # every image in it, and -o "" wrote results and summaries into it.
    work = tmp_path / "work"
    work.mkdir()
    gen.make_gray_png(work / "img.png", size=(8, 8))
    gen.make_gray_png(work / "img2.png", size=(8, 8), seed=1)
    monkeypatch.chdir(work)
    given = {"IMG": "img.png", "IMG2": "img2.png", "MODEL": str(good_model)}
    before = _tree(work)
    command = args[0]
    quiet = () if command == "reconstruct" else ("-q",)
    code, stdout, stderr = run(*(given.get(a, a) for a in args), *quiet)
    assert (code, stdout) == (2, "")
    assert stderr == (
        f"mlnmf: error: {name} '' is an empty path; give a name, or . for the current folder "
        f"(see 'mlnmf {command} --help')\n"
    )
    assert _tree(work) == before


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("", "missing port number in address ''"),
        ("foo", "missing port number in address 'foo'"),
        ("tcp://host", "missing port number in address 'host'"),
        ("abc:def", "invalid literal for int() with base 10: 'def'"),
        ("inproc://x", "unknown or local-only scheme 'inproc'"),
    ],
)
def test_a_malformed_scheduler_address_is_refused_at_once(
    address: str, why: str, tmp_path: Path
) -> None:
    # It waited out the 8 s connection timeout, then Dask's half-made client hung
    # another 16 s at exit and printed a traceback.
    pytest.importorskip("distributed")
    image = gen.make_gray_png(tmp_path / "img.png", size=(8, 8))
    out = tmp_path / "out"
    code, stdout, stderr = run_process(
        "decompose", image, "-o", out, "-q", "--ranks", "2", "--scheduler", address, timeout=60
    )
    assert (code, stdout) == (2, "")
    assert stderr == (
        f"mlnmf: error: --scheduler {address!r} is not a scheduler address ({why}); "
        "give HOST:PORT, e.g. tcp://127.0.0.1:8786\n"
    )
    assert not out.exists()
