"""The option declarations: one rule table, one place for defaults, derived views."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mlnmf_cli.engine import factorize_deep
from mlnmf_cli.engine.options import DEFAULTS, EngineOptions, check_ranks, option_fields
from mlnmf_cli.errors import ParameterError
from mlnmf_cli.options import Options


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
