"""The decompose and reconstruct commands, driven through the real Typer app."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ENV, run
from PIL import Image

from mlnmf_cli import engine
from mlnmf_cli.engine.options import DEFAULTS, EngineOptions, option_fields

ROOT = Path(__file__).resolve().parent.parent
CAMERA = ROOT / "sample_images" / "camera.png"


def pixels(path: Path) -> np.ndarray:
    """An image's samples in [0, 1], 8 or 16 bits."""
    with Image.open(path) as im:
        return np.asarray(im, dtype=np.float64) / (65535.0 if im.mode == "I;16" else 255.0)


@pytest.fixture
def colour_png(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:64]
    rgb = np.stack([x / 63, y / 47, (x + y) / 110], axis=-1) * 200 + rng.integers(
        0, 50, (48, 64, 3)
    )
    path = tmp_path / "colour.png"
    Image.fromarray(rgb.astype(np.uint8), "RGB").save(path)
    return path


@pytest.fixture(scope="module")
def camera_result(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out")
    code, _, err = run("decompose", CAMERA, "--ranks", "24,12,6", "--out", out, "--quiet")
    assert code == 0, err
    return out / "camera"


def expected_files(depth: int) -> list[str]:
    depths = range(1, depth + 1)
    return [
        "original.png",
        "reconstruction.png",
        "summary.png",
        "model.npz",
        "report.json",
        *[f"reconstruction_depth{d}.png" for d in depths],
        *[f"{kind}_layer{d}.png" for kind in ("features", "coefficients") for d in depths],
        *[f"features_depth{d}.png" for d in depths],
    ]


EXPECTED_FILES = expected_files(3)


def test_decompose_writes_every_file_and_they_decode(camera_result: Path) -> None:
    assert sorted(p.name for p in camera_result.iterdir()) == sorted(EXPECTED_FILES)
    for name in EXPECTED_FILES:
        if name.endswith(".png"):
            with Image.open(camera_result / name) as im:
                im.load()
                assert im.width > 0 and im.height > 0
    for name in ["original.png", "reconstruction.png", "reconstruction_depth1.png"]:
        with Image.open(camera_result / name) as im:
            assert im.size == (512, 512) and im.mode == "L"


def test_report_errors_match_the_pictures(camera_result: Path) -> None:
    report = json.loads((camera_result / "report.json").read_text())
    original = pixels(camera_result / "original.png")
    assert np.array_equal(original, pixels(CAMERA))
    for row in report["depths"]:
        recon = pixels(camera_result / f"reconstruction_depth{row['depth']}.png")
        err = np.linalg.norm(original - recon) / np.linalg.norm(original)
        # The PNG is the model rounded to 8 bits: the error differs by quantisation only.
        assert err == pytest.approx(row["relative_error"], abs=2e-3)
        assert (
            row["relative_error"] >= report["svd_floor"]["relative_error"] - 1e-9
            or row["depth"] < 3
        )
    deepest = report["depths"][-1]
    assert report["relative_error"] == deepest["relative_error"]
    assert deepest["relative_error"] < 0.2
    assert report["parameters"]["ranks"] == [24, 12, 6]
    assert report["parameters"]["seed"] == 0
    assert set(report["versions"]) >= {"mlnmf", "python", "numpy", "pillow"}
    assert [layer["rank"] for layer in report["layers"]] == [24, 12, 6]


def test_reconstruct_rebuilds_the_reconstruction_within_one_level(
    camera_result: Path, tmp_path: Path
) -> None:
    target = tmp_path / "rebuilt.png"
    code, _, err = run("reconstruct", camera_result, "--out", target, "--original", CAMERA)
    assert code == 0, err
    assert (
        np.max(np.abs(pixels(target) - pixels(camera_result / "reconstruction.png")))
        <= 1 / 255 + 1e-12
    )
    report = json.loads((camera_result / "report.json").read_text())
    assert f"relative error {100 * report['relative_error']:.2f}%" in err


def test_reconstruct_shallower_depth_and_json(camera_result: Path, tmp_path: Path) -> None:
    target = tmp_path / "d1.png"
    code, out, _ = run(
        "reconstruct", camera_result / "model.npz", "--depth", "1", "--out", target, "--json"
    )
    assert code == 0
    assert json.loads(out) == {
        "model": str(camera_result / "model.npz"),
        "depth": 1,
        "output": str(target),
        "bits": 8,
    }
    assert (
        np.max(np.abs(pixels(target) - pixels(camera_result / "reconstruction_depth1.png")))
        <= 1 / 255 + 1e-12
    )


def test_reconstruct_refuses_to_overwrite_and_bad_depth(
    camera_result: Path, tmp_path: Path
) -> None:
    target = tmp_path / "exists.png"
    target.write_bytes(b"keep me")
    code, _, err = run("reconstruct", camera_result, "--out", target)
    assert code == 1
    assert err.strip() == f"mlnmf: error: {target}: already exists (use --force to replace it)"
    assert target.read_bytes() == b"keep me"
    code, _, err = run("reconstruct", camera_result, "--depth", "4", "--out", tmp_path / "x.png")
    assert code == 2
    assert err == (
        f"mlnmf: error: {camera_result / 'model.npz'}: --depth 4 is deeper than the model, "
        "which has 3 layers (try --depth 3)\n"
    )
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    ("suffix", "format"),
    [(".png", "PNG"), (".jpg", "JPEG"), (".JPEG", "JPEG"), (".tif", "TIFF"), (".bmp", "BMP"),
     (".webp", "WEBP")],
)  # fmt: skip
def test_reconstruct_writes_the_format_its_extension_names(
    camera_result: Path, tmp_path: Path, suffix: str, format: str
) -> None:
    target = tmp_path / f"rebuilt{suffix}"
    code, _, err = run("reconstruct", camera_result, "--out", target)
    assert (code, err) == (0, f"wrote {target} (depth 3 of 3)\n")
    with Image.open(target) as im, Image.open(camera_result / "reconstruction.png") as ref:
        assert (im.format, im.size) == (format, ref.size)
        rebuilt = np.asarray(im.convert("L"), dtype=np.float64) / 255
    # Lossless formats hold the reconstruction to the level; JPEG (quality 95) nearly.
    tolerance = 0.08 if format == "JPEG" else 1 / 255 + 1e-12
    assert np.mean(np.abs(rebuilt - pixels(camera_result / "reconstruction.png"))) <= tolerance


def test_reconstruct_refuses_an_extension_it_cannot_write(
    camera_result: Path, tmp_path: Path
) -> None:
    for name, what in (("x.gif", "extension '.gif'"), ("x", "no extension")):
        code, _, err = run("reconstruct", camera_result, "--out", tmp_path / name)
        assert code == 2
        assert err == (
            f"mlnmf: error: {tmp_path / name}: cannot write an image with {what} "
            "(use one of .png, .jpg, .jpeg, .tif, .tiff, .bmp, .webp)\n"
        )
    assert not list(tmp_path.iterdir())


def test_reconstruct_keeps_16_bits_where_the_format_can(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:40, 0:36]
    deep = 30000 + 20000 * np.sin(x / 5) * np.cos(y / 7) + rng.integers(0, 300, (40, 36))
    Image.fromarray(deep.astype(np.uint16)).save(tmp_path / "deep.png")
    out = tmp_path / "o"
    assert run("decompose", tmp_path / "deep.png", "-r", "8,4", "-o", out, "-q")[0] == 0
    for suffix, mode in ((".png", "I;16"), (".tif", "I;16")):
        code, stdout, _ = run("reconstruct", out / "deep", "-o", out / f"r{suffix}", "--json")
        assert code == 0 and json.loads(stdout)["bits"] == 16
        with Image.open(out / f"r{suffix}") as im:
            assert im.mode == mode
            values = np.asarray(im, dtype=np.float64)
        # 16-bit levels: not only multiples of 257 (what an 8-bit image would give)
        assert np.any(values % 257 != 0)
    code, _, err = run("reconstruct", out / "deep", "-o", out / "r.jpg")
    assert code == 0
    assert err.splitlines()[0] == (
        f"note: {out / 'r.jpg'}: 8 bits per sample, the most mlnmf writes in JPEG "
        "(the original had 16)"
    )


def test_reconstruct_rejects_a_file_that_is_not_a_model(tmp_path: Path) -> None:
    bogus = tmp_path / "model.npz"
    bogus.write_text("not a zip")
    code, _, err = run("reconstruct", bogus)
    assert code == 1
    assert err.startswith(f"mlnmf: error: {bogus}: not a valid model file")
    assert len(err.strip().splitlines()) == 1
    code, _, err = run("reconstruct", tmp_path / "missing.npz")
    assert (code, err) == (1, f"mlnmf: error: {tmp_path / 'missing.npz'}: file not found\n")


def test_colour_modes(colour_png: Path, tmp_path: Path) -> None:
    for channels, mode, parts in (("stack", "RGB", 1), ("separate", "RGB", 3), ("gray", "L", 1)):
        out = tmp_path / channels
        code, _, err = run(
            "decompose", colour_png, "--ranks", "8,4", "--channels", channels, "--out", out, "-q"
        )
        assert code == 0, err
        folder = out / "colour"
        for name in ("original.png", "reconstruction.png", "reconstruction_depth1.png"):
            with Image.open(folder / name) as im:
                assert (im.mode, im.size) == (mode, (64, 48))
        report = json.loads((folder / "report.json").read_text())
        assert report["channels"] == channels
        with np.load(folder / "model.npz", allow_pickle=False) as npz:
            assert sum(k.endswith("_W1") for k in npz.files) == parts
            w1 = npz["part0_W1"]
            assert w1.shape == (48, 8)


def test_colour_default_is_stack(colour_png: Path, tmp_path: Path) -> None:
    code, _, _ = run("decompose", colour_png, "--ranks", "8", "--out", tmp_path, "-q")
    assert code == 0
    report = json.loads((tmp_path / "colour" / "report.json").read_text())
    assert report["channels"] == "stack"
    with np.load(tmp_path / "colour" / "model.npz", allow_pickle=False) as npz:
        assert npz["part0_H1"].shape == (8, 3 * 64)


def test_layers_must_agree_with_ranks(tmp_path: Path) -> None:
    code, _, err = run(
        "decompose", CAMERA, "--layers", "2", "--ranks", "64,32,16", "--out", tmp_path
    )
    assert code == 2
    assert err.strip() == (
        "mlnmf: error: --layers 2 does not match --ranks 64,32,16, which has 3 ranks "
        "(give 2 ranks, or leave out --layers) (see 'mlnmf decompose --help')"
    )
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("ranks", "message"),
    [
        ("16,32", "--ranks 16,32 must be non-increasing, each rank at most the one before it (try --ranks 32,16)"),
        ("8,0", "--ranks 8,0 is not a list of positive whole numbers separated by commas, e.g. 64,32,16"),
        ("8,-2", "--ranks 8,-2 is not a list of positive whole numbers separated by commas, e.g. 64,32,16"),
        ("8,x", "--ranks '8,x' is not a list of positive whole numbers separated by commas, e.g. 64,32,16"),
        ("", "--ranks '' is not a list of positive whole numbers separated by commas, e.g. 64,32,16"),
    ],
)  # fmt: skip
def test_bad_ranks_are_usage_errors(tmp_path: Path, ranks: str, message: str) -> None:
    code, _, err = run("decompose", CAMERA, "--ranks", ranks, "--out", tmp_path / "o")
    assert code == 2
    assert err.strip() == f"mlnmf: error: {message} (see 'mlnmf decompose --help')"
    assert not (tmp_path / "o").exists()


def test_rank_larger_than_the_image_fails_that_input(tmp_path: Path) -> None:
    small = tmp_path / "small.png"
    Image.fromarray(np.full((10, 12), 128, np.uint8)).save(small)
    code, _, err = run("decompose", small, "--ranks", "16", "--out", tmp_path / "o", "-q")
    assert code == 1
    assert err.strip() == (
        f"mlnmf: error: {small}: --ranks 16 does not fit the 10x12 image: "
        "every rank must be at most 10 (try --ranks 10)"
    )
    assert not (tmp_path / "o" / "small").exists()


def test_existing_result_needs_force_or_skip(tmp_path: Path) -> None:
    small = tmp_path / "img.png"
    Image.fromarray((np.arange(400).reshape(20, 20) % 256).astype(np.uint8)).save(small)
    out = tmp_path / "o"
    assert run("decompose", small, "-r", "4", "-o", out, "-q")[0] == 0
    report = (out / "img" / "report.json").read_bytes()
    code, _, err = run("decompose", small, "-r", "4", "-o", out, "-q")
    assert code == 1
    assert err.strip() == (
        f"mlnmf: error: {small}: result folder {out / 'img'} already exists "
        "(use --force to replace it or --skip-existing to keep it)"
    )
    assert (out / "img" / "report.json").read_bytes() == report
    code, stdout, _ = run(
        "decompose", small, "-r", "4", "-o", out, "--skip-existing", "-q", "--json"
    )
    assert code == 0 and json.loads(stdout)["skipped"] == 1
    code, _, _ = run("decompose", small, "-r", "3", "-o", out, "--force", "-q")
    assert code == 0
    assert json.loads((out / "img" / "report.json").read_text())["parameters"]["ranks"] == [3]
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_batch_goes_on_past_a_bad_file_and_lists_it(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    img = (np.arange(256).reshape(16, 16)).astype(np.uint8)
    Image.fromarray(img).save(folder / "a" / "same.png")
    Image.fromarray(255 - img).save(folder / "b" / "same.png")
    (folder / "a" / "broken.png").write_text("this is not a png")
    out = tmp_path / "o"
    code, stdout, err = run(
        "decompose", folder, "--recursive", "-r", "4,2", "-o", out, "--json", "-q"
    )
    assert code == 3
    summary = json.loads(stdout)
    assert (summary["succeeded"], summary["failed"]) == (2, 1)
    assert summary["errors"][0]["input"] == str(folder / "a" / "broken.png")
    assert f"mlnmf: error: {folder / 'a' / 'broken.png'}: " in err
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["a__same", "b__same"]
    with open(out / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["status"] for r in rows] == ["failed", "ok", "ok"]
    assert json.loads((out / "summary.json").read_text()) == summary


def test_every_option_reaches_the_engine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, colour_png: Path
) -> None:
    seen: dict = {}
    real = engine.factorize_deep

    def spy(X, ranks, **kwargs):  # type: ignore[no-untyped-def]
        seen.update(dataclasses.asdict(kwargs["options"]))
        seen.update(ranks=tuple(ranks), dtype=X.dtype, shape=X.shape)
        return real(X, ranks, **kwargs)

    monkeypatch.setattr(engine, "factorize_deep", spy)
    code, _, err = run(
        "decompose", colour_png, "--ranks", "6,3", "--method", "semi", "--solver", "mu", "--init", "random",
        "--no-fine-tune", "--fine-tune-iter", "7", "--deep-weight", "5", "--no-normalize", "--no-refit", "--max-iter", "9", "--tol", "0.01",
        "--target-error", "0.5", "--dtype", "float64", "--seed", "42", "--channels", "gray", "-o", tmp_path, "-q",
    )  # fmt: skip
    assert code == 0, err
    assert seen["ranks"] == (6, 3)
    assert seen["dtype"] == np.float64 and seen["shape"] == (48, 64)
    expected = {
        "method": "semi", "solver": "mu", "init": "random", "fine_tune": False, "fine_tune_iter": 7,
        "deep_weight": 5.0, "normalize": False, "refit": False, "max_iter": 9, "tol": 0.01, "target_error": 0.5, "seed": 42,
    }  # fmt: skip
    assert {k: seen[k] for k in expected} == expected
    # Every engine option the command line offers is in this test, set away from its default.
    assert set(expected) == {f.name for f in option_fields(EngineOptions, "cli")}
    assert all(getattr(DEFAULTS, k) != v for k, v in expected.items())


def test_same_seed_same_factors(tmp_path: Path, colour_png: Path) -> None:
    for name in ("a", "b"):
        assert (
            run(
                "decompose",
                colour_png,
                "-r",
                "5,3",
                "--init",
                "random",
                "--seed",
                "3",
                "-o",
                tmp_path / name,
                "-q",
            )[0]
            == 0
        )
    with (
        np.load(tmp_path / "a" / "colour" / "model.npz") as a,
        np.load(tmp_path / "b" / "colour" / "model.npz") as b,
    ):
        for key in a.files:
            if key != "meta":
                assert np.array_equal(a[key], b[key]), key


def test_output_path_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run("decompose", CAMERA, "-o", blocker)
    assert code == 1
    assert err.strip() == f"mlnmf: error: {blocker}: output path exists and is not a directory"


def test_python_dash_m_and_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mlnmf_cli", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("mlnmf ")
    proc = subprocess.run(
        [sys.executable, "-m", "mlnmf_cli", "decompose", "--nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        "mlnmf: error: No such option: --nope (Possible options: --dtype, --force, --no-refit) "
        "(see 'python -m mlnmf_cli decompose --help')\n"
    )


GOOD_IMAGES = [
    "make_gray8_png", "make_gray16_png", "make_gray16_tiff", "make_gray16_transparent_png",
    "make_rgb16_png", "make_int32_tiff", "make_float_tiff", "make_bilevel_png", "make_la_png",
    "make_rgb_png", "make_rgba_png", "make_palette_png", "make_palette_transparent_png",
    "make_cmyk_jpeg", "make_rgb_jpeg", "make_exif_rotated_jpeg", "make_animated_gif", "make_bmp",
    "make_webp_lossless",
]  # fmt: skip


@pytest.mark.parametrize("maker", GOOD_IMAGES)
def test_every_image_kind_gives_complete_consistent_results(maker: str, tmp_path: Path) -> None:
    import imagegen

    suffix = {
        "png": ".png",
        "tiff": ".tif",
        "jpeg": ".jpg",
        "gif": ".gif",
        "bmp": ".bmp",
        "webp": ".webp",
    }
    kind = next(k for k in suffix if k in maker.split("_"))
    made = getattr(imagegen, maker)(tmp_path / f"img{suffix[kind]}")
    out = tmp_path / "out"
    code, _, err = run("decompose", made, "--ranks", "1,1", "-o", out, "-q")
    assert code == 0, err
    folder = out / "img"
    report = json.loads((folder / "report.json").read_text())
    size = (report["image"]["width"], report["image"]["height"])
    mode = "RGB" if report["image"]["color"] else "L"
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected_files(2))
    for name in (
        "original.png",
        "reconstruction.png",
        "reconstruction_depth1.png",
        "reconstruction_depth2.png",
    ):
        with Image.open(folder / name) as im:
            assert (im.mode, im.size) == (mode, size), name
    for name in (
        "features_layer1.png",
        "coefficients_layer2.png",
        "features_depth2.png",
        "summary.png",
    ):
        with Image.open(folder / name) as im:
            im.load()
    original = pixels(folder / "original.png")
    recon = pixels(folder / "reconstruction.png")
    norm = np.linalg.norm(original)
    if norm > 0:
        # Both PNGs are the float images rounded to 8 bits: at most half a level per pixel each.
        slack = np.sqrt(original.size) / 255 / norm
        err = np.linalg.norm(original - recon) / norm
        assert err <= report["relative_error"] + slack
        assert err >= report["relative_error"] - slack - 0.05
    code, _, err = run("reconstruct", folder, "--out", tmp_path / "rebuilt.png")
    assert code == 0, err
    assert np.max(np.abs(pixels(tmp_path / "rebuilt.png") - recon)) <= 1 / 255 + 1e-12


def test_the_seeds_pipeline_is_its_svd_start_stacked(tmp_path: Path) -> None:
    """semi + svd + no iterations, normalisation or fine-tuning: each layer is exactly the
    rank-(r-1) truncated SVD of its input, as the 2017 write-up's appr_seminmf gave."""
    code, _, err = run(
        "decompose", CAMERA, "--ranks", "20,10", "--method", "semi", "--init", "svd",
        "--max-iter", "0", "--no-normalize", "--no-fine-tune", "--dtype", "float64",
        "-o", tmp_path, "-q",
    )  # fmt: skip
    assert code == 0, err
    X = pixels(CAMERA)
    with np.load(tmp_path / "camera" / "model.npz") as npz:
        W1, H1, W2, H2 = npz["part0_W1"], npz["part0_H1"], npz["part0_W2"], npz["part0_H2"]
    U, s, Vt = np.linalg.svd(X)
    assert np.allclose(W1 @ H1, (U[:, :19] * s[:19]) @ Vt[:19], atol=1e-8)
    # H1's singular values are tied (exactly 1), so its rank-9 truncation is not unique
    # (issue 17): W2 H2 is one of them, at the SVD floor.
    s = np.linalg.svd(H1, compute_uv=False)
    assert np.linalg.norm(H1 - W2 @ H2) == pytest.approx(np.sqrt(np.sum(s[9:] ** 2)), rel=1e-9)
    assert np.linalg.matrix_rank(W2 @ H2, tol=1e-9) == 9
    assert np.all(H1 >= 0) and np.all(H2 >= 0) and W1.min() < 0


@pytest.mark.parametrize(
    "args", [["--help"], ["--version"], ["decompose", "--help"], ["compare", "--help"]]
)
def test_help_and_version_do_not_import_numpy_or_rich(args: list[str]) -> None:
    code = (
        "import sys\n"
        "from mlnmf_cli.cli import main\n"
        f"sys.argv = ['mlnmf', *{args!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
        "print(sorted(m for m in ('numpy', 'rich', 'PIL') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **ENV},
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


# --------------------------------------------------------------------------- help and option errors

COMMANDS = ["decompose", "reconstruct", "compare", "random-test"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_metavars_and_plain_words(command: str) -> None:
    code, text, _ = run(command, "--help")
    assert code == 0
    for leak in ("<list", "<int", "<str", "<float", "<path", "<Path", "range>", "{input"):
        assert leak not in text, leak
    assert "seed's" not in text and "decreasing" not in text.replace("non-increasing", "")
    usage = {
        "decompose": "Usage: mlnmf decompose [OPTIONS] INPUT...",
        "reconstruct": "Usage: mlnmf reconstruct [OPTIONS] MODEL",
        "compare": "Usage: mlnmf compare [OPTIONS] INPUT...",
        "random-test": "Usage: mlnmf random-test [OPTIONS]",
    }[command]
    assert text.startswith(usage + "\n")
    metavars = {
        "decompose": ["INPUT...  ", "--max-iter N ", "--tol X ", "--method [nmf|semi]",
                      "--jobs N|auto", "--out FOLDER"],
        "reconstruct": ["MODEL  ", "--depth N ", "--out IMAGE", "--original IMAGE"],
        "compare": ["INPUT...  ", '--config "KEY=VALUE ..."', "--resize HxW",
                    "--measure [subspace|matched]", "--null-draws N", "--max-pixels N"],
        "random-test": ["--count N", "--size HxW", "--control IMAGE", "--seed N"],
    }[command]  # fmt: skip
    for metavar in metavars:
        assert metavar in text, metavar


def test_decompose_help_says_non_increasing() -> None:
    text = run("decompose", "--help")[1]
    assert "-r, --ranks R1,R2,..." in text and "non-increasing" in " ".join(text.split())
    assert "(svd:the2017write-up'sSemi-NMFstart)" in "".join(text.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--channels", "rgb"], "--channels 'rgb' is not one of gray, stack, separate"),
        (["--method", "kl"], "--method 'kl' is not one of nmf, semi"),
        (["--solver", "cd"], "--solver 'cd' is not one of hals, mu"),
        (["--init", "svd", "--ranks", "4,1"], "--ranks 4,1 has a rank below 2, which --init svd cannot start from (try --ranks 4,2)"),
        (["--dtype", "float16"], "--dtype 'float16' is not one of float32, float64"),
        (["--max-iter", "-1"], "--max-iter -1 is not a whole number of at least 0"),
        (["--max-iter", "2.5"], "--max-iter 2.5 is not a whole number of at least 0"),
        (["--fine-tune-iter", "x"], "--fine-tune-iter 'x' is not a whole number of at least 0"),
        (["--tol", "nan"], "--tol nan is not a finite number of at least 0"),
        (["--tol", "-1e-3"], "--tol -1e-3 is not a finite number of at least 0"),
        (["--target-error", "-0.5"], "--target-error -0.5 is not a finite number of at least 0"),
        (["--seed", "-2"], "--seed -2 is not a whole number of at least 0"),
        (["--max-pixels", "0"], "--max-pixels 0 is not a whole number of at least 1"),
        (["--layers", "0"], "--layers 0 is not a whole number of at least 1"),
        (["--layers", "4"], "--layers 4 needs --ranks with 4 ranks (the default --ranks 64,32,16 has 3)"),
        (["--jobs", "0"], "--jobs 0 is not a whole number of at least 1, nor 'auto'"),
        (["--jobs", "many"], "--jobs 'many' is not a whole number of at least 1, nor 'auto'"),
        (["--force", "--skip-existing"], "--force and --skip-existing contradict each other; choose one"),
    ],
)  # fmt: skip
def test_option_errors_name_the_option_the_value_and_what_works(
    tmp_path: Path, args: list[str], message: str
) -> None:
    code, stdout, err = run("decompose", CAMERA, *args, "--out", tmp_path / "o")
    assert (code, stdout) == (2, "")
    assert err == f"mlnmf: error: {message} (see 'mlnmf decompose --help')\n"
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--measure", "cosine"], "--measure 'cosine' is not one of subspace, matched"),
        (["--null-draws", "1"], "--null-draws 1 is not a whole number from 2 to 10000"),
        (["--verdict-depth", "0"], "--verdict-depth 0 is not a whole number of at least 1"),
        (["--resize", "256"], "--resize '256' is not HEIGHTxWIDTH, e.g. 128x128"),
        (["--resize", "0x9"], "--resize 0x9 is not HEIGHTxWIDTH of at least 1x1, e.g. 128x128"),
        (["-c", "ranks=8 tol=-1"], "--config 'ranks=8 tol=-1': tol=-1 is not a finite number of at least 0"),
        (["-c", "ranks=8 solver=cd"], "--config 'ranks=8 solver=cd': solver=cd is not one of hals, mu"),
        (["-c", "ranks=1 init=svd"], "--config 'ranks=1 init=svd': ranks=1 has a rank below 2, which init=svd cannot start from (try ranks=2)"),
        (["-c", "max_pixels=9"], "--config 'max_pixels=9': unknown key 'max_pixels' (allowed: ranks, method, solver, init, fine_tune, fine_tune_iter, deep_weight, normalize, refit, max_iter, tol, target_error, seed, dtype, channels)"),
    ],
)  # fmt: skip
def test_compare_option_errors_in_command_line_words(
    tmp_path: Path, args: list[str], message: str
) -> None:
    code, _, err = run("compare", CAMERA, CAMERA, *args, "--out", tmp_path / "o")
    assert code == 2
    assert err == f"mlnmf: error: {message} (see 'mlnmf compare --help')\n"
    assert not (tmp_path / "o").exists()


def test_random_test_option_errors_in_command_line_words(tmp_path: Path) -> None:
    for args, message in [
        (["--distribution", "poisson"], "--distribution 'poisson' is not one of uniform, normal, binary"),
        (["--repeats", "0"], "--repeats 0 is not a whole number of at least 1"),
        (["--size", "12x"], "--size '12x' is not HEIGHTxWIDTH, e.g. 128x128"),
        (["--like-seed", "-c", "ranks=4"], "--like-seed and --config contradict each other; choose one"),
    ]:  # fmt: skip
        code, _, err = run("random-test", *args, "--out", tmp_path / "o")
        assert code == 2
        assert err == f"mlnmf: error: {message} (see 'mlnmf random-test --help')\n"
    assert not (tmp_path / "o").exists()


def test_what_the_loader_says_about_an_image_is_on_stderr_and_in_the_summary(
    tmp_path: Path,
) -> None:
    data = (np.random.default_rng(0).random((20, 24)) * 4080).astype(np.uint16)
    src = tmp_path / "twelve.png"
    Image.fromarray(data).save(src)
    code, _, err = run("decompose", src, "--ranks", "4,2", "--out", tmp_path / "o")
    assert code == 0
    note = "12-bit data in a 16-bit container: scaled by 4095"
    assert f"mlnmf: note: {src}: {note}\n" in err
    with open(tmp_path / "o" / "summary.csv", newline="") as fh:
        assert next(csv.DictReader(fh))["note"] == note
    code, _, err = run("decompose", src, "--ranks", "4,2", "--out", tmp_path / "q", "-q")
    assert code == 0 and "note" not in err


def test_a_bug_is_one_line_on_stderr_and_a_traceback_only_when_asked(
    monkeypatch: pytest.MonkeyPatch, camera_result: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from mlnmf_cli import pipeline
    from mlnmf_cli.cli import app

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("no such\nkey")

    monkeypatch.setattr(pipeline, "reconstruct", broken)
    args = ["reconstruct", str(camera_result / "model.npz"), "-o", str(tmp_path / "x.png")]
    quiet = {**ENV, "MLNMF_DEBUG": ""}
    result = CliRunner().invoke(app, args, env=quiet, prog_name="mlnmf")
    assert result.exit_code == 1
    assert result.stderr == (
        "mlnmf: error: internal error, please report it: KeyError: 'no such\\nkey' "
        "(set MLNMF_DEBUG=1 for the traceback)\n"
    )
    debug = CliRunner().invoke(app, args, env={**ENV, "MLNMF_DEBUG": "1"}, prog_name="mlnmf")
    assert isinstance(debug.exception, KeyError)
    assert not (tmp_path / "x.png").exists()
