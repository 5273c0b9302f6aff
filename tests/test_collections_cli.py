"""mlnmf learn and mlnmf encode, driven through the real Typer app."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run
from PIL import Image

from mlnmf_cli import storage
from mlnmf_cli.collections import _shared

LEARN_FILES = {
    "model.npz", "report.json", "codes.csv", "summary.png", "reconstructions.png", "index.html",
    "features_depth1.png", "features_depth2.png",
}  # fmt: skip


def parts_set(folder: Path, count: int = 12, colour: bool = False, seed: int = 0) -> Path:
    """Images mixing 4 non-negative parts: a collection with a rank-4 answer."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (10, 12, 3) if colour else (10, 12)
    parts = rng.random((4, *shape)) * (rng.random((4, *shape)) > 0.6)
    for i in range(count):
        img = np.tensordot(rng.random(4), parts, axes=1)
        img = np.rint(255 * img / img.max()).astype(np.uint8)
        Image.fromarray(img, "RGB" if colour else "L").save(folder / f"p{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def grey_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return parts_set(tmp_path_factory.mktemp("grey") / "set")


@pytest.fixture(scope="module")
def learned(grey_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("learn") / "model"
    code, stdout, err = run("learn", grey_folder, "--ranks", "4,2", "--out", out, "--json")
    assert code == 0, err
    return out, stdout


def no_partials(folder: Path) -> bool:
    return not any(p.name.endswith((".partial", ".tmp", ".old")) for p in folder.iterdir())


# --------------------------------------------------------------------------- learn


def test_learn_writes_model_pictures_codes_and_report(
    learned: tuple[Path, str], grey_folder: Path
) -> None:
    out, stdout = learned
    assert {p.name for p in out.iterdir()} == LEARN_FILES
    summary = json.loads(stdout)
    assert [d["depth"] for d in summary["depths"]] == [1, 2]
    assert summary["columns"] == 12 and summary["failed"] == 0
    report = json.loads((out / "report.json").read_text())
    assert report["kind"] == "collection" and report["image_shape"] == [10, 12]
    assert report["seed"] == 0 and report["parameters"]["ranks"] == [4, 2]
    for row in report["depths"]:
        assert row["relative_error"] >= row["svd_floor"] - 1e-9
        assert {"greedy_relative_error", "sparsity_atoms", "sparsity_codes", "psnr"} <= set(row)
    assert report["depths"][0]["greedy_relative_error"] < 0.02  # a rank-4 answer exists
    assert set(report["seconds"]) >= {"load", "factorize", "greedy", "fine_tune", "write"}
    with np.load(out / "model.npz", allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
        assert npz["W1"].shape == (120, 4) and npz["H2"].shape == (2, 12)
    names = sorted(str(p) for p in grey_folder.iterdir())
    assert meta["columns"] == names and meta["kind"] == "collection"
    with open(out / "codes.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["input"] for r in rows] == names and "code_2" in rows[0] and "code_3" not in rows[0]
    with Image.open(out / "features_depth1.png") as im:
        assert im.width >= 2 * 48  # a 2x2 grid of 10x12 atoms, each enlarged


def test_existing_output_needs_force_or_skip_existing(
    learned: tuple[Path, str], grey_folder: Path
) -> None:
    out, _ = learned
    before = (out / "model.npz").read_bytes()
    code, _, err = run("learn", grey_folder, "--ranks", "4,2", "--out", out)
    assert code == 1
    assert (
        err.strip()
        == f"mlnmf: error: result folder {out} already exists (use --force to replace it or --skip-existing to keep it)"
    )
    code, _, _ = run("learn", grey_folder, "--ranks", "4,2", "--out", out, "--skip-existing", "-q")
    assert code == 0 and (out / "model.npz").read_bytes() == before
    code, _, _ = run("learn", grey_folder, "--ranks", "4,1", "--out", out, "--force", "-q")
    assert code == 0 and "features_depth2.png" in {p.name for p in out.iterdir()}
    with np.load(out / "model.npz") as npz:
        assert npz["W2"].shape == (4, 1)
    assert no_partials(out.parent)
    code, _, err = run("learn", grey_folder, "--out", out, "--force", "--skip-existing")
    assert code == 2 and "contradict" in err


def test_images_of_different_sizes_need_size(tmp_path: Path) -> None:
    folder = parts_set(tmp_path / "set", count=3)
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(folder / "zz.png")
    code, _, err = run("learn", folder, "--ranks", "2", "--out", tmp_path / "m")
    assert code == 1 and err.count("\n") == 1
    assert "images differ in size" in err and "zz.png is 20x24" in err and "--size HxW" in err
    assert not (tmp_path / "m").exists()
    code, _, err = run(
        "learn", folder, "--ranks", "2", "--size", "10x12", "--out", tmp_path / "m", "-q"
    )
    assert code == 0, err
    report = json.loads((tmp_path / "m" / "report.json").read_text())
    assert report["resize"] == [10, 12] and any("resized from 20x24" in n for n in report["notes"])


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--ranks", "9"], 2, "asks for 9 components but the collection has only 3 images"),
        (
            ["--ranks", "2", "--channels", "separate"],
            2,
            "--channels 'separate' is not one of gray, stack",
        ),
        (["--ranks", "2", "--stride", "2"], 2, "--stride needs --patches"),
        (["--ranks", "2", "--size", "ten"], 2, "--size 'ten' is not HEIGHTxWIDTH"),
        (["--ranks", "2,3"], 2, "non-increasing"),
    ],
)
def test_bad_input_is_one_line_and_its_exit_code(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    folder = parts_set(tmp_path / "set", count=3)
    got, _, err = run("learn", folder, *args, "--out", tmp_path / "m")
    assert got == code and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "m").exists()


def test_one_image_is_refused_but_patches_of_it_are_a_collection(tmp_path: Path) -> None:
    one = tmp_path / "one.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 24), dtype=np.uint8)).save(one)
    code, _, err = run("learn", one, "--ranks", "2", "--out", tmp_path / "m")
    assert code == 1 and "a collection needs at least 2 images, got 1" in err
    code, _, err = run(
        "learn",
        one,
        "--ranks",
        "6,3",
        "--patches",
        "6x6",
        "--stride",
        "3",
        "--out",
        tmp_path / "m",
        "-q",
    )
    assert code == 0, err
    report = json.loads((tmp_path / "m" / "report.json").read_text())
    assert report["columns"] == 49 and report["patches"] == {"size": [6, 6], "stride": [3, 3]}
    # encode rebuilds a whole image of another size from its patches.
    other = tmp_path / "other.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (20, 30), dtype=np.uint8)).save(other)
    code, stdout, err = run(
        "encode", tmp_path / "m", other, "--out", tmp_path / "e", "--json", "-q"
    )
    assert code == 0, err
    result = json.loads(stdout)["results"][0]
    assert result["status"] == "ok" and result["columns"] == 6 * 9
    with Image.open(tmp_path / "e" / "reconstructions" / "other.png") as im:
        assert im.size == (30, 20)


def test_an_undecodable_image_is_listed_and_the_model_says_which_columns_it_holds(
    tmp_path: Path,
) -> None:
    folder = parts_set(tmp_path / "set", count=5)
    (folder / "p02.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    code, stdout, err = run(
        "learn", folder, "--ranks", "3", "--out", tmp_path / "m", "--json", "-q"
    )
    assert code == 3
    assert err.strip().startswith(f"mlnmf: error: {folder / 'p02.png'}: ")
    summary = json.loads(stdout)
    assert summary["failed"] == 1 and summary["errors"][0]["input"] == str(folder / "p02.png")
    with np.load(tmp_path / "m" / "model.npz") as npz:
        meta = json.loads(str(npz["meta"]))
        assert npz["H1"].shape == (3, 4)
    assert [Path(c).name for c in meta["columns"]] == ["p00.png", "p01.png", "p03.png", "p04.png"]


def test_interrupted_learn_writes_nothing(
    tmp_path: Path, grey_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_shared, "factorize_deep", interrupted)
    code, _, err = run("learn", grey_folder, "--ranks", "4", "--out", tmp_path / "m")
    assert code == 130 and "mlnmf: error: interrupted" in err
    assert list(tmp_path.iterdir()) == []


def test_interrupted_while_writing_leaves_no_half_written_folder(
    tmp_path: Path, grey_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = storage.save_image

    def save_then_stop(path: Path, image: object) -> None:
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real(path, image)

    monkeypatch.setattr(storage, "save_image", save_then_stop)
    code, _, _ = run("learn", grey_folder, "--ranks", "4", "--out", tmp_path / "m")
    assert code == 130 and len(calls) == 3
    assert list(tmp_path.iterdir()) == []


def test_colour_collection_learns_colour_atoms(tmp_path: Path) -> None:
    folder = parts_set(tmp_path / "set", count=8, colour=True)
    code, _, err = run("learn", folder, "--ranks", "4", "--out", tmp_path / "m", "-q")
    assert code == 0, err
    report = json.loads((tmp_path / "m" / "report.json").read_text())
    assert report["channels"] == "stack" and report["image_shape"] == [10, 12, 3]
    grey = tmp_path / "grey.png"
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(grey)
    code, stdout, err = run(
        "encode", tmp_path / "m", grey, folder / "p00.png", "--out", tmp_path / "e", "--json", "-q"
    )
    assert code == 3
    assert f"mlnmf: error: {grey}: image is grey but the model was learned on colour images" in err
    results = json.loads(stdout)["results"]
    assert [r["status"] for r in results] == ["failed", "ok"]


# --------------------------------------------------------------------------- encode


def test_encode_new_images_with_the_dictionary_fixed(
    learned: tuple[Path, str], tmp_path: Path
) -> None:
    model, _ = learned
    new = parts_set(tmp_path / "new", count=12, seed=0)  # same parts, same mixtures
    code, stdout, err = run(
        "encode", model, new, "--depth", "1", "--out", tmp_path / "e", "--json", "-q"
    )
    assert code == 0, err
    envelope = json.loads(stdout)
    assert envelope["depth"] == 1 and envelope["rank"] == 4 and envelope["succeeded"] == 12
    assert all(r["relative_error"] < 0.05 for r in envelope["results"])
    assert {p.name for p in (tmp_path / "e").iterdir()} == {
        "codes.csv", "codes.npz", "reconstructions", "report.json", "summary.png", "index.html",
    }  # fmt: skip
    with np.load(tmp_path / "e" / "codes.npz") as npz:
        assert npz["H"].shape == (4, 12) and (npz["H"] >= 0).all()
        assert [Path(str(c)).name for c in npz["columns"]] == [f"p{i:02d}.png" for i in range(12)]
    assert len(list((tmp_path / "e" / "reconstructions").iterdir())) == 12
    code, _, err = run("encode", model, new, "--depth", "3", "--out", tmp_path / "e2")
    assert code == 2 and "the model has 2 layer(s), got --depth 3" in err


def test_encode_refuses_a_decompose_model_and_reconstruct_a_collection_model(
    learned: tuple[Path, str], grey_folder: Path, tmp_path: Path
) -> None:
    image = grey_folder / "p00.png"
    code, _, err = run("decompose", image, "--ranks", "3", "--out", tmp_path / "d", "-q")
    assert code == 0, err
    code, _, err = run("encode", tmp_path / "d" / "p00", image, "--out", tmp_path / "e")
    assert code == 1 and err.count("\n") == 1
    assert "is a model of one image from 'mlnmf decompose', not a collection model" in err
    model, _ = learned
    code, _, err = run("reconstruct", model)
    assert code == 1 and err.count("\n") == 1
    assert "this is a collection model from 'mlnmf learn'" in err and "mlnmf encode" in err
    assert not (tmp_path / "e").exists()


def test_encode_with_no_usable_input_writes_nothing(
    learned: tuple[Path, str], tmp_path: Path
) -> None:
    model, _ = learned
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(big)
    code, _, err = run("encode", model, big, tmp_path / "missing.png", "--out", tmp_path / "e")
    assert code == 1
    assert "image is 30x30 but the model's images are 10x12" in err
    assert "missing.png: no such file or folder" in err
    assert "no input could be encoded; nothing was written" in err
    assert not (tmp_path / "e").exists()


def test_colour_and_grey_mixed_is_a_usage_error_until_channels_chosen(tmp_path: Path) -> None:
    folder = parts_set(tmp_path / "set", count=3)
    Image.fromarray(np.full((10, 12, 3), 100, np.uint8), "RGB").save(folder / "rgb.png")
    code, _, err = run("learn", folder, "--ranks", "2", "--out", tmp_path / "m")
    assert code == 2 and "mixes colour and grey images: choose --channels gray" in err
    code, _, err = run(
        "learn", folder, "--ranks", "2", "--channels", "gray", "--out", tmp_path / "m", "-q"
    )
    assert code == 0, err


def test_shipped_swimmer_collection_is_the_generated_one() -> None:
    from mlnmf_cli.collections.swimmer import swimmer

    folder = Path(__file__).resolve().parent.parent / "sample_images" / "collections" / "swimmer"
    images, names = swimmer()
    assert sorted(p.stem for p in folder.glob("*.png")) == sorted(names)
    for k in (0, 77, 255):
        with Image.open(folder / f"{names[k]}.png") as im:
            np.testing.assert_array_equal(np.asarray(im) / 255.0, images[k])


def test_interrupted_encode_writes_nothing(
    learned: tuple[Path, str], grey_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = learned
    calls = []
    real = storage.save_image

    def save_then_stop(path: Path, image: object) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(path, image)

    monkeypatch.setattr(storage, "save_image", save_then_stop)
    code, _, err = run("encode", model, grey_folder, "--out", tmp_path / "e")
    assert code == 130 and "mlnmf: error: interrupted" in err
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_output_place_fails_before_any_work(
    grey_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    called = []
    monkeypatch.setattr(_shared, "factorize_deep", lambda *a, **k: called.append(1))
    code, _, err = run("learn", grey_folder, "--ranks", "2", "--out", blocker / "model")
    assert code == 1 and "output path exists and is not a directory" in err
    assert called == []


def test_encode_force_replaces_its_own_folder_but_not_a_users(
    learned: tuple[Path, str], grey_folder: Path, tmp_path: Path
) -> None:
    model, _ = learned
    out = tmp_path / "e"
    code, _, err = run("encode", model, grey_folder / "p00.png", "--out", out, "-q")
    assert code == 0, err
    code, _, err = run("encode", model, grey_folder / "p01.png", "--out", out, "-q", "--force")
    assert code == 0, err
    assert [p.name for p in (out / "reconstructions").iterdir()] == ["p01.png"]
    (out / "reconstructions" / "notes.txt").write_text("mine")  # no longer only mlnmf's files
    code, _, err = run("encode", model, grey_folder / "p02.png", "--out", out, "-q", "--force")
    assert code == 1 and "is not an mlnmf result folder" in err
    assert (out / "reconstructions" / "notes.txt").read_text() == "mine"


def test_learn_has_its_own_defaults_recorded_and_decompose_keeps_the_engines(
    learned: tuple[Path, str], grey_folder: Path, tmp_path: Path
) -> None:
    out, _ = learned
    parameters = json.loads((out / "report.json").read_text())["parameters"]
    assert (parameters["init"], parameters["deep_weight"]) == ("nndsvd", 4.0)
    code, _, err = run(
        "learn", grey_folder, "--ranks", "4,2", "--deep-weight", "2", "--init", "nndsvda",
        "--out", tmp_path / "m", "-q",
    )  # fmt: skip
    assert code == 0, err
    parameters = json.loads((tmp_path / "m" / "report.json").read_text())["parameters"]
    assert (parameters["init"], parameters["deep_weight"]) == ("nndsvda", 2.0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["learn", "", "-o", "m"], "INPUT '' is an empty path"),
        (["learn", "IMG", "-o", ""], "--out '' is an empty path"),
        (["encode", "", "IMG", "-o", "c"], "MODEL '' is an empty path"),
        (["encode", "m", "IMG", "-o", ""], "--out '' is an empty path"),
    ],
)
def test_an_empty_path_is_refused_not_read_as_the_current_folder(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(*args)
    assert code == 2 and err.startswith(f"mlnmf: error: {message}; give a name"), err
    assert list(tmp_path.iterdir()) == []


def test_learn_and_encode_folders_have_a_page_of_their_numbers_pictures_and_files(
    learned: tuple[Path, str], grey_folder: Path, tmp_path: Path
) -> None:
    out, _ = learned
    page = (out / "index.html").read_text()
    report = json.loads((out / "report.json").read_text())
    for d in report["depths"]:
        assert f"{100 * d['relative_error']:.2f}%" in page
    for picture in ("summary.png", "features_depth1.png", "features_depth2.png"):
        assert f'<img src="{picture}"' in page
    assert '<a href="model.npz">model.npz</a>' in page
    codes = tmp_path / "codes"
    code, _, err = run("encode", out, grey_folder, "--out", codes, "-q")
    assert code == 0, err
    page = (codes / "index.html").read_text()
    for r in json.loads((codes / "report.json").read_text())["results"]:
        assert Path(r["input"]).name in page and f"{100 * r['relative_error']:.2f}%" in page
    # --force recognises the folder (its page included) as the tool's own result
    code, _, err = run("encode", out, grey_folder, "--out", codes, "-q", "--force")
    assert code == 0, err


def test_the_page_names_the_final_folder_not_its_staging_name(learned: tuple[Path, str]) -> None:
    out, _ = learned
    assert f"<title>mlnmf learn: {out.name}</title>" in (out / "index.html").read_text()
