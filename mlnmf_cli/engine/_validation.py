"""Validation of every parameter and input matrix, once, before any work starts.

The rules live in one declarative table (:data:`PARAMETER_RULES`); each error
message names the parameter, the rule and the value it got.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlnmf_cli.errors import ParameterError

METHODS = ("nmf", "semi")
SOLVERS = ("hals", "mu")
INITS = ("nndsvda", "nndsvd", "random", "svd")


@dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]

    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, str) or value not in self.options:
            allowed = ", ".join(repr(o) for o in self.options)
            raise ParameterError(f"{name} must be one of {allowed}, got {value!r}")


@dataclass(frozen=True)
class Integer:
    low: int
    optional: bool = False

    def check(self, name: str, value: Any) -> None:
        if value is None and self.optional:
            return
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ParameterError(f"{name} must be an integer >= {self.low}, got {value!r}")
        if value < self.low:
            raise ParameterError(f"{name} must be an integer >= {self.low}, got {value!r}")


@dataclass(frozen=True)
class Real:
    low: float
    optional: bool = False

    def check(self, name: str, value: Any) -> None:
        if value is None and self.optional:
            return
        rule = f"a finite number >= {self.low:g}" + (" or None" if self.optional else "")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ParameterError(f"{name} must be {rule}, got {value!r}")
        if not math.isfinite(float(value)) or float(value) < self.low:
            raise ParameterError(f"{name} must be {rule}, got {value!r}")


@dataclass(frozen=True)
class Boolean:
    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise ParameterError(f"{name} must be True or False, got {value!r}")


@dataclass(frozen=True)
class OptionalCallable:
    def check(self, name: str, value: Any) -> None:
        if value is not None and not callable(value):
            raise ParameterError(f"{name} must be callable or None, got {value!r}")


PARAMETER_RULES: dict[str, Choice | Integer | Real | Boolean | OptionalCallable] = {
    "method": Choice(METHODS),
    "solver": Choice(SOLVERS),
    "init": Choice(INITS),
    "max_iter": Integer(0),
    "tol": Real(0.0),
    "target_error": Real(0.0, optional=True),
    "seed": Integer(0),
    "callback": OptionalCallable(),
    "fine_tune": Boolean(),
    "fine_tune_iter": Integer(0),
    "normalize": Boolean(),
    "refit": Boolean(),
    "layers": Integer(1, optional=True),
}


def check_parameters(**params: Any) -> None:
    """Check each keyword against its rule in :data:`PARAMETER_RULES`."""
    for name, value in params.items():
        PARAMETER_RULES[name].check(name, value)


def check_matrix(X: Any, method: str) -> np.ndarray:
    """Return X as a C-contiguous float32 or float64 2-D array, or raise ParameterError.

    float32 stays float32; every other real dtype (integers, bool, float16, ...)
    becomes float64.
    """
    try:
        A = np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"X must be a 2-D numeric array, got {type(X).__name__}") from exc
    if A.ndim != 2:
        raise ParameterError(
            f"X must be a 2-D array, got {A.ndim} dimension(s) (shape {tuple(A.shape)})"
        )
    if not (np.issubdtype(A.dtype, np.number) or A.dtype == np.bool_) or np.iscomplexobj(A):
        raise ParameterError(f"X must be a real numeric array, got dtype {A.dtype}")
    if A.size == 0:
        raise ParameterError(f"X must not be empty, got shape {tuple(A.shape)}")
    dtype = np.float32 if A.dtype == np.float32 else np.float64
    A = np.ascontiguousarray(A, dtype=dtype)
    n_bad = int(A.size - np.count_nonzero(np.isfinite(A)))
    if n_bad:
        raise ParameterError(f"X must contain only finite values, got {n_bad} NaN or inf entries")
    if method == "nmf":
        low = float(A.min())
        if low < 0:
            raise ParameterError(
                f"X must be non-negative for method 'nmf', got minimum {low:g} "
                "(use method 'semi' for signed data)"
            )
    return A


def _check_integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    return int(value)


def check_rank(rank: Any, shape: tuple[int, int], init: str) -> int:
    """Check a single-layer rank against the shape of X (and the svd init)."""
    r = _check_integer("rank", rank)
    limit = min(shape)
    if not 1 <= r <= limit:
        raise ParameterError(f"rank must be between 1 and min(m, n) = {limit}, got {r}")
    if init == "svd" and r < 2:
        raise ParameterError(
            "rank must be >= 2 for init 'svd' (the Gillis-Kumar start builds r "
            f"non-negative coefficients from a rank-(r-1) SVD), got {r}"
        )
    return r


def check_ranks(
    ranks: Any, shape: tuple[int, int], init: str, layers: int | None
) -> tuple[int, ...]:
    """Check the ranks of a deep model: non-increasing, each fitting its layer's input."""
    if isinstance(ranks, (str, bytes)) or not isinstance(ranks, (Sequence, np.ndarray)):
        raise ParameterError(f"ranks must be a sequence of integers, got {ranks!r}")
    values = list(ranks)
    if not values:
        raise ParameterError("ranks must not be empty, got []")
    out = tuple(_check_integer(f"ranks[{i}]", v) for i, v in enumerate(values))
    if layers is not None and layers != len(out):
        raise ParameterError(f"layers must equal len(ranks) = {len(out)}, got {layers}")
    m, n = shape
    for i, r in enumerate(out):
        if i == 0:
            limit, rule = min(m, n), f"min(m, n) = {min(m, n)}"
        else:
            limit = min(out[i - 1], n)
            rule = f"min(ranks[{i - 1}], n) = {limit}"
            if r > out[i - 1]:
                raise ParameterError(
                    f"ranks must be non-increasing, got ranks[{i}] = {r} > "
                    f"ranks[{i - 1}] = {out[i - 1]} in {list(out)}"
                )
        if not 1 <= r <= limit:
            raise ParameterError(f"ranks[{i}] must be between 1 and {rule}, got {r}")
        if init == "svd" and r < 2:
            raise ParameterError(
                f"ranks[{i}] must be >= 2 for init 'svd' (the Gillis-Kumar start builds r "
                f"non-negative coefficients from a rank-(r-1) SVD), got {r}"
            )
    return out


CallbackType = Callable[[str, int, float], Any]
