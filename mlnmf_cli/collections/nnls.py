"""Codes for new images with a dictionary held fixed: non-negative least squares on H.

min_{H >= 0} ||X - W H||_F, solved by HALS on the rows of H with W^T W and
W^T X computed once (Cichocki & Phan 2009). W may have any sign (a Semi-NMF
dictionary); only H is constrained. :func:`nnls` is the one function to swap
for the engine's own fixed-W solver when it lands (``encode(X, W, H0=...)`` on
the engine branch: H from it, the per-column errors as below).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlnmf_cli.errors import ParameterError

MAX_ITER = 500
TOL = 1e-6


@dataclass(frozen=True)
class NNLSResult:
    H: np.ndarray  # r x n, >= 0
    relative_errors: np.ndarray  # per column: ||x - W h|| / ||x|| (0 for a zero column)
    n_iter: int
    converged: bool


def nnls(
    W: np.ndarray,
    X: np.ndarray,
    *,
    max_iter: int = MAX_ITER,
    tol: float = TOL,
    H0: np.ndarray | None = None,
) -> NNLSResult:
    """Non-negative codes H (r x n) minimising ||X - W H|| with W (m x r) fixed.

    Starts from ``H0`` or from the unconstrained least-squares solution clipped
    at zero, then sweeps the rows of H until a sweep lowers the squared error by
    less than ``tol`` times itself (or ``max_iter`` sweeps). Computed in float64.
    """
    W = np.asarray(W, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    if W.ndim != 2 or X.ndim != 2 or W.shape[0] != X.shape[0]:
        raise ParameterError(
            f"W (m x r) and X (m x n) must have the same number of rows, got {W.shape} and {X.shape}"
        )
    if max_iter < 0 or not tol >= 0:
        raise ParameterError(f"max_iter must be >= 0 and tol >= 0, got {max_iter} and {tol}")
    WtW = W.T @ W
    WtX = W.T @ X
    norms2 = np.einsum("ij,ij->j", X, X)
    if H0 is None:
        H = np.maximum(np.linalg.lstsq(WtW, WtX, rcond=None)[0], 0.0)
    else:
        H = np.maximum(np.array(H0, dtype=np.float64), 0.0)
    diag = np.diag(WtW).copy()
    active = diag > 0
    H[~active] = 0.0

    def loss() -> np.ndarray:
        # ||x - W h||^2 per column from the Gram matrices, never below 0.
        return np.maximum(
            norms2 - 2 * np.einsum("ij,ij->j", H, WtX) + np.einsum("ij,ij->j", H, WtW @ H), 0.0
        )

    previous = float(loss().sum())
    n_iter, converged = 0, previous == 0.0
    while n_iter < max_iter and not converged:
        for k in np.flatnonzero(active):
            H[k] = np.maximum(H[k] + (WtX[k] - WtW[k] @ H) / diag[k], 0.0)
        n_iter += 1
        current = float(loss().sum())
        converged = previous - current <= tol * max(current, 1e-300)
        previous = current
    residual = X - W @ H
    errors = np.sqrt(np.einsum("ij,ij->j", residual, residual))
    safe = np.where(norms2 > 0, np.sqrt(norms2), 1.0)
    return NNLSResult(H=H, relative_errors=errors / safe, n_iter=n_iter, converged=converged)
