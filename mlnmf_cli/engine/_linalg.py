"""Small linear-algebra helpers shared by the solvers: truncated SVD and errors."""

from __future__ import annotations

import numpy as np

_EXACT_SVD_MAX_DIM = 128
POWER_ITER = 4


def truncated_svd(
    X: np.ndarray, k: int, rng: np.random.Generator, exact: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leading k singular triplets (U: m x k, s: k, Vt: k x n), computed in float64.

    Exact (LAPACK) for small matrices, for large k, or when asked; otherwise the
    randomized range finder of Halko, Martinsson & Tropp with QR-normalised
    power iterations, seeded by ``rng``. Singular vectors get a deterministic
    sign (largest-magnitude entry of each u positive).
    """
    m, n = X.shape
    Xd = np.asarray(X, dtype=np.float64)
    small = min(m, n)
    if exact or small <= 2 * k + 20 or small <= _EXACT_SVD_MAX_DIM:
        U, s, Vt = np.linalg.svd(Xd, full_matrices=False)
        U, s, Vt = U[:, :k], s[:k], Vt[:k]
    else:
        q = k + 10
        n_iter = POWER_ITER
        Q = _orthonormalize(Xd @ rng.standard_normal((n, q)))
        for i in range(n_iter):
            Z = _orthonormalize(Xd.T @ Q)
            Y = Xd @ Z
            Q = np.linalg.qr(Y)[0] if i == n_iter - 1 else _orthonormalize(Y)
        B = Q.T @ Xd
        Ub, s, Vt = np.linalg.svd(B, full_matrices=False)
        U = (Q @ Ub)[:, :k]
        s, Vt = s[:k], Vt[:k]
    idx = np.argmax(np.abs(U), axis=0)
    signs = np.where(U[idx, np.arange(U.shape[1])] < 0, -1.0, 1.0)
    return U * signs, s, Vt * signs[:, None]


def _orthonormalize(Y: np.ndarray) -> np.ndarray:
    """A cheap orthonormal-enough basis of span(Y) for power iterations.

    From the eigendecomposition of the small Gram matrix Y^T Y; directions
    with negligible energy are dropped. Much faster than Householder QR on
    tall-skinny matrices; the last power iteration still uses QR.
    """
    evals, evecs = np.linalg.eigh(Y.T @ Y)
    keep = evals > evals[-1] * 1e-12 if evals[-1] > 0 else np.zeros(evals.size, dtype=bool)
    if not np.any(keep):
        return np.linalg.qr(Y)[0]
    return Y @ (evecs[:, keep] / np.sqrt(evals[keep]))


def squared_norm(A: np.ndarray) -> float:
    """||A||_F^2 accumulated in float64."""
    a = np.asarray(A, dtype=np.float64).ravel()
    return float(np.dot(a, a))


def frob_inner(A: np.ndarray, B: np.ndarray) -> float:
    """<A, B>_F accumulated in float64."""
    return float(
        np.dot(np.asarray(A, dtype=np.float64).ravel(), np.asarray(B, dtype=np.float64).ravel())
    )


def relative_error_from_products(
    normX2: float,
    WtX: np.ndarray,
    H: np.ndarray,
    WtW: np.ndarray,
    HHt: np.ndarray,
    X: np.ndarray,
    W: np.ndarray,
) -> float:
    """||X - W H|| / ||X|| from the products the solvers already hold.

    Uses ||X||^2 - 2 <W^T X, H> + <W^T W, H H^T> summed in float64, and falls
    back to the explicit residual when that value is small enough relative to
    ||X||^2 for the cancellation to matter (the products are only as accurate
    as X's dtype).
    """
    if normX2 <= 0.0:
        return 0.0 if not np.any(W) or not np.any(H) else _explicit(X, W, H, normX2)
    e2 = normX2 - 2.0 * frob_inner(WtX, H) + frob_inner(WtW, HHt)
    guard = 1e-4 if X.dtype == np.float32 else 1e-9
    if e2 < guard * normX2:
        return _explicit(X, W, H, normX2)
    return float(np.sqrt(e2 / normX2))


def _explicit(X: np.ndarray, W: np.ndarray, H: np.ndarray, normX2: float) -> float:
    R = np.asarray(X, dtype=np.float64) - np.asarray(W, dtype=np.float64) @ np.asarray(
        H, dtype=np.float64
    )
    e2 = squared_norm(R)
    if normX2 <= 0.0:
        return 0.0 if e2 == 0.0 else float("inf")
    return float(np.sqrt(e2 / normX2))


def explicit_relative_error(X: np.ndarray, R: np.ndarray) -> float:
    """||X - R|| / ||X|| in float64; 0 when both are zero, inf when only X is."""
    Xd = np.asarray(X, dtype=np.float64)
    d = squared_norm(Xd - np.asarray(R, dtype=np.float64))
    nx = squared_norm(Xd)
    if nx == 0.0:
        return 0.0 if d == 0.0 else float("inf")
    return float(np.sqrt(d / nx))
