"""Validation of the input matrix, once, before any work starts.

The options' rules live in :mod:`mlnmf_cli.engine.options`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlnmf_cli.errors import ParameterError


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
