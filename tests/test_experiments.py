"""compare and random-test: the similarity measure, its baselines, the verdict, the commands."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import ENV, run
from PIL import Image

from mlnmf_cli import experiments as ex
from mlnmf_cli import pipeline
from mlnmf_cli.engine.model import Model
from mlnmf_cli.engine.options import Boolean, Choice, Integer, Ranks, option_fields
from mlnmf_cli.errors import ParameterError
from mlnmf_cli.options import Options

SMALL = "ranks=8,4"


def smooth_png(path: Path, height: int = 32, width: int = 32, phase: float = 0.0) -> Path:
    """A grey picture with structure (waves and a gradient), so NMF has something to find."""
    y, x = np.mgrid[0:height, 0:width]
    px = 0.5 + 0.25 * np.sin(x / 3.0 + phase) * np.cos(y / 5.0) + 0.2 * (y / height - 0.5)
    Image.fromarray(np.uint8(np.clip(px, 0, 1) * 255), "L").save(path)
    return path


# --------------------------------------------------------------------------- the measure


@pytest.mark.parametrize("measure", ex.MEASURES)
@pytest.mark.parametrize("kind", ex.KINDS)
def test_similarity_is_one_for_identical_factors(kind: str, measure: str) -> None:
    A = np.random.default_rng(1).random((40, 6) if kind == "features" else (6, 40))
    assert ex.similarity(A, A.copy(), kind, measure) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("measure", ex.MEASURES)
def test_similarity_ignores_order_and_scale_of_components(measure: str) -> None:
    rng = np.random.default_rng(2)
    W, H = rng.random((40, 6)), rng.random((6, 50))
    perm = rng.permutation(6)
    scale = rng.uniform(0.1, 10.0, 6)
    W2, H2 = W[:, perm] * scale[perm], H[perm, :] / scale[perm, None]
    assert ex.similarity(W, W2, "features", measure) == pytest.approx(1.0, abs=1e-9)
    assert ex.similarity(H, H2, "coefficients", measure) == pytest.approx(1.0, abs=1e-9)
    # and it does see a real change
    assert ex.similarity(W, rng.random((40, 6)), "features", measure) < 0.95


@pytest.mark.parametrize("measure", ex.MEASURES)
def test_independent_random_factors_score_near_the_null_baseline(measure: str) -> None:
    rng = np.random.default_rng(3)
    null = ex.null_draws((60, 5), 2, "features", measure, 40, rng)
    observed = [ex.similarity(rng.random((60, 5)), rng.random((60, 5)), "features", measure)]
    assert abs(np.mean(observed) - null.mean()) < 4 * null.std() + 0.02
    # the null of non-negative matrices is far from 0: the shared mean direction
    assert null.mean() > 0.2


def test_rank_equal_to_dimension_is_flagged_trivial_with_no_chance_corrected_score() -> None:
    # Features 8x8 span R^8 (rank = space): trivial; coefficients 8x30 do not.
    rng = np.random.default_rng(4)
    config = ex.parse_config("ranks=8")
    subjects = [ex.Subject(f"s{i}", Path(f"s{i}.png")) for i in range(3)]
    runs = [
        ex.Run(s, config, ex.Factors([Model([rng.random((8, 8))], [rng.random((8, 30))])]), [],
               None, "synthetic")
        for s in subjects
    ]  # fmt: skip
    result = ex.compare_runs(subjects, [config], [runs], draws=5)
    entries = result.entries(0, 1)
    features, coefficients = entries["features"], entries["coefficients"]
    assert features["trivial"] is True and coefficients["trivial"] is False
    assert features["across"]["mean"] == pytest.approx(1.0)
    assert features["null"]["mean"] == pytest.approx(1.0)
    assert features["corrected"] is None
    assert coefficients["corrected"] is not None
    assert ex.chance_corrected(0.75, 0.5) == pytest.approx(0.5)


# --------------------------------------------------------------------------- configurations


def test_parse_config_reads_every_kind_of_value() -> None:
    c = ex.parse_config("ranks=12,6 method=semi fine_tune=off normalize=true tol=1e-3 seed=4")
    o = c.options
    assert (o.ranks, o.method, o.fine_tune, o.normalize, o.tol, o.seed) == (
        (12, 6), "semi", False, True, 1e-3, 4,
    )  # fmt: skip
    assert c.label == "ranks=12,6 method=semi fine_tune=off normalize=true tol=1e-3 seed=4"
    assert ex.parse_config("").options == pipeline.Options()


def _other_value(name: str) -> tuple[str, object]:
    """A value of option ``name`` other than its default, and its ``--config`` spelling."""
    rule = next(f for f in dataclasses.fields(Options) if f.name == name).metadata["rule"]
    default = getattr(Options(), name)
    if isinstance(rule, Ranks):
        return "12,6", (12, 6)
    if isinstance(rule, Choice):
        other = next(o for o in rule.options if o != default)
        return other, other
    if isinstance(rule, Boolean):
        return ("off", False) if default else ("on", True)
    if isinstance(rule, Integer):
        return str(rule.low + 3), rule.low + 3
    return "0.25", 0.25


def test_every_config_key_reaches_its_option() -> None:
    assert set(ex.CONFIG_KEYS) == {f.name for f in option_fields(Options, "config")}
    for key in ex.CONFIG_KEYS:
        text, value = _other_value(key)
        assert getattr(ex.parse_config(f"{key}={text}").options, key) == value, key
        assert value != getattr(Options(), key), key


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("colour=on", "configuration 'colour=on': unknown key 'colour' (allowed: ranks,"),
        ("fine_tune=maybe", "configuration 'fine_tune=maybe': fine_tune=maybe is not on or off"),
        ("ranks=8,x", "configuration 'ranks=8,x': ranks=8,x is not a list of positive whole numbers separated by commas, e.g. 64,32,16"),
        ("method=magic", "configuration 'method=magic': method=magic is not one of nmf, semi"),
        ("tol=-1", "configuration 'tol=-1': tol=-1 is not a finite number of at least 0"),
        ("ranks=4,8", "configuration 'ranks=4,8': ranks=4,8 must be non-increasing, each rank at most the one before it (try ranks=8,4)"),
        ("ranks=4,1 init=svd", "configuration 'ranks=4,1 init=svd': ranks=4,1 has a rank below 2, which init=svd cannot start from (try ranks=4,2)"),
        ("ranks", "configuration 'ranks': expected key=value, got 'ranks'"),
    ],
)  # fmt: skip
def test_parse_config_names_the_bad_key_or_value(spec: str, message: str) -> None:
    with pytest.raises(ParameterError) as info:
        ex.parse_config(spec)
    assert str(info.value).startswith(message)


def test_like_seed_config_is_the_seeds_setup() -> None:
    o = ex.like_seed_config((80,)).options
    assert (o.method, o.init, o.max_iter, o.normalize, o.refit, o.fine_tune, o.ranks) == (
        "semi",
        "svd",
        0,
        False,
        False,
        False,
        (80,),
    )


# --------------------------------------------------------------------------- verdict


def _synthetic(shared: str, n: int = 4, seed: int = 0) -> ex.CompareResult:
    """Factor sets where one kind is the same for every input and the other independent."""
    rng = np.random.default_rng(seed)
    W0, H0 = rng.random((50, 5)), rng.random((5, 60))
    subjects, runs = [], []
    config = ex.parse_config("ranks=5")
    for i in range(n):
        W = W0[:, rng.permutation(5)] if shared == "features" else rng.random((50, 5))
        H = H0[rng.permutation(5)] if shared == "coefficients" else rng.random((5, 60))
        s = ex.Subject(f"s{i}", Path(f"s{i}.png"))
        subjects.append(s)
        runs.append(ex.Run(s, config, ex.Factors([Model([W], [H])]), [], None, "synthetic"))
    return ex.compare_runs(subjects, [config], [runs], draws=30)


def test_verdict_follows_the_numbers() -> None:
    feat = ex.verdict(_synthetic("features").verdict_stats(0, 1))
    coef = ex.verdict(_synthetic("coefficients").verdict_stats(0, 1))
    assert "features are more alike across inputs than coefficients" in feat
    assert "only the features beat their null baseline" in feat
    assert "coefficients are more alike across inputs than features" in coef
    assert "only the coefficients beat their null baseline" in coef


def test_verdict_with_nothing_shared_says_so() -> None:
    stats = ex.stats_over_repeats([_synthetic("neither")], 0, 1)
    text = ex.verdict(stats)
    assert "about equally alike" in text
    assert "neither beats its null baseline" in text


def test_verdict_over_repeats_uses_intervals() -> None:
    stats = ex.pooled_stats([_synthetic("features", seed=s).verdict_stats(0, 1) for s in range(3)])
    assert stats["repeats"] == 3
    f = stats["features"]["across"]
    assert f["low"] <= f["mean"] <= f["high"]
    assert ex.verdict(stats).startswith("At depth 1 over 3 repeats, features are more alike")


def test_mean_interval() -> None:
    iv = ex.mean_interval([1.0, 2.0, 3.0])
    assert iv["mean"] == 2.0
    assert iv["high"] - iv["mean"] == pytest.approx(4.303 * 1.0 / np.sqrt(3), rel=1e-6)
    assert ex.mean_interval([5.0]) == {"mean": 5.0, "low": 5.0, "high": 5.0}


# --------------------------------------------------------------------------- compare


def test_compare_two_copies_of_one_image_are_alike(tmp_path: Path) -> None:
    a = smooth_png(tmp_path / "a.png")
    b = tmp_path / "b.png"
    b.write_bytes(a.read_bytes())
    out = tmp_path / "out"
    code, stdout, err = run("compare", a, b, "--config", SMALL, "--out", out, "--json")
    assert code == 0, err
    data = json.loads(stdout)
    assert data == json.loads((out / "compare.json").read_text())
    for e in data["similarities"]:
        assert e["across"]["mean"] > 0.999, e
        assert e["null"]["mean"] < 0.99
    assert "verdict: At depth 1" in err
    for name in ex.planned_files(1, [2]):
        assert (out / name).is_file(), name
    with Image.open(out / "heatmap_config1_depth2_features.png") as im:
        im.load()
    with (out / "compare.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["kind"] for r in rows} == {"features", "coefficients"}
    assert all(r["null_mean"] for r in rows)


def test_separate_channels_are_compared_part_by_part(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8), "RGB").save(
            tmp_path / f"{name}.png"
        )
    code, stdout, err = run(
        "compare", tmp_path / "a.png", tmp_path / "b.png", "-c", "ranks=12 channels=separate",
        "--null-draws", "4", "--out", tmp_path / "o", "--json",
    )  # fmt: skip
    assert code == 0, err
    for e in json.loads(stdout)["similarities"]:
        # 3 x 12 features side by side would fill R^24 and score 1; per part they do not
        assert (e["parts"], e["shape"], e["trivial"]) == (
            3,
            [24, 12] if e["kind"] == "features" else [12, 24],
            False,
        )
        assert e["across"]["mean"] < 0.95
    A = [rng.random((10, 3)) for _ in range(3)]
    B = [A[0], rng.random((10, 3)), rng.random((10, 3))]
    expected = np.mean(
        [1.0, *(ex.similarity(a, b, "features") for a, b in zip(A[1:], B[1:], strict=True))]
    )
    assert ex.part_similarity(A, B, "features") == pytest.approx(expected)


def test_compare_deeper_configs_show_in_the_runs_table(tmp_path: Path) -> None:
    a, b = smooth_png(tmp_path / "a.png"), smooth_png(tmp_path / "b.png", phase=1.0)
    code, _, err = run(
        "compare", a, b, "-c", "ranks=8", "-c", "ranks=8,4 fine_tune=off", "--out", tmp_path / "o"
    )
    assert code == 0, err
    assert "ranks=8,4 fine_tune=off" in err and "above chance" in err
    data = json.loads((tmp_path / "o" / "compare.json").read_text())
    assert [len(r["depths"]) for r in data["runs"]] == [1, 1, 2, 2]
    assert len(data["verdicts"]) == 2


def test_compare_refuses_mismatched_shapes_without_resize(tmp_path: Path) -> None:
    a = smooth_png(tmp_path / "a.png", 32, 32)
    b = smooth_png(tmp_path / "b.png", 32, 40)
    code, _, err = run("compare", a, b, "-c", SMALL, "--out", tmp_path / "o")
    assert code == 2
    assert err.strip() == (
        "mlnmf: error: inputs have different shapes, so their features (which need equal height) "
        f"and coefficients (which need equal width) cannot be compared: {a} 32x32, {b} 32x40; "
        "use --resize HxW to bring them to one size"
    )
    code, _, err = run("compare", a, b, "-c", SMALL, "--resize", "24x24", "--out", tmp_path / "o")
    assert code == 0, err


def test_compare_bad_config_is_a_usage_error(tmp_path: Path) -> None:
    a = smooth_png(tmp_path / "a.png")
    code, _, err = run("compare", a, a, "-c", "rank=8", "--out", tmp_path / "o")
    assert code == 2
    assert err.startswith(
        "mlnmf: error: --config 'rank=8': unknown key 'rank' (allowed: ranks, method"
    )
    assert err.count("\n") == 1
    assert not (tmp_path / "o" / "compare.json").exists()


def test_compare_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    a, b = smooth_png(tmp_path / "a.png"), smooth_png(tmp_path / "b.png", phase=2.0)
    out = tmp_path / "o"
    assert run("compare", a, b, "-c", SMALL, "--out", out, "-q")[0] == 0
    before = (out / "compare.json").read_bytes()
    code, _, err = run("compare", a, b, "-c", "ranks=6", "--out", out, "-q")
    assert code == 1
    assert err.startswith(f"mlnmf: error: {out} already holds compare.json, compare.csv")
    assert (out / "compare.json").read_bytes() == before
    assert run("compare", a, b, "-c", "ranks=6", "--out", out, "-q", "--force")[0] == 0


def test_compare_reuses_a_saved_model_and_refuses_a_mismatch(tmp_path: Path) -> None:
    a, b = smooth_png(tmp_path / "a.png"), smooth_png(tmp_path / "b.png", phase=1.0)
    code, _, err = run("decompose", a, "--ranks", "8,4", "--out", tmp_path / "dec", "-q")
    assert code == 0, err
    folder = tmp_path / "dec" / "a"
    code, stdout, err = run("compare", folder, b, "-c", SMALL, "--out", tmp_path / "o", "--json")
    assert code == 0, err
    data = json.loads(stdout)
    assert [r["source"] for r in data["runs"]] == ["saved model", "computed"]
    assert data["runs"][0]["depths"][1]["relative_error"] is not None  # from report.json
    code, _, err = run("compare", folder, b, "-c", "ranks=8,2", "--out", tmp_path / "o2")
    assert code == 2
    assert (
        f"{folder}: saved model does not match configuration 'ranks=8,2' in ranks "
        "(model 8,4, configuration 8,2), and it cannot be re-run because the original "
        "image is not stored in it"
    ) in err


def test_compare_with_a_model_and_its_own_image_matches(tmp_path: Path) -> None:
    a = smooth_png(tmp_path / "a.png")
    assert run("decompose", a, "--ranks", "8,4", "--out", tmp_path / "dec", "-q")[0] == 0
    code, stdout, err = run(
        "compare",
        tmp_path / "dec" / "a" / "model.npz",
        a,
        "-c",
        SMALL,
        "--out",
        tmp_path / "o",
        "--json",
    )
    assert code == 0, err
    for e in json.loads(stdout)["similarities"]:
        assert e["across"]["mean"] > 0.999


# --------------------------------------------------------------------------- random-test


def _random_test(out: Path, *extra: str) -> dict:
    code, stdout, err = run(
        "random-test", "--size", "24x24", "-c", "ranks=6,3", "--null-draws", "5",
        "--out", out, "--json", *extra,
    )  # fmt: skip
    assert code == 0, err
    assert err.rstrip().splitlines()[-1].startswith("verdict: At depth 1")
    return json.loads(stdout)


def _numbers(data: dict) -> dict:
    return {k: v for k, v in data.items() if k not in ("seconds", "images")}


def test_random_test_is_reproducible_with_a_seed(tmp_path: Path) -> None:
    one = _random_test(tmp_path / "one", "--seed", "7")
    two = _random_test(tmp_path / "two", "--seed", "7")
    other = _random_test(tmp_path / "three", "--seed", "8")
    assert _numbers(one) == _numbers(two)
    assert _numbers(one) != _numbers(other)
    for name in ("random-1.png", "random-2.png", "random-3.png"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
        assert (tmp_path / "one" / name).read_bytes() != (tmp_path / "three" / name).read_bytes()
    with Image.open(tmp_path / "one" / "random-1.png") as im:
        assert im.size == (24, 24)
    assert (tmp_path / "one" / "montage_config1.png").is_file()


def test_random_test_repeats_report_intervals_and_control(tmp_path: Path) -> None:
    control = smooth_png(tmp_path / "control.png", 40, 50)
    data = _random_test(
        tmp_path / "o",
        "--repeats",
        "3",
        "--count",
        "2",
        "--control",
        control,
        "--distribution",
        "binary",
    )
    assert data["repeats"] == 3 and data["image_seeds"] == [0, 1, 2]
    assert (tmp_path / "o" / "random-r03-2.png").is_file()
    for row in data["summary"]:
        for key in ("across", "null", "corrected", "control"):
            assert row[key]["low"] <= row[key]["mean"] <= row[key]["high"], (key, row)
    assert "over 3 repeats" in data["verdicts"][0]["verdict"]


def test_random_pixels_distributions() -> None:
    u, n, b = (ex.random_pixels(1, (50, 60), d, 0)[0] for d in ex.DISTRIBUTIONS)
    assert u.shape == (50, 60) and 0 <= u.min() and u.max() <= 1
    assert abs(n.mean() - 0.5) < 0.02 and n.std() < 0.2
    assert set(np.unique(b)) == {0.0, 1.0}
    with pytest.raises(ParameterError, match="distribution must be one of"):
        ex.random_pixels(1, (5, 5), "poisson", 0)


def test_top_column_share_sees_one_dominant_column() -> None:
    even = np.ones((10, 4))
    assert ex.top_column_share([even]) == pytest.approx(0.25)
    skewed = even.copy()
    skewed[:, 2] *= 10
    assert ex.top_column_share([even, skewed]) == pytest.approx(100 / 103)


def test_compare_refuses_one_input_before_any_work(tmp_path: Path) -> None:
    a = smooth_png(tmp_path / "a.png")
    code, stdout, err = run("compare", a, "-c", "ranks=8", "--out", tmp_path / "o", "--json")
    assert (code, stdout) == (2, "")
    assert err == f"mlnmf: error: compare needs at least two inputs to compare, got 1: {a}\n"
    assert not (tmp_path / "o").exists()
    code, _, err = run("random-test", "--count", "1", "--out", tmp_path / "r")
    assert code == 2
    assert err.startswith("mlnmf: error: --count 1 is not a whole number of at least 2 (see")
    assert not (tmp_path / "r").exists()


def test_ranks_that_do_not_fit_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    a, b = smooth_png(tmp_path / "a.png", 12, 12), smooth_png(tmp_path / "b.png", 12, 12, phase=2.0)
    code, _, err = run("compare", a, b, "-c", "ranks=4", "-c", "ranks=16,8", "-o", tmp_path / "o")
    assert code == 2
    assert err == (
        "mlnmf: error: --config 'ranks=16,8': ranks=16,8 does not fit the 12x12 images: every "
        "rank must be at most 12 (try ranks=12,6) (see 'mlnmf compare --help')\n"
    )
    assert not (tmp_path / "o").exists()
    code, _, err = run("random-test", "--size", "8x8", "--out", tmp_path / "r")
    assert code == 2
    assert err.startswith(
        "mlnmf: error: the default configuration (no --config): ranks=64,32,16 does not fit the "
        "8x8 images of --size: every rank must be at most 8 (try ranks=8,4,2)"
    )
    code, _, err = run("random-test", "--size", "8x8", "--like-seed", "--out", tmp_path / "r")
    assert code == 2
    assert err.startswith(
        "mlnmf: error: --like-seed: ranks=80 does not fit the 8x8 images of --size: "
        "every rank must be at most 8 (see"
    )
    code, _, err = run(
        "random-test", "--size", "8x8", "-c", "ranks=4", "--control", tmp_path / "no.png",
        "--out", tmp_path / "r",
    )  # fmt: skip
    assert (code, err) == (1, f"mlnmf: error: {tmp_path / 'no.png'}: file not found\n")
    code, _, err = run("random-test", "-c", "ranks=4", "--verdict-depth", "2", "-o", tmp_path / "r")
    assert code == 2
    assert err.startswith(
        "mlnmf: error: --verdict-depth 2 is deeper than every configuration "
        "(the deepest has 1 layer; try --verdict-depth 1)"
    )
    assert not (tmp_path / "r").exists()


def test_mismatch_message_names_the_decomposed_shape_of_colour_inputs(tmp_path: Path) -> None:
    grey = smooth_png(tmp_path / "grey.png", 32, 32)
    colour = tmp_path / "colour.png"
    Image.new("RGB", (40, 32), (200, 100, 50)).save(colour)
    code, _, err = run("compare", grey, colour, "-c", SMALL, "--out", tmp_path / "o")
    assert code == 2
    assert f"{grey} 32x32 (decomposed as 32x96), {colour} 32x40 (decomposed as 32x120);" in err


def test_every_public_name_of_the_lazy_packages_resolves() -> None:
    from mlnmf_cli import engine

    for package in (ex, engine):
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"


# --------------------------------------------------------------------------- tables at 80 columns


def run_at(columns: int, *args: str | Path) -> tuple[int, str, str]:
    """``mlnmf *args`` through the real app in a terminal ``columns`` wide."""
    from typer.testing import CliRunner

    from mlnmf_cli.cli import app

    env = {**ENV, "COLUMNS": str(columns)}
    result = CliRunner().invoke(app, [str(a) for a in args], env=env, prog_name="mlnmf")
    return result.exit_code, result.stdout, result.stderr


def assert_whole_at(width: int, text: str) -> None:
    """No cell cut with an ellipsis, no table wider than ``width`` (verdicts and errors
    are single lines a terminal wraps)."""
    assert "…" not in text and "..." not in text
    tables = [line for line in text.splitlines() if set(line) & set("│┃┏└")]
    assert tables and max(len(line) for line in tables) <= width


@pytest.mark.parametrize("repeats", [1, 2])
def test_tables_are_whole_at_80_columns(tmp_path: Path, repeats: int) -> None:
    folder = tmp_path / "a folder with a rather long name" / "and another one inside it"
    folder.mkdir(parents=True)
    a = smooth_png(folder / "first_picture_with_a_long_name.png", 20, 20)
    b = smooth_png(folder / "second_picture_with_a_long_name.png", 20, 20, phase=2.0)
    configs = ["-c", "ranks=6,3 fine_tune=off normalize=off", "-c", "ranks=4 method=semi"]
    if repeats == 1:
        args: list[str | Path] = ["compare", a, b, *configs, "--null-draws", "3"]
    else:
        args = ["random-test", "--size", "20x20", "--control", a, "--repeats", "2", *configs]
    code, stdout, err = run_at(80, *args, "--json", "-o", tmp_path / "o")
    assert code == 0, err
    assert_whole_at(80, err)
    data = json.loads(stdout)
    runs = (
        data["runs"]
        if repeats == 1
        else json.loads((tmp_path / "o" / "compare.json").read_text())["runs"]
    )
    for run_ in runs:  # every number of the runs table is there in full
        for depth in run_["depths"]:
            assert f"{100 * depth['relative_error']:.2f}%" in err
    rows = data["summary"] if repeats > 1 else None
    for row in rows or []:
        assert f"{row['across']['mean']:.3f}" in err


def test_decompose_table_is_whole_at_80_columns(tmp_path: Path) -> None:
    folder = tmp_path / "a folder with a rather long name" / "and_another_one_inside_it"
    folder.mkdir(parents=True)
    a = smooth_png(folder / "first_picture_with_a_long_name.png", 20, 20)
    code, stdout, err = run_at(80, "decompose", a, "-r", "4,2", "-o", tmp_path / "o", "--json")
    assert code == 0, err
    assert_whole_at(80, err)
    row = json.loads(stdout)["results"][0]
    assert f"{100 * row['relative_error']:.2f}%" in err
    # the path is all there, folded over lines of the input column
    cells = "".join(line.split("│")[1].strip() for line in err.splitlines() if "│" in line)
    assert str(a).replace(" ", "") in cells.replace(" ", "")
