"""The option declarations: one rule table, one place for defaults, derived views."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from mlnmf_cli.engine import factorize_deep
from mlnmf_cli.engine.options import (
    DEFAULTS,
    EngineOptions,
    OptionError,
    RankError,
    check_ranks,
    fitting_ranks,
    option_fields,
)
from mlnmf_cli.errors import ParameterError
from mlnmf_cli.options import Options, explain, parse_value


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "pca"}, "method must be one of 'nmf', 'semi', got 'pca'"),
        ({"max_iter": -1}, "max_iter must be an integer >= 0, got -1"),
        ({"max_iter": 2.5}, "max_iter must be an integer >= 0, got 2.5"),
        ({"tol": float("nan")}, "tol must be a finite number >= 0, got nan"),
        ({"target_error": -1.0}, "target_error must be a finite number >= 0 or None, got -1.0"),
        ({"fine_tune": "yes"}, "fine_tune must be True or False, got 'yes'"),
        ({"max_sweeps": 0}, "max_sweeps must be an integer >= 1, got 0"),
    ],
)
def test_every_field_is_checked_by_its_rule(change: dict, message: str) -> None:
    with pytest.raises(ParameterError) as info:
        EngineOptions(**change)
    assert str(info.value) == message


def test_options_add_their_own_fields_to_the_engine_rules() -> None:
    with pytest.raises(ParameterError, match="dtype must be one of 'float32', 'float64'"):
        Options(dtype="float16")
    with pytest.raises(ParameterError, match="max_pixels must be an integer >= 1, got 0"):
        Options(max_pixels=0)
    with pytest.raises(ParameterError, match=r"ranks\[0\] must be >= 2 for init 'svd'"):
        Options(ranks=(1,), init="svd")
    assert Options(ranks=[np.int64(4), 2]).ranks == (4, 2)  # type: ignore[arg-type]
    assert Options().engine == DEFAULTS


def test_check_ranks_needs_no_shape() -> None:
    assert check_ranks([8, 4]) == (8, 4)
    with pytest.raises(ParameterError, match="non-increasing"):
        check_ranks([4, 8])
    with pytest.raises(ParameterError, match=r"ranks\[1\] must be at least 1, got 0"):
        check_ranks([4, 0])
    with pytest.raises(ParameterError, match=r"ranks\[0\] must be between 1 and min\(m, n\) = 5"):
        check_ranks([6], (5, 9))
    with pytest.raises(ParameterError, match="layers must equal len"):
        check_ranks([4, 2], layers=3)


def test_recorded_parameters_are_the_declared_ones_ranks_first() -> None:
    d = Options().as_dict()
    assert next(iter(d)) == "ranks" and d["ranks"] == [64, 32, 16]
    assert set(d) == {f.name for f in option_fields(Options, "recorded")}
    assert "max_sweeps" not in d and "extrapolate" not in d


def test_options_object_and_keywords_give_the_same_factorisation() -> None:
    X = np.random.default_rng(0).random((30, 20))
    opts = dataclasses.replace(DEFAULTS, max_iter=5, fine_tune_iter=3, seed=2)
    a = factorize_deep(X, [4, 2], options=opts)
    b = factorize_deep(X, [4, 2], max_iter=5, fine_tune_iter=3, seed=2)
    for x, y in zip(a.Ws + a.Hs, b.Ws + b.Hs, strict=True):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(TypeError, match="unknown engine option"):
        factorize_deep(X, [4, 2], iterations=5)


# --------------------------------------------------------------------------- in the user's words


@pytest.mark.parametrize(
    ("ranks", "limit", "init", "fitting"),
    [
        ((64, 32, 16), 8, None, (8, 4, 2)),
        ((64, 32, 16), 24, None, (24, 12, 6)),
        ((100, 80), 64, "svd", (64, 51)),
        ((8, 16), None, None, (16, 8)),
        ((4, 1), None, "svd", (4, 2)),
        ((8, 4), 1, None, (1, 1)),
        ((8, 4), 1, "svd", None),
    ],
)
def test_fitting_ranks_pass_check_ranks(
    ranks: tuple, limit: int, init: str, fitting: tuple
) -> None:
    got = fitting_ranks(ranks, limit, init)
    assert got == fitting
    if got is not None:
        shape = None if limit is None else (limit, limit + 3)
        assert check_ranks(got, shape, init) == got


def test_engine_errors_keep_their_words_and_carry_the_facts() -> None:
    with pytest.raises(RankError) as info:
        check_ranks([64, 32, 16], (8, 9))
    e = info.value
    assert str(e) == "ranks[0] must be between 1 and min(m, n) = 8, got 64"
    assert (e.option, e.value, e.reason, e.limit, e.suggestion) == (
        "ranks", (64, 32, 16), "size", 8, (8, 4, 2),
    )  # fmt: skip
    assert explain(e) == (
        "--ranks 64,32,16 does not fit the 8x9 matrix: every rank must be at most 8 "
        "(try --ranks 8,4,2)"
    )
    assert explain(e, "config", fitted="the 8x9 images") == (
        "ranks=64,32,16 does not fit the 8x9 images: every rank must be at most 8 (try ranks=8,4,2)"
    )
    with pytest.raises(OptionError) as choice:
        Options(channels="rgb")
    assert str(choice.value) == "channels must be one of 'gray', 'stack', 'separate', got 'rgb'"
    assert explain(choice.value) == "--channels 'rgb' is not one of gray, stack, separate"
    with pytest.raises(OptionError) as flag:
        EngineOptions(fine_tune="maybe")  # type: ignore[arg-type]
    assert explain(flag.value, "config") == "fine_tune=maybe is not on or off"
    assert explain(ParameterError("other")) == "other"


def test_check_fits_names_the_image_and_its_matrix() -> None:
    with pytest.raises(ParameterError) as info:
        Options(ranks=(20,)).check_fits((16, 48), (16, 16))
    assert str(info.value) == (
        "--ranks 20 does not fit the 16x16 image (decomposed as 16x48): every rank must be "
        "at most 16 (try --ranks 16)"
    )
    Options(ranks=(16, 8)).check_fits((16, 48), (16, 16))


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [("ranks", "8,4", (8, 4)), ("max_iter", " 7", 7), ("tol", "1e-3", 1e-3),
     ("target_error", "none", None), ("channels", "auto", None), ("fine_tune", "off", False),
     ("method", "semi", "semi")],
)  # fmt: skip
def test_parse_value_reads_text_by_the_rule(name: str, text: str, value: object) -> None:
    assert parse_value(name, text) == value
    assert parse_value(name, value) == value  # values that are not text are only checked


@pytest.mark.parametrize(
    ("name", "text", "flag", "config"),
    [
        ("max_iter", "-1", "--max-iter -1 is not a whole number of at least 0",
         "max_iter=-1 is not a whole number of at least 0"),
        ("tol", "inf", "--tol inf is not a finite number of at least 0",
         "tol=inf is not a finite number of at least 0"),
        ("ranks", "8,16", "--ranks 8,16 must be non-increasing, each rank at most the one before it (try --ranks 16,8)",
         "ranks=8,16 must be non-increasing, each rank at most the one before it (try ranks=16,8)"),
        ("fine_tune", "maybe", "--fine-tune 'maybe' is not on or off", "fine_tune=maybe is not on or off"),
    ],
)  # fmt: skip
def test_parse_value_errors_in_both_spellings(name: str, text: str, flag: str, config: str) -> None:
    with pytest.raises(ParameterError, match=re.escape(flag)):
        parse_value(name, text)
    with pytest.raises(ParameterError, match=re.escape(config)):
        parse_value(name, text, "config")
