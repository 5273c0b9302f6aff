"""Joint fine-tuning of a multilayer factorisation X ~ W1 W2 ... WL HL.

Block coordinate descent on the data loss ||X - W1 ... WL HL||^2: W1 and HL
by HALS sweeps (least squares for W1 in Semi-NMF), each inner Wl by a few
Nesterov-accelerated projected-gradient steps with step
1 / (||A^T A||_2 ||B B^T||_2) (least squares in Semi-NMF), where
A = W1 ... W(l-1) and B = W(l+1) ... WL HL. The best iterate is kept.
Joint fine-tuning improves slowly but steadily, so it stops when a round
improves the deepest error by less than ``TOL_FACTOR * tol`` (relative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mlnmf_cli.engine._linalg import relative_error_from_products, squared_norm
from mlnmf_cli.engine._single import (
    ALPHA,
    DELTA,
    EXTRAPOLATE,
    Callback,
    Momentum,
    RowSweeper,
    _extrapolate,
    _least_squares,
    _n_sweeps,
)

APG_STEPS = 30
TOL_FACTOR = 0.1
REFIT_SWEEPS = 100


@dataclass
class FineTuneOutput:
    Ws: list[np.ndarray]
    H: np.ndarray
    errors: list[float] = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False


def chain(mats: list[np.ndarray]) -> np.ndarray:
    """Left-to-right product of a non-empty list of matrices."""
    out = mats[0]
    for M in mats[1:]:
        out = out @ M
    return out


def normalize_columns(Ws: list[np.ndarray], H: np.ndarray) -> None:
    """Scale every W's columns to unit norm, moving the scale into the next factor."""
    factors = [*Ws, H]
    for i, W in enumerate(Ws):
        s = np.sqrt(np.einsum("ij,ij->j", W, W, dtype=np.float64))
        s[s == 0] = 1.0
        W /= s.astype(W.dtype)
        factors[i + 1] *= s.astype(W.dtype)[:, None]


def _apg(Wl: np.ndarray, AtA: np.ndarray, BBt: np.ndarray, C: np.ndarray, steps: int) -> np.ndarray:
    """Nesterov projected gradient on 0.5 ||X - A Wl B||^2 (C = A^T X B^T), with restart."""
    la = float(np.linalg.eigvalsh(AtA.astype(np.float64))[-1])
    lb = float(np.linalg.eigvalsh(BBt.astype(np.float64))[-1])
    lip = la * lb
    if not lip > 0:
        return Wl
    step = Wl.dtype.type(1.0 / lip)

    def f(Z: np.ndarray) -> float:
        return float(
            0.5 * np.vdot(AtA @ Z @ BBt, Z).astype(np.float64) - np.vdot(C, Z).astype(np.float64)
        )

    W = Wl
    Y = W.copy()
    fw = f(W)
    t = 1.0
    for _ in range(steps):
        Wn = Y - step * (AtA @ Y @ BBt - C)
        np.maximum(Wn, 0, out=Wn)
        fn = f(Wn)
        if fn > fw:
            Wn = W - step * (AtA @ W @ BBt - C)
            np.maximum(Wn, 0, out=Wn)
            fn = f(Wn)
            t = 1.0
            Y = Wn.copy()
        else:
            t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
            Y = Wn + ((t - 1.0) / t_new) * (Wn - W)
            t = t_new
        W, fw = Wn, fn
    return W


def fine_tune(
    X: np.ndarray,
    Ws: list[np.ndarray],
    H: np.ndarray,
    *,
    method: str,
    max_iter: int,
    tol: float,
    target_error: float | None,
    callback: Callback,
    normalize: bool,
    extrapolate: bool = EXTRAPOLATE,
) -> FineTuneOutput:
    """Jointly refine all factors; returns the best iterate and the deepest-error history.

    After each round all factors are extrapolated together along the round's
    step, Y = new + beta (new - previous round's result) (projected onto
    W, H >= 0), and Y replaces the round's result when its error is lower;
    beta adapts as in Ang & Gillis (2019). Each round starts from the better of
    the two, so the error history does not rise (up to rounding: Semi-NMF's
    least-squares steps in float32 can lose ~1e-5 relative); the best iterate
    is what is returned.
    """
    semi = method == "semi"
    L = len(Ws)
    m, n = X.shape
    Ws = [np.array(W, copy=True) for W in Ws]
    H = np.array(H, copy=True)
    normX2 = squared_norm(X)
    A = chain(Ws)
    AtX = A.T @ X
    err0 = relative_error_from_products(normX2, AtX, H, A.T @ A, H @ H.T, X, A)
    out = FineTuneOutput([W.copy() for W in Ws], H.copy(), [err0])
    if max_iter == 0 or normX2 == 0.0:
        out.converged = True
        return out
    best = err0
    W1t = np.ascontiguousarray(Ws[0].T)
    sweep_w1 = RowSweeper(W1t) if not semi else None
    sweep_h = RowSweeper(H)
    r1, rL = Ws[0].shape[1], Ws[-1].shape[1]
    nsw_w1 = _n_sweeps(m, n, r1, ALPHA)
    nsw_h = _n_sweeps(n, m, rL, ALPHA)
    last: tuple[list[np.ndarray], np.ndarray] | None = None
    momentum = Momentum()
    for it in range(1, max_iter + 1):
        rights: list[np.ndarray] = [H]
        for W in reversed(Ws[1:]):
            rights.append(W @ rights[-1])
        rights.reverse()
        B = rights[0]
        P = B @ X.T
        G = B @ B.T
        if semi:
            W1t = _least_squares(G, P)
        else:
            assert sweep_w1 is not None
            sweep_w1.update(P, G, nsw_w1, DELTA)
        Ws[0] = W1t.T
        A = Ws[0]
        for li in range(1, L):
            B = rights[li]
            XBt = X @ B.T
            C = A.T @ XBt
            AtA = A.T @ A
            BBt = B @ B.T
            if semi:
                Z = _least_squares(AtA, C)
                Ws[li] = _least_squares(BBt, np.ascontiguousarray(Z.T)).T.copy()
            else:
                Ws[li] = _apg(Ws[li], AtA, BBt, C, APG_STEPS)
            A = A @ Ws[li]
        AtX = A.T @ X
        AtA = A.T @ A
        sweep_h.update(AtX, AtA, nsw_h, DELTA)
        err = relative_error_from_products(normX2, AtX, H, AtA, H @ H.T, X, A)
        if normalize:
            Ws[0] = np.ascontiguousarray(Ws[0])
            normalize_columns(Ws, H)
            W1t[...] = Ws[0].T
        if extrapolate:
            new = ([np.array(W) for W in Ws], H.copy())
            if last is not None:
                Yw = [
                    _extrapolate(W, Wp, momentum.beta, np.empty_like(W), nonneg=not semi)
                    for W, Wp in zip(new[0], last[0], strict=True)
                ]
                Yh = _extrapolate(new[1], last[1], momentum.beta, np.empty_like(H))
                Ay = chain(Yw)
                err_y = relative_error_from_products(
                    normX2, Ay.T @ X, Yh, Ay.T @ Ay, Yh @ Yh.T, X, Ay
                )
                if err_y < err:
                    W1t[...] = Yw[0].T
                    Ws = [W1t.T, *Yw[1:]]
                    H[...] = Yh
                    err = err_y
                    momentum.success()
                else:
                    momentum.failure()
            last = new
        prev = out.errors[-1]
        out.errors.append(err)
        out.n_iter = it
        if err < best:
            best = err
            out.Ws = [W.copy() for W in Ws]
            out.H = H.copy()
        stop = bool(callback("fine-tune", it, err)) if callback is not None else False
        if target_error is not None and err <= target_error:
            out.converged = True
            break
        if err == 0.0 or (prev - err) <= TOL_FACTOR * tol * prev:
            out.converged = True
            break
        if stop:
            break
    out.Ws = [np.ascontiguousarray(W) for W in out.Ws]
    return out


def refit_coefficients(X: np.ndarray, A: np.ndarray, H0: np.ndarray) -> np.ndarray:
    """argmin_{H >= 0} ||X - A H|| by HALS sweeps warm-started at max(H0, 0)."""
    H = np.ascontiguousarray(np.maximum(H0, 0), dtype=X.dtype)
    if not np.any(A):
        return np.zeros_like(H)
    AtX = A.T @ X
    AtA = A.T @ A
    RowSweeper(H).update(AtX, AtA, REFIT_SWEEPS, 1e-3)
    return H
