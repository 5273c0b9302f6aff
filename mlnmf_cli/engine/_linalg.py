"""Small linear-algebra helpers shared by the solvers: truncated SVD and errors."""

from __future__ import annotations

import numpy as np

_EXACT_SVD_MAX_DIM = 128
# Up to this smaller dimension the leading triplets come from the eigenvectors of
# the small Gram matrix (a few ms), cheaper than the randomized range finder and
# than LAPACK's full SVD (faces 625x100: 0.9 ms vs 5.9; digits 64x1797: 1.6 vs
# 13); LAPACK when the Gram route would be inaccurate (see _gram_svd).
_GRAM_SVD_MAX_DIM = 256
POWER_ITER = 4
# Entries per block when a large matrix is read in float64 a block of rows at a
# time (1 MiB of float64): temporaries stay small whatever the image size.
BLOCK_ELEMENTS = 1 << 17


def row_blocks(n_rows: int, n_cols: int) -> range:
    """Start rows of blocks of about :data:`BLOCK_ELEMENTS` entries (step = range.step)."""
    return range(0, n_rows, max(1, BLOCK_ELEMENTS // max(1, n_cols)))


def _f64_rows(X: np.ndarray, i: int, j: int) -> np.ndarray:
    return np.asarray(X[i:j], dtype=np.float64)


def _times(X: np.ndarray, B: np.ndarray) -> np.ndarray:
    """X @ B in float64 (B float64); a float32 X is converted a block of rows at a time."""
    if X.dtype == np.float64:
        return X @ B
    out = np.empty((X.shape[0], B.shape[1]))
    blocks = row_blocks(*X.shape)
    for i in blocks:
        np.dot(_f64_rows(X, i, i + blocks.step), B, out=out[i : i + blocks.step])
    return out


def _t_times(X: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """X^T @ Q in float64 (Q float64); a float32 X is converted a block of rows at a time."""
    if X.dtype == np.float64:
        return X.T @ Q
    out = np.zeros((X.shape[1], Q.shape[1]))
    blocks = row_blocks(*X.shape)
    for i in blocks:
        out += _f64_rows(X, i, i + blocks.step).T @ Q[i : i + blocks.step]
    return out


def truncated_svd(
    X: np.ndarray,
    k: int,
    rng: np.random.Generator,
    exact: bool = False,
    power_iter: int = POWER_ITER,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leading k singular triplets (U: m x k, s: k, Vt: k x n), computed in float64.

    From the Gram matrix's eigenvectors for small matrices (unless the k-th
    singular value is too small next to the first for that to be accurate);
    exact (LAPACK) then, for large k, or when asked; otherwise the
    randomized range finder of Halko, Martinsson & Tropp with ``power_iter``
    normalised power iterations (the last basis by QR), seeded by ``rng``.
    Singular vectors get a deterministic sign (largest-magnitude entry of each
    u positive). Always k triplets with orthonormal U and V, for any
    1 <= k <= min(m, n) and any X (zero, of rank below k): directions X does
    not reach come with singular values about 0.

    The randomized path never copies a large X: a float64 X is used as it is, a
    float32 X is converted to float64 a block of rows at a time inside each
    product (at most one block's worth, :data:`BLOCK_ELEMENTS`, is converted once).
    """
    m, n = X.shape
    small = min(m, n)
    if not exact and small <= _GRAM_SVD_MAX_DIM and (gram := _gram_svd(X, k)) is not None:
        U, s, Vt = gram
    elif exact or small <= 2 * k + 20 or small <= _EXACT_SVD_MAX_DIM:
        U, s, Vt = np.linalg.svd(np.asarray(X, dtype=np.float64), full_matrices=False)
        U, s, Vt = U[:, :k], s[:k], Vt[:k]
    else:
        if X.dtype != np.float64 and X.size <= BLOCK_ELEMENTS:
            # A single block anyway: convert once rather than in every product.
            X = X.astype(np.float64)
        q = k + 10
        Y = _times(X, rng.standard_normal((n, q)))
        for _ in range(power_iter):
            Z = _orthonormalize(_t_times(X, _orthonormalize(Y)))
            Y = _times(X, Z)
        Q = np.linalg.qr(Y)[0]
        B = _t_times(X, Q).T
        # B is q x n with q << n: its small Gram matrix's eigenvectors (LAPACK's SVD of
        # B when that would be inaccurate), 2.0 -> 0.6 ms for 74 x 451.
        Ub, s, Vt = _gram_svd(B, k) or np.linalg.svd(B, full_matrices=False)
        U = (Q @ Ub)[:, :k]
        s, Vt = s[:k], Vt[:k]
    idx = np.argmax(np.abs(U), axis=0)
    signs = np.where(U[idx, np.arange(U.shape[1])] < 0, -1.0, 1.0)
    return U * signs, s, Vt * signs[:, None]


def _gram_svd(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Leading k triplets from the eigendecomposition of the Gram matrix on the
    smaller side, in float64; None when the k-th singular value is too small
    relative to the first for that to be accurate (the caller falls back)."""
    A = np.asarray(X, dtype=np.float64)
    tall = A.shape[0] >= A.shape[1]
    B = A if tall else A.T
    evals, evecs = np.linalg.eigh(B.T @ B)
    evals, V = evals[::-1][:k], evecs[:, ::-1][:, :k]
    if not evals[-1] > evals[0] * 1e-10:
        return None
    s = np.sqrt(evals)
    U = (B @ V) / s
    return (U, s, V.T) if tall else (V, s, U.T)


def _orthonormalize(Y: np.ndarray) -> np.ndarray:
    """A cheap orthonormal-enough basis of span(Y) for power iterations.

    From the eigendecomposition of the small Gram matrix Y^T Y, much faster
    than Householder QR on tall-skinny matrices. When Y has directions of
    negligible energy (X of lower rank than the sketch: a flat or
    nearest-upscaled image), that route would lose them and the range finder
    would return fewer directions than asked; Householder QR is used instead,
    which always gives as many orthonormal columns as Y has (those beyond
    X's rank span directions X does not reach: singular values about 0).
    The last power iteration always uses QR.
    """
    evals, evecs = np.linalg.eigh(Y.T @ Y)
    if not evals[0] > evals[-1] * 1e-12:
        return np.linalg.qr(Y)[0]
    return Y @ (evecs / np.sqrt(evals))


def squared_norm(A: np.ndarray) -> float:
    """||A||_F^2 accumulated in float64 (other dtypes converted a block at a time)."""
    a = np.asarray(A).ravel()
    if a.dtype == np.float64:
        return float(np.dot(a, a))
    total = 0.0
    step = BLOCK_ELEMENTS
    for i in range(0, a.size, step):
        b = a[i : i + step].astype(np.float64)
        total += float(np.dot(b, b))
    return total


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
    e2 = residual_squared_norm(X, W, H)
    if normX2 <= 0.0:
        return 0.0 if e2 == 0.0 else float("inf")
    return float(np.sqrt(e2 / normX2))


def residual_squared_norm(X: np.ndarray, W: np.ndarray, H: np.ndarray) -> float:
    """||X - W H||_F^2 in float64, a block of rows at a time.

    W and H are taken in float64 and each block of X is converted to float64,
    so no m x n temporary is made and the residual is exact up to float64
    rounding (no cancellation through ||X||^2 - 2 <X, W H> + ||W H||^2).
    """
    W64 = np.asarray(W, dtype=np.float64)
    H64 = np.asarray(H, dtype=np.float64)
    total = 0.0
    blocks = row_blocks(*X.shape)
    for i in blocks:
        j = i + blocks.step
        R = np.array(X[i:j], dtype=np.float64)
        R -= W64[i:j] @ H64
        total += float(np.vdot(R, R))
    return total


def factor_relative_error(X: np.ndarray, W: np.ndarray, H: np.ndarray) -> float:
    """||X - W H|| / ||X|| in float64 without forming W H; 0 when both are zero,
    inf when only X is."""
    d = residual_squared_norm(X, W, H)
    nx = squared_norm(X)
    if nx == 0.0:
        return 0.0 if d == 0.0 else float("inf")
    return float(np.sqrt(d / nx))
