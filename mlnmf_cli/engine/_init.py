"""Initial factors: NNDSVD(a), seeded random, and the Gillis-Kumar Semi-NMF SVD start."""

from __future__ import annotations

import itertools

import numpy as np

from mlnmf_cli.engine._linalg import truncated_svd

# Power iterations of the randomized SVD behind NNDSVD(a) (the SVD floor keeps
# _linalg.POWER_ITER = 4: it reports a number). NNDSVD keeps only the signs'
# supports of the singular vectors, and a rougher subspace costs nothing in the
# solve: over seven photos at rank 64, both dtypes, five seeds a side, the
# median time to scikit-learn's median 200-iteration error summed to 3.01 of
# scikit-learn's time with 4, 2.61 with 2, 2.49 with 1 and 2.67 with 0; with 4
# the hubble field stopped short of it in 2 of 5 seeds, with 1 in none.
INIT_POWER_ITER = 1


def initialize(
    X: np.ndarray, rank: int, init: str, rng: np.random.Generator, solver: str, method: str
) -> tuple[np.ndarray, np.ndarray]:
    """Return (W, H) in X's dtype.

    W is rescaled by <X, W H> / ||W H||^2, except for ``svd`` with Semi-NMF,
    whose W H is already the best rank-(r-1) approximation (factor 1); for
    plain NMF the ``svd`` start's negative entries of W are set to 0. For the
    ``mu`` solver exact zeros, which multiplicative updates can never leave,
    are filled with a small positive value.
    """
    dtype = X.dtype
    if init == "svd":
        W, H = _svd_seminmf(X, rank, rng)
    elif init == "random":
        avg = np.sqrt(max(float(np.mean(X, dtype=np.float64)), 0.0) / rank)
        W = avg * np.abs(rng.standard_normal((X.shape[0], rank)))
        H = avg * np.abs(rng.standard_normal((rank, X.shape[1])))
    else:
        W, H = _nndsvd(X, rank, rng, fill=init == "nndsvda")
    W = np.ascontiguousarray(W, dtype=dtype)
    H = np.ascontiguousarray(H, dtype=dtype)
    if init == "svd" and method == "nmf":
        np.maximum(W, 0, out=W)
    if init != "svd" or method == "nmf":
        _rescale(X, W, H)
    if solver == "mu":
        _fill_zeros(X, W, H)
    return W, H


def _rescale(X: np.ndarray, W: np.ndarray, H: np.ndarray) -> None:
    WtX = (W.T @ X).astype(np.float64)
    num = float(np.vdot(WtX, H.astype(np.float64)))
    WtW = (W.T @ W).astype(np.float64)
    HHt = (H @ H.T).astype(np.float64)
    den = float(np.vdot(WtW, HHt))
    if den > 0.0 and num > 0.0:
        W *= W.dtype.type(num / den)


def _fill_zeros(X: np.ndarray, W: np.ndarray, H: np.ndarray) -> None:
    avg = float(np.mean(np.abs(X), dtype=np.float64))
    fill_w = np.sqrt(avg / W.shape[1]) * 1e-2 if avg > 0 else np.finfo(W.dtype).eps
    W[W == 0] = fill_w
    H[H == 0] = fill_w


def _nndsvd(
    X: np.ndarray, rank: int, rng: np.random.Generator, fill: bool
) -> tuple[np.ndarray, np.ndarray]:
    """NNDSVD of Boutsidis & Gallopoulos (2008); ``fill`` gives NNDSVDa (zeros -> mean(X)).

    All components at once: each singular pair (u, v) keeps its positive or its
    negative parts, whichever pair has the larger product of norms (the first
    pair is taken in absolute value; a pair with neither stays zero).
    """
    U, s, Vt = truncated_svd(X, rank, rng, power_iter=INIT_POWER_ITER)
    # Directions X does not reach (a singular value at the float64 rounding level of
    # the largest: data of lower rank than asked) carry no information: their
    # components start at 0 instead of from rounding noise, and the solver restarts
    # them from the worst-fitted rows' residual (NNDSVDa fills them with the mean).
    s = np.where(s > s[0] * max(X.shape) * np.finfo(np.float64).eps, s, 0.0)
    up, un = np.maximum(U, 0.0), np.maximum(-U, 0.0)
    vp, vn = np.maximum(Vt, 0.0), np.maximum(-Vt, 0.0)
    up_n, un_n = np.linalg.norm(up, axis=0), np.linalg.norm(un, axis=0)
    vp_n, vn_n = np.linalg.norm(vp, axis=1), np.linalg.norm(vn, axis=1)
    mp, mn = up_n * vp_n, un_n * vn_n
    pos = mp > mn
    pos[0] = True  # the leading pair: |u| |v| (one sign throughout, up to rounding)
    up[:, 0], vp[0] = np.abs(U[:, 0]), np.abs(Vt[0])
    mp[0], up_n[0], vp_n[0] = 1.0, 1.0, 1.0
    sigma = np.where(pos, mp, mn)
    u_norm, v_norm = np.where(pos, up_n, un_n), np.where(pos, vp_n, vn_n)
    keep = sigma > 0
    lbd = np.sqrt(s * sigma, where=keep, out=np.zeros_like(s))
    # The leading pair is scaled by sqrt(s0) and not normalised.
    lbd[0] = np.sqrt(s[0])
    scale_w = np.divide(lbd, u_norm, where=keep, out=np.zeros_like(s))
    scale_h = np.divide(lbd, v_norm, where=keep, out=np.zeros_like(s))
    W = np.where(pos, up, un) * scale_w
    H = np.where(pos[:, None], vp, vn) * scale_h[:, None]
    if fill:
        avg = max(float(np.mean(X, dtype=np.float64)), 0.0)
        W[W == 0] = avg
        H[H == 0] = avg
    return W, H


# Singular values closer than this (relative to the largest) count as tied.
TIE_RTOL = 1e-10


def _svd_seminmf(
    X: np.ndarray, rank: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Gillis & Kumar (2015) Semi-NMF start from the rank-(r-1) SVD, as in ``appr_seminmf``.

    With A = U S and B = V^T of the rank-(r-1) truncation, each row of B gets the
    sign that makes its minimum largest; W = [A, -sum of A's columns] (r = 2:
    [A, -A]) and H = [B; 0] shifted column-wise to be >= 0. W H equals A B.

    Where the leading singular values are tied (a deeper layer's input: the
    previous layer's B has orthonormal rows, singular values exactly 1), the
    truncation is not unique, and neither is the basis of a tied subspace, which
    the heuristic's W and H depend on. The write-up's SVD (SciPy's ``svds``,
    ARPACK from a random start) returns a different one each run; LAPACK's fixed
    pick was worse than all of them on the samples. Here each tied block among
    the leading r-1 triplets is rotated by a random orthogonal matrix (Haar,
    drawn from ``rng``): the seed picks a uniformly random subspace and basis
    among the tied ones. ARPACK's picks are not uniform (they follow its input's
    rounding more than its start), so the two spreads overlap without being
    equal: benchmarks/bench_like_seed.py. Without ties nothing is drawn and the
    result is LAPACK's truncation.
    """
    k = rank - 1
    U, s, Vt = _tie_broken_svd(X, k, rng)
    A = U * s
    B = Vt.copy()
    flip = B.min(axis=1) < (-B).min(axis=1)
    B[flip] *= -1.0
    A[:, flip] *= -1.0
    if rank == 2:
        W = np.concatenate([A, -A], axis=1)
        shift = -np.minimum(0.0, B[0])
    else:
        W = np.concatenate([A, -A.sum(axis=1, keepdims=True)], axis=1)
        shift = -np.minimum(0.0, B.min(axis=0))
    H = np.concatenate([B, np.zeros((1, X.shape[1]))], axis=0) + shift
    return W, H


def _tie_broken_svd(
    X: np.ndarray, k: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leading k singular triplets (exact SVD), each block of tied singular values
    that reaches into the leading k rotated at random within itself first."""
    U, s, Vt = truncated_svd(X, min(X.shape), rng, exact=True)
    tol = TIE_RTOL * s[0]
    # Block starts: 0 and every i where s drops by more than tol.
    starts = [0, *(np.flatnonzero(s[:-1] - s[1:] > tol) + 1).tolist(), s.size]
    for a, b in itertools.pairwise(starts):
        if a >= k:
            break
        if b - a < 2:
            continue
        Q = _haar_orthogonal(b - a, rng)
        U[:, a:b] = U[:, a:b] @ Q
        Vt[a:b] = Q.T @ Vt[a:b]
        # One value for the block (its values differ by at most its width, about
        # TIE_RTOL s[0] per gap), so the rotated U S V^T is the same truncation.
        s[a:b] = s[a:b].mean()
    return U[:, :k], s[:k], Vt[:k]


def _haar_orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random n x n orthogonal matrix, uniform (Haar) over the orthogonal group."""
    Q, R = np.linalg.qr(rng.standard_normal((n, n)))
    return Q * np.where(np.diag(R) < 0, -1.0, 1.0)
